//! What a Drill's run creates and writes, built from values alone (no client): its children (a
//! LoadTest for the load, a ServiceFault or PodKill per fault), each owned by the Drill and
//! labelled with its UID, and the status an outcome becomes. Unit-tested from YAML.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Resource, ResourceExt, api::ObjectMeta};

use crate::{
    api::{
        Drill, LoadTest, Phase, PodKill, ServiceFault, Verdict,
        common::GoDuration,
        fault::{FaultInjection, ServiceFaultSpec},
        load::{LoadProfile, LoadTestSpec},
        podkill::PodKillSpec,
        trial::DrillStatus,
    },
    controller::conditions,
    trial::{drive::TrialOutcome, plan::TrialPlan},
};

/// Label on every child of a judged run: the run's UID (names can be long, UIDs never are).
pub const TRIAL_LABEL: &str = "chaoslab.dev/trial-uid";

/// The child LoadTest's name.
pub fn load_name(drill: &Drill) -> String {
    format!("{}-load", drill.name_any())
}

/// The child ServiceFault's or PodKill's name of the fault `fault`.
pub fn fault_name(drill: &Drill, fault: &str) -> String {
    format!("{}-fault-{fault}", drill.name_any())
}

fn child_meta(drill: &Drill, name: String) -> Result<ObjectMeta, String> {
    let owner = drill.controller_owner_ref(&()).ok_or("the Drill has no UID yet")?;
    let uid = drill.uid().unwrap_or_default();
    Ok(ObjectMeta {
        name: Some(name),
        namespace: drill.namespace(),
        labels: Some([(TRIAL_LABEL.to_owned(), uid)].into()),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// The LoadTest that carries the run's load: the Drill's profile over warmup, baseline, inject
/// and recover, with no thresholds of its own (the Drill judges). A constant level or a preset
/// gets the length from the phases.
pub fn load_test(drill: &Drill, plan: &TrialPlan) -> Result<LoadTest, String> {
    let mut load: LoadProfile = plan.load.clone();
    if load.stages.is_none() {
        load.duration = Some(GoDuration::from_secs(plan.timeline.load_seconds()));
    }
    let spec = LoadTestSpec {
        load,
        thresholds: Vec::new(),
        abort_on_fail: false,
        abort_grace_period: None,
        abort_when: Vec::new(),
    };
    Ok(LoadTest { metadata: child_meta(drill, load_name(drill))?, spec, status: None })
}

/// The ServiceFault of one fault, lasting until `expires_at`: its own expiry (and its proxy's
/// dead-man switch) revert it if the run's conductor is gone.
pub fn service_fault(
    drill: &Drill,
    fault: &str,
    injection: &FaultInjection,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<ServiceFault, String> {
    let left = Duration::try_from(expires_at.duration_since(now)).unwrap_or_default();
    // Whole seconds, rounded up, and at least the 1s the schema allows.
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let spec =
        ServiceFaultSpec { injection: injection.clone(), duration: GoDuration::from_secs(secs.max(1)), dry_run: false };
    Ok(ServiceFault { metadata: child_meta(drill, fault_name(drill, fault))?, spec, status: None })
}

/// The PodKill of one fault. Repeated kills stop at the end of the fault's slot (`slot_secs`).
pub fn pod_kill(drill: &Drill, fault: &str, kill: &PodKillSpec, slot_secs: u64) -> Result<PodKill, String> {
    let mut spec = kill.clone();
    if spec.interval.is_some() {
        let cut = spec.duration.map_or(slot_secs, |d| d.as_std().as_secs().min(slot_secs));
        spec.duration = Some(GoDuration::from_secs(cut.max(1)));
    }
    Ok(PodKill { metadata: child_meta(drill, fault_name(drill, fault))?, spec, status: None })
}

/// Where a verdict leaves the run: judged runs succeed (Pass, Fail and Inconclusive are all
/// answers), an abort is Aborted, an error is Failed.
pub fn phase_of(verdict: Verdict) -> Phase {
    match verdict {
        Verdict::Aborted => Phase::Aborted,
        Verdict::Error => Phase::Failed,
        _ => Phase::Succeeded,
    }
}

/// The final status of a run that was conducted to its end.
pub fn finished(status: DrillStatus, outcome: TrialOutcome, generation: Option<i64>) -> DrillStatus {
    let mut status = ended(status, outcome.verdict, outcome.message, outcome.finished_at, generation);
    status.judgement = outcome.judgement;
    status.faults = outcome.faults;
    status
}

/// The final status of a run, with `verdict` and why: its phase, its end and the Finished
/// condition follow.
pub fn ended(
    mut status: DrillStatus,
    verdict: Verdict,
    message: String,
    now: Timestamp,
    generation: Option<i64>,
) -> DrillStatus {
    status.run.phase = Some(phase_of(verdict));
    status.run.verdict = Some(verdict);
    status.run.message = Some(message);
    status.run.finished_at = Some(Time(now));
    conditions::refresh(&mut status.run, generation, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(yaml: &str) -> Drill {
        let mut d: Drill = serde_saphyr::from_str(yaml).unwrap();
        d.metadata.uid = Some("0123-uid".into());
        d
    }

    const DRILL: &str = "apiVersion: chaoslab.dev/v1alpha1\nkind: Drill\nmetadata: {name: gameday, namespace: lab}\nspec:\n  load: {target: {service: {name: web}}, rate: 50}\n  phases: {warmup: 2s, baseline: 5s, inject: 20s, recover: 5s, cooldown: 3s}\n  faults:\n  - {name: slow, startAfter: 2s, duration: 5s, serviceFault: {service: api, faults: [{type: latency, latency: {delay: 100ms}}]}}\n  - {name: kill, startAfter: 10s, podKill: {selector: {matchLabels: {app: web}}, interval: 4s, duration: 1h}}\n";

    #[test]
    fn children_are_owned_labelled_and_cut_to_the_run() {
        let d = drill(DRILL);
        let plan = TrialPlan::drill(&d.spec).unwrap();
        let lt = load_test(&d, &plan).unwrap();
        assert_eq!(lt.metadata.name.as_deref(), Some("gameday-load"));
        assert_eq!(lt.labels().get(TRIAL_LABEL).map(String::as_str), Some("0123-uid"));
        let owner = &lt.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("Drill", Some(true)));
        // warmup + baseline + inject + recover; cooldown has no load.
        assert_eq!(lt.spec.load.duration, Some(GoDuration::from_secs(32)));
        assert!(lt.spec.thresholds.is_empty() && lt.spec.abort_when.is_empty());

        let now = Timestamp::UNIX_EPOCH;
        let expires = now + k8s_openapi::jiff::SignedDuration::from_millis(10_200);
        let injection = plan.faults[0].service().unwrap();
        let sf = service_fault(&d, "slow", injection, now, expires).unwrap();
        assert_eq!(sf.metadata.name.as_deref(), Some("gameday-fault-slow"));
        assert_eq!(sf.spec.duration, GoDuration::from_secs(11), "rounded up, never shorter than its expiry");
        assert_eq!(sf.spec.injection.service, "api");

        let crate::trial::plan::FaultAction::PodKill(kill) = &plan.faults[1].action else { panic!("a pod kill") };
        let pk = pod_kill(&d, "kill", kill, 10).unwrap();
        assert_eq!(pk.spec.duration, Some(GoDuration::from_secs(10)), "repeats end with the slot");
    }

    #[test]
    fn an_ended_run_says_so_in_its_conditions() {
        let now = Timestamp::UNIX_EPOCH;
        let st = ended(DrillStatus::default(), Verdict::Error, "interrupted".into(), now, Some(3));
        assert_eq!((st.run.phase, st.run.observed_generation), (Some(Phase::Failed), Some(3)));
        let finished = st.run.conditions.iter().find(|c| c.type_ == "Finished").expect("the Finished condition");
        assert_eq!((finished.status.as_str(), finished.reason.as_str()), ("True", "Error"));
        assert_eq!(finished.message, "interrupted");
    }

    #[test]
    fn verdicts_map_to_phases() {
        assert_eq!(phase_of(Verdict::Pass), Phase::Succeeded);
        assert_eq!(phase_of(Verdict::Inconclusive), Phase::Succeeded);
        assert_eq!(phase_of(Verdict::Fail), Phase::Succeeded);
        assert_eq!(phase_of(Verdict::Aborted), Phase::Aborted);
        assert_eq!(phase_of(Verdict::Error), Phase::Failed);
    }

    #[test]
    fn a_child_needs_the_drills_uid() {
        let mut d = drill(DRILL);
        d.metadata.uid = None;
        let plan = TrialPlan::drill(&d.spec).unwrap();
        assert!(load_test(&d, &plan).unwrap_err().contains("no UID"));
    }
}
