//! A judged run as one plan, whatever its kind: the timeline, the load, the faults on it, what
//! is judged and what stops the run. A Drill and a CircuitBreakerTrial both become a
//! [`TrialPlan`]; the conductor and every environment see only this.

use std::time::Duration;

use super::{
    judge::RecoveryRule,
    timeline::{FaultSlot, Timeline, drill_slots},
};
use crate::{
    api::{
        fault::FaultInjection,
        figures::{AbortRule, PhaseName},
        load::LoadProfile,
        podkill::PodKillSpec,
        trial::{BreakerExpectations, CircuitBreakerTrialSpec, DrillSpec, RecoverySpec},
    },
    load::stages::{Plan, PlanError, expand},
};

/// Seconds in a row the SLO must hold to count as recovered, unless the spec says otherwise.
pub const DEFAULT_RECOVERY_HOLD: u64 = 3;

/// What one fault does.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultAction {
    /// Faults in front of a Service, through the proxy.
    Service(FaultInjection),
    /// Pods killed (repeatedly, by the spec's interval) while the slot lasts.
    PodKill(PodKillSpec),
}

/// One fault on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFault {
    pub slot: FaultSlot,
    pub action: FaultAction,
}

impl PlannedFault {
    pub fn name(&self) -> &str {
        &self.slot.name
    }

    /// The Service whose proxy carries this fault, if it is a service fault.
    pub fn service(&self) -> Option<&FaultInjection> {
        match &self.action {
            FaultAction::Service(injection) => Some(injection),
            FaultAction::PodKill(_) => None,
        }
    }
}

/// Everything a run needs to be conducted and judged.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialPlan {
    pub timeline: Timeline,
    pub load: LoadProfile,
    /// The load's levels over warmup + baseline + inject + recover.
    pub load_plan: Plan,
    pub faults: Vec<PlannedFault>,
    /// Judged on the inject phase (relative ones against the baseline).
    pub expectations: Vec<String>,
    pub recovery: Option<RecoveryRule>,
    pub abort_when: Vec<AbortRule>,
    /// A circuit-breaker trial's expectations, judged from the calls its dependency received.
    pub breaker: Option<BreakerExpectations>,
}

impl TrialPlan {
    pub fn drill(spec: &DrillSpec) -> Result<TrialPlan, PlanError> {
        let timeline = Timeline::new(&spec.phases);
        let slots = drill_slots(&timeline, &spec.faults);
        let faults = spec
            .faults
            .iter()
            .zip(slots)
            .filter_map(|(fault, slot)| {
                let action = match (&fault.service_fault, &fault.pod_kill) {
                    (Some(injection), _) => FaultAction::Service(injection.clone()),
                    (None, Some(kill)) => FaultAction::PodKill(kill.clone()),
                    // The schema allows exactly one of the two.
                    (None, None) => return None,
                };
                Some(PlannedFault { slot, action })
            })
            .collect();
        Self::new(timeline, &spec.load, faults, &spec.expectations, spec.recovery.as_ref(), &spec.abort_when, None)
    }

    pub fn circuit_breaker(spec: &CircuitBreakerTrialSpec) -> Result<TrialPlan, PlanError> {
        let timeline = Timeline::new(&spec.phases);
        let inject = timeline.inject();
        let fault = PlannedFault {
            slot: FaultSlot {
                name: format!("{}-faults", spec.dependency.service),
                start: inject.start,
                end: inject.end,
            },
            action: FaultAction::Service(spec.dependency.clone()),
        };
        Self::new(
            timeline,
            &spec.load,
            vec![fault],
            &spec.expectations,
            spec.recovery.as_ref(),
            &spec.abort_when,
            Some(spec.expect.clone()),
        )
    }

    fn new(
        timeline: Timeline,
        load: &LoadProfile,
        faults: Vec<PlannedFault>,
        expectations: &[String],
        recovery: Option<&RecoverySpec>,
        abort_when: &[AbortRule],
        breaker: Option<BreakerExpectations>,
    ) -> Result<TrialPlan, PlanError> {
        let load_plan = expand(load, Some(Duration::from_secs(timeline.load_seconds())))?;
        Ok(TrialPlan {
            recovery: recovery_rule(recovery, expectations),
            timeline,
            load: load.clone(),
            load_plan,
            faults,
            expectations: expectations.to_vec(),
            abort_when: abort_when.to_vec(),
            breaker,
        })
    }

    /// The seconds from the first fault's start to the last fault's end: detection counts from
    /// the start, recovery from the end.
    pub fn faults_span(&self) -> std::ops::Range<u64> {
        let inject = self.timeline.inject();
        let start = self.faults.iter().map(|f| f.slot.start).min().unwrap_or(inject.start);
        let end = self.faults.iter().map(|f| f.slot.end).max().unwrap_or(inject.end);
        start..end
    }

    /// The rate the plan asks for over the seconds `[from, to)` (open model; `None` for VUs).
    pub fn target_rate(&self, from: u64, to: u64) -> Option<f64> {
        self.load_plan.target_rate(self.load.model, from, to)
    }

    /// Whether a phase has a window in this run.
    pub fn has(&self, phase: PhaseName) -> bool {
        self.timeline.window(phase).is_some()
    }
}

/// The SLO judged second by second after the faults: the spec's, or else the expectations.
/// No SLO means no recovery figures.
fn recovery_rule(spec: Option<&RecoverySpec>, expectations: &[String]) -> Option<RecoveryRule> {
    let slo = match spec.map(|r| &r.slo).filter(|s| !s.is_empty()) {
        Some(slo) => slo.clone(),
        None => expectations.to_vec(),
    };
    if slo.is_empty() {
        return None;
    }
    Some(RecoveryRule {
        slo,
        hold: spec.and_then(|r| r.hold_for).map_or(DEFAULT_RECOVERY_HOLD, |d| d.as_std().as_secs().max(1)),
        within: spec.and_then(|r| r.within).map(|d| d.as_std()),
    })
}
