//! When each action of a judged run is due: the one sequence every environment follows. Load
//! starts at second 0; each fault is injected at its slot's start and reverted at its end; the
//! load stops after recover; the run is judged after cooldown. An abort rule that fires reverts
//! every active fault at once and stops the load. Pure: the caller owns the clock and the world.

use std::time::Duration;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use serde::{Deserialize, Serialize};

use super::plan::TrialPlan;
use crate::{
    api::figures::{AbortRecord, AbortRule},
    load::verdict::Figures,
};

/// Where one fault stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultState {
    #[default]
    Pending,
    Active,
    Reverted,
    /// Never injected: the run was aborted before its slot.
    Skipped,
    /// Its slot passed before it was injected (the conductor was late): the run proved nothing
    /// about it.
    Missed,
}

/// What has been done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub load_started: bool,
    pub load_stopped: bool,
    pub faults: Vec<FaultState>,
    pub aborted: bool,
}

impl Progress {
    pub fn new(plan: &TrialPlan) -> Progress {
        Progress { faults: vec![FaultState::Pending; plan.faults.len()], ..Progress::default() }
    }

    pub fn any_active(&self) -> bool {
        self.faults.contains(&FaultState::Active)
    }
}

/// The next thing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    StartLoad,
    Inject(usize),
    Revert(usize),
    /// A fault's slot ended before it could be injected.
    Missed(usize),
    StopLoad,
    /// Everything is done: judge what was measured.
    Judge,
}

/// The actions due at `elapsed` since the load's start, in the order to take them: reverts
/// before injections (two faults never overlap by accident of ordering), then the load's stop,
/// then the judgement.
pub fn due(plan: &TrialPlan, progress: &Progress, elapsed: Duration) -> Vec<Action> {
    if !progress.load_started && !progress.aborted {
        return vec![Action::StartLoad];
    }
    let mut actions = Vec::new();
    let at = |second: u64| elapsed >= Duration::from_secs(second);
    for (i, (fault, state)) in plan.faults.iter().zip(&progress.faults).enumerate() {
        if *state == FaultState::Active && (progress.aborted || at(fault.slot.end)) {
            actions.push(Action::Revert(i));
        }
    }
    if !progress.aborted {
        for (i, (fault, state)) in plan.faults.iter().zip(&progress.faults).enumerate() {
            if *state == FaultState::Pending && at(fault.slot.end) {
                actions.push(Action::Missed(i));
            } else if *state == FaultState::Pending && at(fault.slot.start) {
                actions.push(Action::Inject(i));
            }
        }
    }
    let load_over = progress.aborted || at(plan.timeline.load_seconds());
    if progress.load_started && !progress.load_stopped && load_over {
        actions.push(Action::StopLoad);
    }
    let over = progress.aborted || at(plan.timeline.total_seconds());
    if over && actions.is_empty() && (progress.load_stopped || !progress.load_started) {
        actions.push(Action::Judge);
    }
    actions
}

/// Marks the faults whose slot has passed without an injection (an aborted run) as skipped.
pub fn skip_the_rest(progress: &mut Progress) {
    for state in &mut progress.faults {
        if *state == FaultState::Pending {
            *state = FaultState::Skipped;
        }
    }
}

/// The first abort rule that fires on the seconds measured so far (consecutive from the load's
/// start; the first unmeasured second ends what is looked at).
pub fn fired(rules: &[AbortRule], seconds: &[Option<Figures>], now: Timestamp) -> Option<AbortRecord> {
    let measured: Vec<Figures> = seconds.iter().map_while(Clone::clone).collect();
    rules.iter().find_map(|rule| {
        crate::load::verdict::abort_fires(&rule.when, rule.r#for.as_std().as_secs(), &measured)
            .map(|observed| AbortRecord { rule: rule.when.clone(), observed, at: Time(now) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::trial::DrillSpec;

    fn plan() -> TrialPlan {
        let spec: DrillSpec = serde_saphyr::from_str(
            "load: {target: {url: 'http://x/'}, rate: 10}\nphases: {baseline: 5s, inject: 10s, recover: 5s, cooldown: 2s}\nfaults:\n- {name: a, startAfter: 2s, duration: 3s, serviceFault: {service: s, faults: [{type: reset}]}}\n- {name: b, startAfter: 5s, duration: 10s, serviceFault: {service: t, faults: [{type: reset}]}}\nabortWhen: [{when: 'errorRate > 50%', for: 2s}]\n",
        )
        .unwrap();
        TrialPlan::drill(&spec).unwrap()
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn a_run_takes_every_action_once_in_order() {
        let plan = plan();
        let mut p = Progress::new(&plan);
        let mut log = Vec::new();
        for tenth in 0..300 {
            for action in due(&plan, &p, s(f64::from(tenth) / 10.0)) {
                log.push((tenth, action));
                match action {
                    Action::StartLoad => p.load_started = true,
                    Action::Inject(i) => p.faults[i] = FaultState::Active,
                    Action::Revert(i) => p.faults[i] = FaultState::Reverted,
                    Action::Missed(i) => p.faults[i] = FaultState::Missed,
                    Action::StopLoad => p.load_stopped = true,
                    Action::Judge => {}
                }
            }
            if log.last().is_some_and(|(_, a)| *a == Action::Judge) {
                break;
            }
        }
        assert_eq!(
            log,
            vec![
                (0, Action::StartLoad),
                (70, Action::Inject(0)),
                (100, Action::Revert(0)),
                (100, Action::Inject(1)),
                (150, Action::Revert(1)),
                (200, Action::StopLoad),
                (220, Action::Judge),
            ]
        );
    }

    #[test]
    fn an_abort_reverts_what_is_active_stops_the_load_and_skips_the_rest() {
        let plan = plan();
        let mut p = Progress::new(&plan);
        p.load_started = true;
        p.faults[0] = FaultState::Active;
        p.aborted = true;
        assert_eq!(due(&plan, &p, s(8.0)), vec![Action::Revert(0), Action::StopLoad]);
        p.faults[0] = FaultState::Reverted;
        p.load_stopped = true;
        skip_the_rest(&mut p);
        assert_eq!(p.faults, vec![FaultState::Reverted, FaultState::Skipped]);
        assert_eq!(due(&plan, &p, s(8.1)), vec![Action::Judge]);
    }

    #[test]
    fn a_slot_that_passed_before_its_injection_is_missed_never_injected_late() {
        let plan = plan();
        let mut p = Progress::new(&plan);
        p.load_started = true;
        // The conductor wakes at 10.5 s: fault a's slot (7 s to 10 s) is over, b's has begun.
        assert_eq!(due(&plan, &p, s(10.5)), vec![Action::Missed(0), Action::Inject(1)]);
    }

    #[test]
    fn abort_rules_fire_on_consecutive_measured_seconds_only() {
        let plan = plan();
        let bad = Figures { error_rate: 0.9, total: 10, ..Figures::default() };
        let good = Figures { error_rate: 0.0, total: 10, ..Figures::default() };
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(fired(&plan.abort_when, &[Some(good.clone()), Some(bad.clone())], now), None);
        let record = fired(&plan.abort_when, &[Some(good.clone()), Some(bad.clone()), Some(bad.clone())], now).unwrap();
        assert_eq!((record.rule.as_str(), record.observed), ("errorRate > 50%", vec!["90%".into(), "90%".into()]));
        // A gap ends what is looked at: the two bad seconds after it do not count yet.
        assert_eq!(fired(&plan.abort_when, &[Some(good), None, Some(bad.clone()), Some(bad)], now), None);
    }
}
