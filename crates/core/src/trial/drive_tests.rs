//! The conductor against a scripted world, on tokio's paused clock (a run of 20 s takes none):
//! the order of actions, and the promise that every injected fault is reverted, or its failure
//! named, before `conduct` returns.

use std::collections::BTreeSet;

use super::*;
use crate::api::trial::DrillSpec;

/// A world that does what it is told and records it.
#[derive(Default)]
struct Scripted {
    /// `inject` fails (after the fault was applied: an answer lost on the way back).
    inject_fails: bool,
    /// `revert` always fails.
    revert_fails: bool,
    /// The load's start is reported an hour back, so every fault's own expiry has passed.
    started_long_ago: bool,
    /// From this second of the load on, every request fails.
    failing_from: Option<u64>,
    /// From this second of the load on, a person asks to stop.
    stop_asked_from: Option<u64>,
    started: Option<Instant>,
    log: Vec<String>,
    active: BTreeSet<String>,
}

fn second(error_rate: f64) -> Figures {
    Figures {
        p99: Duration::from_millis(20),
        total: 100,
        error_rate,
        achieved_rate: 100.0,
        rps: 100.0,
        ..Figures::default()
    }
}

impl Scripted {
    fn error_rate(&self, s: u64) -> f64 {
        if self.failing_from.is_some_and(|from| s >= from) { 1.0 } else { 0.0 }
    }
}

impl World for Scripted {
    async fn prepare(&mut self, _: &TrialPlan) -> Result<(), WorldError> {
        Ok(())
    }

    async fn start_load(&mut self, _: &TrialPlan) -> Result<Timestamp, WorldError> {
        self.started = Some(Instant::now());
        self.log.push("load".into());
        let now = Timestamp::now();
        Ok(if self.started_long_ago { now - SignedDuration::from_hours(1) } else { now })
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        self.log.push("stop".into());
        Ok(())
    }

    async fn inject(&mut self, fault: &PlannedFault, _: Timestamp) -> Result<(), WorldError> {
        self.log.push(format!("inject {}", fault.name()));
        self.active.insert(fault.name().to_owned());
        if self.inject_fails { Err(WorldError("no answer within 2s".into())) } else { Ok(()) }
    }

    async fn revert(&mut self, fault: &PlannedFault) -> Result<(), WorldError> {
        self.log.push(format!("revert {}", fault.name()));
        if self.revert_fails {
            return Err(WorldError("the proxy is gone".into()));
        }
        self.active.remove(fault.name());
        Ok(())
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        let sealed = self.started.map_or(0, |s| s.elapsed().as_secs());
        (0..sealed).map(|s| Some(second(self.error_rate(s)))).collect()
    }

    async fn stop_requested(&mut self) -> Option<String> {
        let at = self.started.map_or(0, |s| s.elapsed().as_secs());
        self.stop_asked_from.filter(|from| at >= *from).map(|_| "asked by a person".to_owned())
    }

    async fn measured(&mut self, plan: &TrialPlan) -> Result<Measured, WorldError> {
        let phases = plan.timeline.windows.iter().map(|w| (w.name, second(self.error_rate(w.start)))).collect();
        let seconds = (0..plan.timeline.load_seconds()).map(|s| Some(second(self.error_rate(s)))).collect();
        Ok(Measured { phases, seconds })
    }

    async fn figures_over(&mut self, _: &TrialPlan, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        Ok(Some(second(self.error_rate(seconds.start))))
    }

    async fn effect(&mut self, fault: &PlannedFault, _: &FaultWindow) -> Result<Effect, WorldError> {
        Ok(Effect { fault: fault.name().to_owned(), observed: true, evidence: "scripted".into() })
    }

    async fn dependency_calls(
        &mut self,
        _: &PlannedFault,
        _: Timestamp,
        n: u64,
    ) -> Result<Vec<Option<u64>>, WorldError> {
        Ok(vec![Some(20); n as usize])
    }
}

fn plan() -> TrialPlan {
    let spec: DrillSpec = serde_saphyr::from_str(
        "load: {target: {url: 'http://x/'}, rate: 100}\nphases: {baseline: 5s, inject: 10s, recover: 5s}\nfaults:\n- {name: a, startAfter: 2s, duration: 4s, serviceFault: {service: s, faults: [{type: reset}]}}\nexpectations: ['errorRate < 1%']\nabortWhen: [{when: 'errorRate > 50%', for: 2s}]\n",
    )
    .unwrap();
    TrialPlan::drill(&spec).unwrap()
}

async fn run(world: &mut Scripted) -> TrialOutcome {
    conduct(&plan(), world, |_| {}).await.expect("an outcome")
}

#[tokio::test(start_paused = true)]
async fn a_clean_run_injects_and_reverts_on_time_and_passes() {
    let mut world = Scripted::default();
    let outcome = run(&mut world).await;
    assert_eq!(world.log, ["load", "inject a", "revert a", "stop"]);
    assert!(world.active.is_empty());
    assert_eq!(outcome.verdict, Verdict::Pass, "{}", outcome.message);
    // (The windows' timestamps are wall-clock: on the paused clock they are not the slot's.)
    assert!(outcome.faults[0].started_at.is_some() && outcome.faults[0].reverted_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_failed_injection_is_cleared_anyway_and_the_run_is_an_error() {
    let mut world = Scripted { inject_fails: true, ..Scripted::default() };
    let outcome = run(&mut world).await;
    assert_eq!(world.log, ["load", "inject a", "revert a", "stop"]);
    assert!(world.active.is_empty(), "what the world applied before failing is cleared");
    assert_eq!(outcome.verdict, Verdict::Error);
    assert!(outcome.message.contains("fault a could not be injected: no answer within 2s"), "{}", outcome.message);
}

#[tokio::test(start_paused = true)]
async fn a_revert_that_keeps_failing_ends_at_the_faults_own_expiry() {
    let mut world = Scripted { revert_fails: true, started_long_ago: true, ..Scripted::default() };
    let outcome = run(&mut world).await;
    assert_eq!(outcome.verdict, Verdict::Error);
    assert!(outcome.message.contains("fault a could not be reverted (the proxy is gone)"), "{}", outcome.message);
    assert!(outcome.faults[0].reverted_at.is_some(), "the expiry is recorded as its end");
    assert_eq!(world.log.last().map(String::as_str), Some("stop"));
}

#[tokio::test(start_paused = true)]
async fn an_abort_rule_reverts_at_once_and_names_the_rule() {
    // Every request fails from second 3, before the fault's slot (7 s to 11 s).
    let mut world = Scripted { failing_from: Some(3), ..Scripted::default() };
    let outcome = run(&mut world).await;
    assert_eq!(outcome.verdict, Verdict::Aborted);
    assert!(outcome.message.contains("errorRate > 50%"), "{}", outcome.message);
    // Seconds 3 and 4 are bad and sealed at 5 s: the load stops before the fault's slot (7 s).
    assert_eq!(world.log, ["load", "stop"]);
    assert!(outcome.faults[0].started_at.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_stop_asked_mid_fault_reverts_it_and_the_run_is_aborted() {
    // The fault is on from 7 s to 11 s; the stop is asked at 9 s.
    let mut world = Scripted { stop_asked_from: Some(9), ..Scripted::default() };
    let outcome = run(&mut world).await;
    assert_eq!(world.log, ["load", "inject a", "revert a", "stop"]);
    assert!(world.active.is_empty());
    assert_eq!(outcome.verdict, Verdict::Aborted);
    assert_eq!(outcome.message, "aborted: asked by a person");
    let record = outcome.judgement.aborted_by.expect("the record of the stop");
    assert_eq!(record.rule, "asked by a person");
}
