//! The cues of a judged run: which action is due when, the one sequence every environment
//! follows. Load starts at second 0; each fault is injected at its slot's start and reverted at its end; the
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
pub struct RunProgress {
    pub load_started: bool,
    pub load_stopped: bool,
    pub faults: Vec<FaultState>,
    pub aborted: bool,
}

impl RunProgress {
    pub fn new(plan: &TrialPlan) -> RunProgress {
        RunProgress { faults: vec![FaultState::Pending; plan.faults.len()], ..RunProgress::default() }
    }

    pub fn any_active(&self) -> bool {
        self.faults.contains(&FaultState::Active)
    }
}

/// The next thing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cue {
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
pub fn due(plan: &TrialPlan, progress: &RunProgress, elapsed: Duration) -> Vec<Cue> {
    if !progress.load_started && !progress.aborted {
        return vec![Cue::StartLoad];
    }
    let mut actions = Vec::new();
    let at = |second: u64| elapsed >= Duration::from_secs(second);
    for (i, (fault, state)) in plan.faults.iter().zip(&progress.faults).enumerate() {
        if *state == FaultState::Active && (progress.aborted || at(fault.slot.end)) {
            actions.push(Cue::Revert(i));
        }
    }
    if !progress.aborted {
        for (i, (fault, state)) in plan.faults.iter().zip(&progress.faults).enumerate() {
            if *state == FaultState::Pending && at(fault.slot.end) {
                actions.push(Cue::Missed(i));
            } else if *state == FaultState::Pending && at(fault.slot.start) {
                actions.push(Cue::Inject(i));
            }
        }
    }
    let load_over = progress.aborted || at(plan.timeline.load_seconds());
    if progress.load_started && !progress.load_stopped && load_over {
        actions.push(Cue::StopLoad);
    }
    let over = progress.aborted || at(plan.timeline.total_seconds());
    if over && actions.is_empty() && (progress.load_stopped || !progress.load_started) {
        actions.push(Cue::Judge);
    }
    actions
}

/// Marks the faults whose slot has passed without an injection (an aborted run) as skipped.
pub fn skip_the_rest(progress: &mut RunProgress) {
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
        let mut p = RunProgress::new(&plan);
        let mut log = Vec::new();
        for tenth in 0..300 {
            for action in due(&plan, &p, s(f64::from(tenth) / 10.0)) {
                log.push((tenth, action));
                match action {
                    Cue::StartLoad => p.load_started = true,
                    Cue::Inject(i) => p.faults[i] = FaultState::Active,
                    Cue::Revert(i) => p.faults[i] = FaultState::Reverted,
                    Cue::Missed(i) => p.faults[i] = FaultState::Missed,
                    Cue::StopLoad => p.load_stopped = true,
                    Cue::Judge => {}
                }
            }
            if log.last().is_some_and(|(_, a)| *a == Cue::Judge) {
                break;
            }
        }
        assert_eq!(
            log,
            vec![
                (0, Cue::StartLoad),
                (70, Cue::Inject(0)),
                (100, Cue::Revert(0)),
                (100, Cue::Inject(1)),
                (150, Cue::Revert(1)),
                (200, Cue::StopLoad),
                (220, Cue::Judge),
            ]
        );
    }

    #[test]
    fn an_abort_reverts_what_is_active_stops_the_load_and_skips_the_rest() {
        let plan = plan();
        let mut p = RunProgress::new(&plan);
        p.load_started = true;
        p.faults[0] = FaultState::Active;
        p.aborted = true;
        assert_eq!(due(&plan, &p, s(8.0)), vec![Cue::Revert(0), Cue::StopLoad]);
        p.faults[0] = FaultState::Reverted;
        p.load_stopped = true;
        skip_the_rest(&mut p);
        assert_eq!(p.faults, vec![FaultState::Reverted, FaultState::Skipped]);
        assert_eq!(due(&plan, &p, s(8.1)), vec![Cue::Judge]);
    }

    #[test]
    fn a_slot_that_passed_before_its_injection_is_missed_never_injected_late() {
        let plan = plan();
        let mut p = RunProgress::new(&plan);
        p.load_started = true;
        // The conductor wakes at 10.5 s: fault a's slot (7 s to 10 s) is over, b's has begun.
        assert_eq!(due(&plan, &p, s(10.5)), vec![Cue::Missed(0), Cue::Inject(1)]);
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
