//! The controller of kinds this version validates but does not run yet. It never pretends: the
//! resource stays Pending with `Accepted=False, reason NotImplemented`, or ends Failed with the
//! reason when it is invalid or targets a namespace that has not opted in.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{Context, Error, conditions, namespace_labels, namespace_of, publish, write_status};
use crate::{
    api::{Experiment, Phase, RunStatus, Verdict},
    domain::{Note, guard::Refusal, spec_check::SpecCheck},
};

/// What to set, given the current lifecycle status and the guard's answer. Pure.
pub fn decide(
    kind: &str,
    current: Option<&RunStatus>,
    refusal: Option<(&'static str, String)>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<(RunStatus, Note)> {
    let mut run = current.cloned().unwrap_or_default();
    if run.phase.is_some_and(Phase::is_terminal) {
        return None;
    }
    let (note, reason, message) = match refusal {
        Some((reason, message)) => {
            run.phase = Some(Phase::Failed);
            run.verdict = Some(Verdict::Error);
            run.finished_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            (Note::warning(reason, message.clone()), reason, message)
        }
        None => {
            let message = format!(
                "{kind} is validated but not run by chaoslab {}: it stays Pending and nothing is injected; an operator that implements {kind} will pick it up",
                env!("CARGO_PKG_VERSION")
            );
            run.phase = Some(Phase::Pending);
            (Note::warning("NotImplemented", message.clone()), "NotImplemented", message)
        }
    };
    run.message = Some(message.clone());
    conditions::set(&mut run.conditions, conditions::ACCEPTED, false, reason, &message, generation, now);
    conditions::refresh(&mut run, generation, now);
    if current == Some(&run) { None } else { Some((run, note)) }
}

/// Why a resource may not go on, if it may not: its namespace first (a refused namespace says
/// so whatever the spec), then what the schema and CEL rules cannot check. Pure.
pub fn refusal<K: SpecCheck>(namespace: Result<(), Refusal>, obj: &K) -> Option<(&'static str, String)> {
    match namespace {
        Err(r) => Some((r.reason(), r.to_string())),
        Ok(()) => obj.check_spec().err().map(|m| ("InvalidSpec", m)),
    }
}

pub async fn reconcile<K: Experiment + SpecCheck>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started(K::KIND);
    let current = obj.run_status();
    // Already said for this generation: nothing to do until the object changes.
    if current.is_some_and(|r| r.observed_generation == obj.meta().generation && r.phase.is_some()) {
        return Ok(Action::await_change());
    }
    let ns = namespace_of(obj.as_ref())?;
    let labels = namespace_labels(&ctx.client, &ns).await?;
    let refusal = refusal(ctx.guard.check(&ns, &labels), obj.as_ref());
    let now = Timestamp::now();
    if let Some((run, note)) = decide(K::KIND, current, refusal, obj.meta().generation, now) {
        let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
        write_status(&api, &obj.name_any(), &run).await?;
        publish(&ctx, obj.as_ref(), &[note]).await;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_valid_resource_stays_pending_and_says_it_is_not_implemented() {
        let (run, note) = decide("Drill", None, None, Some(1), t()).unwrap();
        assert_eq!(run.phase, Some(Phase::Pending));
        assert_eq!(run.verdict, None, "no verdict is pretended");
        let accepted = run.conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "NotImplemented"));
        assert!(run.message.unwrap().contains("Drill is validated but not run"));
        assert_eq!(note.reason, "NotImplemented");
        // Said once: the same decision again changes nothing.
        let (again, _) = decide("Drill", None, None, Some(1), t()).unwrap();
        assert!(decide("Drill", Some(&again), None, Some(1), t()).is_none());
    }

    #[test]
    fn an_invalid_spec_is_refused_after_the_namespace_check() {
        let lt: crate::api::LoadTest = serde_saphyr::from_str(
            "apiVersion: chaoslab.dev/v1alpha1\nkind: LoadTest\nmetadata: {name: l, namespace: lab}\nspec:\n  load: {target: {url: 'http://x/'}, rate: 10, duration: 1m}\n  thresholds: ['p99 < soon']\n",
        )
        .unwrap();
        let (reason, message) = refusal(Ok(()), &lt).unwrap();
        assert_eq!(reason, "InvalidSpec");
        assert!(message.starts_with("spec.thresholds[0]"), "{message}");
        let not_opted = Err(Refusal::NotOptedIn { namespace: "lab".into(), label: "a=b".into() });
        assert_eq!(refusal(not_opted, &lt).unwrap().0, "NamespaceNotOptedIn");
        let (run, _) = decide("LoadTest", None, Some((reason, message)), Some(1), t()).unwrap();
        assert_eq!((run.phase, run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    }

    #[test]
    fn a_refused_namespace_fails_with_the_reason() {
        let (run, note) = decide(
            "ServiceFault",
            None,
            Some(("NamespaceNotOptedIn", "namespace lab has not opted in".into())),
            Some(1),
            t(),
        )
        .unwrap();
        assert_eq!(run.phase, Some(Phase::Failed));
        assert_eq!(run.verdict, Some(Verdict::Error));
        assert!(note.warning);
        assert_eq!(run.conditions.iter().find(|c| c.type_ == "Accepted").unwrap().reason, "NamespaceNotOptedIn");
    }
}
