//! What a judged run creates and writes, built from values alone (no client): its children (a
//! LoadTest for the load, a ServiceFault or PodKill per fault), each owned by the run and
//! labelled with its UID, and the status an outcome becomes. Unit-tested from YAML.

use std::time::Duration;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{OwnerReference, Time},
    jiff::Timestamp,
};
use kube::{Resource, api::ObjectMeta};

use crate::{
    api::{
        LoadTest, PodKill, ServiceFault,
        common::GoDuration,
        fault::{FaultInjection, ServiceFaultSpec},
        load::{LoadProfile, LoadTestSpec},
        podkill::PodKillSpec,
    },
    trial::plan::TrialPlan,
};

/// Label on every child of a judged run: the run's UID (names can be long, UIDs never are).
pub const TRIAL_LABEL: &str = "chaoslab.dev/trial-uid";

/// The run that owns the children: its name, namespace, UID and the owner reference they carry.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    reference: OwnerReference,
}

impl Owner {
    pub fn of<K: Resource<DynamicType = ()>>(run: &K) -> Result<Owner, String> {
        let reference = run.controller_owner_ref(&()).ok_or_else(|| format!("the {} has no UID yet", K::kind(&())))?;
        let namespace = run.meta().namespace.clone().ok_or_else(|| format!("the {} has no namespace", K::kind(&())))?;
        Ok(Owner { name: reference.name.clone(), namespace, uid: reference.uid.clone(), reference })
    }

    /// The child LoadTest's name.
    pub fn load_name(&self) -> String {
        format!("{}-load", self.name)
    }

    /// The child ServiceFault's or PodKill's name of the fault `fault`.
    pub fn fault_name(&self, fault: &str) -> String {
        format!("{}-fault-{fault}", self.name)
    }

    /// The label selector of every child.
    pub fn children(&self) -> String {
        format!("{TRIAL_LABEL}={}", self.uid)
    }

    fn child_meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some([(TRIAL_LABEL.to_owned(), self.uid.clone())].into()),
            owner_references: Some(vec![self.reference.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The LoadTest that carries a run's load, with no thresholds of its own (the run judges).
pub fn load_test(owner: &Owner, load: LoadProfile) -> LoadTest {
    let spec = LoadTestSpec {
        load,
        thresholds: Vec::new(),
        abort_on_fail: false,
        abort_grace_period: None,
        abort_when: Vec::new(),
    };
    LoadTest { metadata: owner.child_meta(owner.load_name()), spec, status: None }
}

/// A Drill's load: its profile over warmup, baseline, inject and recover; a constant level or a
/// preset gets its length from the phases.
pub fn drill_load(plan: &TrialPlan) -> LoadProfile {
    let mut load: LoadProfile = plan.load.clone();
    if load.stages.is_none() {
        load.duration = Some(GoDuration::from_secs(plan.timeline.load_seconds()));
    }
    load
}

/// The ServiceFault of one fault, lasting until `expires_at`: its own expiry (and its proxy's
/// dead-man switch) revert it if the run's conductor is gone. With `window` (start, length) the
/// proxy is in front for the whole time and the faults apply only in the window (a breaker
/// trial counts the dependency's calls before and after its fault).
pub fn service_fault(
    owner: &Owner,
    fault: &str,
    injection: &FaultInjection,
    now: Timestamp,
    expires_at: Timestamp,
    window: Option<(Timestamp, Duration)>,
) -> ServiceFault {
    let left = Duration::try_from(expires_at.duration_since(now)).unwrap_or_default();
    // Whole seconds, rounded up, and at least the 1s the schema allows.
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let spec = ServiceFaultSpec {
        injection: injection.clone(),
        duration: GoDuration::from_secs(secs.max(1)),
        faults_start_at: window.map(|(start, _)| Time(start)),
        faults_for: window.map(|(_, length)| GoDuration::from_secs(length.as_secs().max(1))),
        dry_run: false,
    };
    ServiceFault { metadata: owner.child_meta(owner.fault_name(fault)), spec, status: None }
}

/// The PodKill of one fault. Repeated kills stop at the end of the fault's slot (`slot_secs`).
pub fn pod_kill(owner: &Owner, fault: &str, kill: &PodKillSpec, slot_secs: u64) -> PodKill {
    let mut spec = kill.clone();
    if spec.interval.is_some() {
        let cut = spec.duration.map_or(slot_secs, |d| d.as_std().as_secs().min(slot_secs));
        spec.duration = Some(GoDuration::from_secs(cut.max(1)));
    }
    PodKill { metadata: owner.child_meta(owner.fault_name(fault)), spec, status: None }
}

pub use crate::controller::conditions::{end, phase_of};

#[cfg(test)]
mod tests {
    use super::*;

    use kube::ResourceExt;

    use crate::api::{Drill, Phase, RunStatus, Verdict};

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
        let owner = Owner::of(&d).unwrap();
        let lt = load_test(&owner, drill_load(&plan));
        assert_eq!(lt.metadata.name.as_deref(), Some("gameday-load"));
        assert_eq!(lt.labels().get(TRIAL_LABEL).map(String::as_str), Some("0123-uid"));
        let reference = &lt.owner_references()[0];
        assert_eq!((reference.kind.as_str(), reference.controller), ("Drill", Some(true)));
        // warmup + baseline + inject + recover; cooldown has no load.
        assert_eq!(lt.spec.load.duration, Some(GoDuration::from_secs(32)));
        assert!(lt.spec.thresholds.is_empty() && lt.spec.abort_when.is_empty());

        let now = Timestamp::UNIX_EPOCH;
        let expires = now + k8s_openapi::jiff::SignedDuration::from_millis(10_200);
        let injection = plan.faults[0].service().unwrap();
        let sf = service_fault(&owner, "slow", injection, now, expires, None);
        assert_eq!(sf.metadata.name.as_deref(), Some("gameday-fault-slow"));
        assert_eq!(sf.spec.duration, GoDuration::from_secs(11), "rounded up, never shorter than its expiry");
        assert_eq!(sf.spec.injection.service, "api");
        assert_eq!((sf.spec.faults_start_at, sf.spec.faults_for), (None, None));
        let windowed = service_fault(&owner, "slow", injection, now, expires, Some((expires, Duration::from_secs(4))));
        assert_eq!(windowed.spec.faults_start_at, Some(Time(expires)));
        assert_eq!(windowed.spec.faults_for, Some(GoDuration::from_secs(4)));

        let crate::trial::plan::FaultAction::PodKill(kill) = &plan.faults[1].action else { panic!("a pod kill") };
        let pk = pod_kill(&owner, "kill", kill, 10);
        assert_eq!(pk.spec.duration, Some(GoDuration::from_secs(10)), "repeats end with the slot");
    }

    #[test]
    fn an_ended_run_says_so_in_its_conditions() {
        let now = Timestamp::UNIX_EPOCH;
        let mut run = RunStatus::default();
        end(&mut run, Verdict::Error, "interrupted".into(), now, Some(3));
        assert_eq!((run.phase, run.observed_generation), (Some(Phase::Failed), Some(3)));
        let finished = run.conditions.iter().find(|c| c.type_ == "Finished").expect("the Finished condition");
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
        assert!(Owner::of(&d).unwrap_err().contains("the Drill has no UID"));
    }
}
