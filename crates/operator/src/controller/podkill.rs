//! The PodKill controller: reads the namespace, the matching pods and their owners, lets
//! `domain::podkill` decide, writes the plan, kills, and writes what happened.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams, Preconditions},
    core::Selector,
    runtime::controller::Action,
};

use super::{
    Context, Error, abort_requested, conditions, namespace_labels, publish, reconcile_with_finalizer, report,
    write_status,
};
use crate::{
    api::{
        Phase, PodKill, Verdict,
        podkill::{KillAction, KillMethod, PodKillSpec, PodKillStatus, Recovery},
    },
    domain::{
        Note,
        podkill::{KillOutcome, Observation, PodFacts, advance, next_look, record_kills},
        selection::fresh_seed,
    },
    report::Report,
};

pub async fn reconcile(pk: Arc<PodKill>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        pk,
        &ctx,
        async |pk: Arc<PodKill>, api: &Api<PodKill>, ns: &str| apply(&pk, &ctx, api, ns).await,
        async |pk: Arc<PodKill>, api: &Api<PodKill>, _ns: &str| cleanup(&pk, &ctx, api).await,
    )
    .await
}

/// Checks the API server's schema cannot express (the one rule, in the core).
pub fn validate(spec: &PodKillSpec) -> Result<Selector, String> {
    crate::domain::podkill::label_selector(spec)
}

async fn apply(pk: &PodKill, ctx: &Context, api: &Api<PodKill>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let status = pk.status.clone().unwrap_or_default();
    let phase = status.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let name = pk.name_any();
    let generation = pk.meta().generation;

    // Validate: the namespace guard first (a refusal must never kill), then the spec.
    let labels = namespace_labels(&ctx.client, ns).await?;
    let checked = ctx
        .guard
        .check(ns, &labels)
        .map_err(|r| (r.reason(), r.to_string()))
        .and_then(|()| validate(&pk.spec).map_err(|m| ("InvalidSpec", m)));
    let selector = match checked {
        Ok(selector) => selector,
        Err((reason, message)) => return refuse(pk, ctx, api, status, reason, message, now).await,
    };

    // Dereference: the matching pods and the owners of targets still awaiting recovery.
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let kill_api: Api<Pod> = Api::namespaced(ctx.no_retry_client.clone(), ns);
    let facts = matching_pods(&pods_api, &selector).await?;
    let gone_owners = gone_owners(ctx, ns, &status).await?;

    // Build: the next step, decided by the pure planner.
    let obs = Observation { now, pods: &facts, gone_owners: &gone_owners, abort_requested: abort_requested(pk) };
    let step = advance(&pk.spec, &status, &obs, fresh_seed());
    let mut st = step.status;
    let mut notes = step.notes;
    conditions::accept(&mut st.run, "spec valid and namespace opted in", generation, now);

    // Apply: the plan is written before any kill, so a restart resumes it instead of choosing
    // new targets.
    file_report(pk, ctx, &mut st).await;
    if st != status {
        write_status(api, &name, &st).await?;
    }
    if !step.kills.is_empty() {
        let mut outcomes = Vec::with_capacity(step.kills.len());
        let mut failed = None;
        for &i in &step.kills {
            let target = &st.targets[i];
            match kill(&kill_api, &pk.spec, &target.pod, &target.uid).await {
                Ok(outcome) => outcomes.push((i, outcome, Timestamp::now())),
                // Record the kills already done before giving up; the rest stay Planned and are
                // retried (or found Gone) by the next reconcile.
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let now = Timestamp::now();
        notes.extend(record_kills(&pk.spec, &mut st, &outcomes, now));
        conditions::refresh(&mut st.run, generation, now);
        file_report(pk, ctx, &mut st).await;
        write_status(api, &name, &st).await?;
        if let Some(e) = failed {
            publish(ctx, pk, &notes).await;
            return Err(e);
        }
    }
    publish(ctx, pk, &notes).await;
    Ok(next_look(&pk.spec, &st, Timestamp::now()).map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// A run that has just got its verdict gets its report, written before the status that refers
/// to it; once referenced it is never written again.
async fn file_report(pk: &PodKill, ctx: &Context, st: &mut PodKillStatus) {
    if st.run.phase.unwrap_or_default().is_terminal() && st.run.report_ref.is_none() {
        st.run.report_ref = report::file(ctx, pk, &Report::of_pod_kill(pk, st)).await;
    }
}

/// What the planner needs of the pods the selector matches, listed in pages: only the small
/// `PodFacts` of a page outlive it, so a selector matching thousands of pods does not hold
/// thousands of whole Pod objects in memory at once.
async fn matching_pods(pods: &Api<Pod>, selector: &Selector) -> Result<Vec<PodFacts>, Error> {
    const PAGE: u32 = 250;
    let mut params = ListParams::default().labels_from(selector).limit(PAGE);
    let mut facts = Vec::new();
    loop {
        let page = pods.list(&params).await?;
        facts.extend(page.items.iter().filter_map(pod_facts));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(facts),
        }
    }
}

/// A run that may not go on: Failed before it started, Aborted when it was running (the
/// namespace lost its opt-in label, say).
async fn refuse(
    pk: &PodKill,
    ctx: &Context,
    api: &Api<PodKill>,
    mut st: PodKillStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let mut notes = Vec::new();
    let running = st.run.phase == Some(Phase::Running);
    if running {
        crate::domain::podkill::abort(&mut st, now, &message, &mut notes);
        conditions::set(
            &mut st.run.conditions,
            conditions::ACCEPTED,
            false,
            reason,
            &message,
            pk.meta().generation,
            now,
        );
        conditions::refresh(&mut st.run, pk.meta().generation, now);
    } else {
        conditions::refuse(&mut st.run, Verdict::Error, reason, &message, pk.meta().generation, now);
        notes.push(Note::warning(reason, message));
    }
    // A run stopped mid-way has killed pods worth a report; one refused before it started has not.
    if running {
        file_report(pk, ctx, &mut st).await;
    }
    write_status(api, &pk.name_any(), &st).await?;
    publish(ctx, pk, &notes).await;
    Ok(Action::await_change())
}

/// Delete or evict one pod, only if it is still the pod that was planned (same UID).
async fn kill(pods: &Api<Pod>, spec: &PodKillSpec, pod: &str, uid: &str) -> Result<KillOutcome, Error> {
    let delete = DeleteParams {
        // Whole seconds, rounded up: `500ms` must not become 0, which means "kill at once".
        grace_period_seconds: spec
            .grace_period
            .map(|g| u32::try_from(g.as_std().as_millis().div_ceil(1000)).unwrap_or(u32::MAX)),
        preconditions: Some(Preconditions { uid: Some(uid.into()), resource_version: None }),
        ..Default::default()
    };
    let result = match spec.method {
        KillMethod::Delete => pods.delete(pod, &delete).await.map(drop),
        // Built by hand: kube's `Api::evict` sends `delete_options` in snake_case, which the API
        // server ignores, silently dropping the grace period and the UID precondition.
        KillMethod::Evict => pods
            .create_subresource::<_, serde_json::Value>(
                "eviction",
                pod,
                &PostParams::default(),
                &eviction_body(pod, &delete),
            )
            .await
            .map(drop),
    };
    match result {
        Ok(()) => Ok(KillOutcome::Killed),
        Err(kube::Error::Api(status)) => match status.code {
            // Gone, or a new pod under the same name (the UID precondition failed).
            404 | 409 => Ok(KillOutcome::Gone),
            // 429: the eviction would violate a PodDisruptionBudget. 403: not allowed.
            429 | 403 => Ok(KillOutcome::Refused(format!("{} ({})", status.message, status.code))),
            _ => Err(kube::Error::Api(status).into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// A `policy/v1` Eviction of `pod` with the given delete options.
fn eviction_body(pod: &str, delete: &DeleteParams) -> serde_json::Value {
    let options = serde_json::json!({
        "gracePeriodSeconds": delete.grace_period_seconds,
        "preconditions": delete.preconditions.as_ref().map(|p| serde_json::json!({"uid": p.uid})),
    });
    serde_json::json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod},
        "deleteOptions": options,
    })
}

/// Owners (`Kind/name`) of targets still awaiting recovery that the API server no longer has.
async fn gone_owners(ctx: &Context, ns: &str, status: &PodKillStatus) -> Result<BTreeSet<String>, Error> {
    let waiting: BTreeSet<&str> = status
        .targets
        .iter()
        .filter(|t| t.action == KillAction::Killed && t.recovery == Recovery::Waiting)
        .filter_map(|t| t.owner.as_deref())
        .collect();
    let mut gone = BTreeSet::new();
    for owner in waiting {
        let Some((kind, name)) = owner.split_once('/') else {
            continue;
        };
        let Some(gvk) = owner_gvk(kind) else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &ApiResource::from_gvk(&gvk));
        if api.get_opt(name).await?.is_none() {
            gone.insert(owner.to_string());
        }
    }
    Ok(gone)
}

/// The controllers whose existence is checked; others are assumed present.
fn owner_gvk(kind: &str) -> Option<GroupVersionKind> {
    match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" => Some(GroupVersionKind::gvk("apps", "v1", kind)),
        "Job" => Some(GroupVersionKind::gvk("batch", "v1", kind)),
        _ => None,
    }
}

/// What the planner needs of a pod. Pure.
pub fn pod_facts(pod: &Pod) -> Option<PodFacts> {
    let meta = pod.meta();
    let status = pod.status.as_ref();
    let ready_since = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready" && c.status == "True"))
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now));
    let terminating = meta.deletion_timestamp.is_some();
    Some(PodFacts {
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        controller: pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name)),
        created: meta.creation_timestamp.as_ref().map(|t| t.0).unwrap_or_else(Timestamp::now),
        ready_since,
        running: status.and_then(|s| s.phase.as_deref()) == Some("Running") && !terminating,
        terminating,
    })
}

/// Deleting a PodKill never waits on its targets: a kill cannot be undone, so cleanup only
/// records that the run stopped. Errors are logged, never returned, so the finalizer always
/// goes (a target or owner that is gone can never block deletion).
async fn cleanup(pk: &PodKill, ctx: &Context, api: &Api<PodKill>) -> Result<Action, Error> {
    let status = pk.status.clone().unwrap_or_default();
    if !status.run.phase.unwrap_or_default().is_terminal() {
        let mut st = status;
        let mut notes = Vec::new();
        crate::domain::podkill::abort(&mut st, Timestamp::now(), "deleted while running", &mut notes);
        if let Err(error) = write_status(api, &pk.name_any(), &st).await {
            tracing::debug!(name = %pk.name_any(), %error, "status not written during deletion");
        }
        publish(ctx, pk, &notes).await;
    }
    Ok(Action::await_change())
}

/// Pods are not owned by a PodKill; a pod event wakes the running PodKills of its namespace.
pub fn selects_running_in(pk: &PodKill, namespace: Option<&str>) -> bool {
    pk.namespace().as_deref() == namespace && pk.status.as_ref().and_then(|s| s.run.phase) == Some(Phase::Running)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    use super::*;

    #[test]
    fn invalid_selector_operators_are_refused_naming_the_field() {
        let mut spec: PodKillSpec =
            serde_saphyr::from_str("selector: {matchExpressions: [{key: app, operator: Near, values: [web]}]}\n")
                .unwrap();
        let err = validate(&spec).unwrap_err();
        assert!(err.contains("spec.selector") && err.contains("In, NotIn, Exists and DoesNotExist"), "{err}");
        spec.selector =
            LabelSelector { match_labels: Some([("app".into(), "web".into())].into()), ..Default::default() };
        assert_eq!(validate(&spec).unwrap().to_string(), "app=web");
    }

    #[test]
    fn pod_facts_read_owner_readiness_and_termination() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "uid": "u1", "creationTimestamp": "2026-11-25T00:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9c", "uid": "rs", "controller": true}]},
            "spec": {"nodeName": "kwok-node-0", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T00:00:05Z"}]}
        }))
        .unwrap();
        let f = pod_facts(&pod).unwrap();
        assert_eq!(f.controller.as_deref(), Some("ReplicaSet/web-7d9c"));
        assert_eq!(f.node.as_deref(), Some("kwok-node-0"));
        assert_eq!(f.ready_since.unwrap().to_string(), "2026-11-25T00:00:05Z");
        assert!(f.running && !f.terminating);

        let mut deleting = pod.clone();
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        let f = pod_facts(&deleting).unwrap();
        assert!(f.terminating && !f.running);
    }
}
