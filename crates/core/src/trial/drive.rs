//! Conducting a judged run in any environment: the loop that follows [`cue::due`] on a clock,
//! asks a [`World`] to act, watches the abort rules, and judges what was measured. The world
//! (local processes on loopback, or a cluster) does the acting and the measuring; this module
//! owns the order, the timing and the verdict, so every environment judges alike.

use std::{future::Future, ops::Range, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use tokio::time::Instant;

use super::{
    breaker,
    cue::{self, Cue, FaultState, RunProgress},
    judge::{self, Effect, Measured},
    plan::{PlannedFault, TrialPlan},
};
use crate::{
    api::{
        Verdict,
        figures::{AbortRecord, PhaseName},
        trial::{BreakerFigures, FaultWindow, Judgement},
    },
    load::verdict::Figures,
};

/// How often the conductor looks at the clock and the measurements. An abort rule is seen at
/// most this long after the second that fires it is measured.
pub const TICK: Duration = Duration::from_millis(100);
/// A fault's own expiry lies this long after its planned end: the dead-man that reverts it if
/// the conductor is gone, late enough never to race the conductor's own revert.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Why the world could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorldError(pub String);

/// What a judged run needs from its environment.
pub trait World {
    /// Checks, before anything is done, that every target of the plan exists and can be acted
    /// on; an error names what is missing.
    fn prepare(&mut self, plan: &TrialPlan) -> impl Future<Output = Result<(), WorldError>> + Send;
    /// Starts the load and returns the moment its second 0 began.
    fn start_load(&mut self, plan: &TrialPlan) -> impl Future<Output = Result<Timestamp, WorldError>> + Send;
    /// Stops the load (at once when aborted; after the plan's end it only waits for it).
    fn stop_load(&mut self) -> impl Future<Output = Result<(), WorldError>> + Send;
    /// Injects `fault`; the world makes sure it ends by itself at `expires_at` at the latest.
    fn inject(
        &mut self,
        fault: &PlannedFault,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<(), WorldError>> + Send;
    /// Reverts `fault` exactly.
    fn revert(&mut self, fault: &PlannedFault) -> impl Future<Output = Result<(), WorldError>> + Send;
    /// Each second measured so far, from the load's start (index = second); a second not yet
    /// final is absent or `None`. Asked every tick: a world whose measurements are remote
    /// answers from what it last read and reads again at its own pace.
    fn seconds(&mut self) -> impl Future<Output = Vec<Option<Figures>>> + Send;
    /// A person asked to stop the run (the cluster's abort annotation, Ctrl-C): what they asked,
    /// for the record. Asked every tick; the run is then aborted like a fired abort rule.
    fn stop_requested(&mut self) -> impl Future<Output = Option<String>> + Send {
        std::future::ready(None)
    }
    /// Everything measured, once the load has stopped: per phase and per second.
    fn measured(&mut self, plan: &TrialPlan) -> impl Future<Output = Result<Measured, WorldError>> + Send;
    /// The load's figures over `seconds` as one window (exact percentiles over all its
    /// requests), once the load has stopped; `None` when nothing was measured there.
    fn figures_over(
        &mut self,
        plan: &TrialPlan,
        seconds: Range<u64>,
    ) -> impl Future<Output = Result<Option<Figures>, WorldError>> + Send;
    /// Whether `fault` had an effect anyone could observe while it was active, with evidence.
    fn effect(
        &mut self,
        fault: &PlannedFault,
        window: &FaultWindow,
    ) -> impl Future<Output = Result<Effect, WorldError>> + Send;
    /// The calls that reached the Service behind `fault` in each second of the load (a
    /// circuit-breaker trial's dependency), `None` where not known.
    fn dependency_calls(
        &mut self,
        fault: &PlannedFault,
        load_start: Timestamp,
        seconds: u64,
    ) -> impl Future<Output = Result<Vec<Option<u64>>, WorldError>> + Send;
}

/// Where the run stands, told as it goes (for a progress line or an Event).
#[derive(Clone, Debug, PartialEq)]
pub enum Milestone {
    LoadStarted { at: Timestamp },
    Injected { fault: String, at: Timestamp },
    Reverted { fault: String, at: Timestamp },
    Aborted { rule: String, observed: Vec<String> },
    LoadStopped { at: Timestamp },
}

/// A finished run: the verdict, the judgement and the record of what was done.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialOutcome {
    pub verdict: Verdict,
    pub message: String,
    pub judgement: Judgement,
    /// When each fault was injected and reverted.
    pub faults: Vec<FaultWindow>,
    /// A circuit-breaker trial's figures.
    pub breaker: Option<BreakerFigures>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// Runs `plan` in `world` to its verdict. Whatever happens after the load started (an abort,
/// a fault that cannot be injected), every injected fault is reverted before this returns.
pub async fn conduct<W: World>(
    plan: &TrialPlan,
    world: &mut W,
    mut told: impl FnMut(Milestone),
) -> Result<TrialOutcome, WorldError> {
    world.prepare(plan).await?;
    let mut progress = RunProgress::new(plan);
    let mut windows: Vec<FaultWindow> = plan.faults.iter().map(|f| FaultWindow::pending(f.name())).collect();
    let mut load_start = Timestamp::now();
    let mut clock = Instant::now();
    let mut aborted_by = None;
    // A failure of the world mid-run: everything is reverted, then it is the verdict (Error).
    let mut failure: Option<String> = None;
    loop {
        for action in cue::due(plan, &progress, clock.elapsed()) {
            // A failure earlier in this batch ends the run: nothing new is started after it.
            if progress.aborted && matches!(action, Cue::StartLoad | Cue::Inject(_)) {
                continue;
            }
            match action {
                Cue::StartLoad => {
                    load_start = world.start_load(plan).await?;
                    clock = Instant::now();
                    progress.load_started = true;
                    told(Milestone::LoadStarted { at: load_start });
                }
                Cue::Inject(i) => {
                    let fault = &plan.faults[i];
                    let expires_at = expiry_of(load_start, fault);
                    match world.inject(fault, expires_at).await {
                        Ok(()) => {
                            let now = Timestamp::now();
                            progress.faults[i] = FaultState::Active;
                            windows[i].started_at = Some(Time(now));
                            told(Milestone::Injected { fault: fault.name().to_owned(), at: now });
                        }
                        Err(e) => {
                            // The answer may have been lost after the world applied it: clear it
                            // anyway (reverting is idempotent); its expiry covers a failed clear.
                            if let Err(error) = world.revert(fault).await {
                                tracing::warn!(fault = fault.name(), %error, "clearing a fault whose injection failed");
                            }
                            progress.faults[i] = FaultState::Skipped;
                            failure = Some(format!("fault {} could not be injected: {e}", fault.name()));
                            progress.aborted = true;
                            cue::skip_the_rest(&mut progress);
                        }
                    }
                }
                Cue::Revert(i) => {
                    let fault = &plan.faults[i];
                    // A revert that fails is retried on the next tick; the fault's own expiry
                    // is the last resort.
                    match world.revert(fault).await {
                        Ok(()) => {
                            let now = Timestamp::now();
                            progress.faults[i] = FaultState::Reverted;
                            windows[i].reverted_at = Some(Time(now));
                            told(Milestone::Reverted { fault: fault.name().to_owned(), at: now });
                        }
                        Err(error) => {
                            let expiry = expiry_of(load_start, fault);
                            if Timestamp::now() < expiry {
                                tracing::warn!(fault = fault.name(), %error, "revert failed; retrying");
                            } else {
                                // Past its own expiry the fault has ended by itself; retrying
                                // forever would never let the run end.
                                progress.faults[i] = FaultState::Reverted;
                                windows[i].reverted_at = Some(Time(expiry));
                                failure.get_or_insert(format!(
                                    "fault {} could not be reverted ({error}); it ended at its own expiry, {expiry}",
                                    fault.name()
                                ));
                            }
                        }
                    }
                }
                Cue::Missed(i) => {
                    let fault = &plan.faults[i];
                    progress.faults[i] = FaultState::Missed;
                    failure.get_or_insert(format!(
                        "fault {} was never injected: its slot ended before the conductor reached it",
                        fault.name()
                    ));
                }
                Cue::StopLoad => {
                    // Never return from here: a fault may still be waiting for its revert.
                    if let Err(e) = world.stop_load().await {
                        failure.get_or_insert(format!("the load could not be stopped cleanly: {e}"));
                    }
                    progress.load_stopped = true;
                    told(Milestone::LoadStopped { at: Timestamp::now() });
                }
                Cue::Judge => {
                    let record = aborted_by.take();
                    return Ok(
                        match judge_run(plan, world, load_start, &windows, record.clone(), failure.take()).await {
                            Ok(judged) => judged,
                            // Every fault is reverted by now: what could not be measured is the
                            // verdict, with the record of what was done kept.
                            Err(e) => TrialOutcome {
                                verdict: Verdict::Error,
                                message: format!("the run's measurements could not be read: {e}"),
                                judgement: Judgement { aborted_by: record, ..Judgement::default() },
                                faults: windows,
                                breaker: None,
                                started_at: load_start,
                                finished_at: Timestamp::now(),
                            },
                        },
                    );
                }
            }
        }
        if !progress.aborted
            && let Some(asked) = world.stop_requested().await
        {
            told(Milestone::Aborted { rule: asked.clone(), observed: Vec::new() });
            aborted_by = Some(AbortRecord { rule: asked, observed: Vec::new(), at: Time(Timestamp::now()) });
            progress.aborted = true;
            cue::skip_the_rest(&mut progress);
            continue;
        }
        if progress.load_started && !progress.load_stopped && !progress.aborted {
            let seconds = world.seconds().await;
            if let Some(record) = cue::fired(&plan.abort_when, &seconds, Timestamp::now()) {
                told(Milestone::Aborted { rule: record.rule.clone(), observed: record.observed.clone() });
                aborted_by = Some(record);
                progress.aborted = true;
                cue::skip_the_rest(&mut progress);
                // Straight to the reverts: no tick's wait between a fired rule and its revert.
                continue;
            }
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn judge_run<W: World>(
    plan: &TrialPlan,
    world: &mut W,
    load_start: Timestamp,
    windows: &[FaultWindow],
    aborted_by: Option<AbortRecord>,
    failure: Option<String>,
) -> Result<TrialOutcome, WorldError> {
    let measured = world.measured(plan).await?;
    let mut effects = Vec::with_capacity(plan.faults.len());
    let mut windows = windows.to_vec();
    for (fault, window) in plan.faults.iter().zip(&mut windows) {
        if window.started_at.is_some() {
            let effect = world.effect(fault, window).await?;
            window.observed = Some(effect.observed);
            window.effect = Some(effect.evidence.clone());
            effects.push(effect);
        }
    }
    let judged = judge::judge(&measured, &plan.expectations, plan.recovery.as_ref(), plan.faults_span(), &effects);
    let mut expectations = judged.expectations;
    let (mut verdict, mut message) = (judged.verdict, judged.message);
    let mut breaker_figures = None;
    if let (Some(expect), Some(fault)) = (&plan.breaker, plan.faults.first()) {
        let seconds = plan.timeline.load_seconds();
        let calls = world.dependency_calls(fault, load_start, seconds).await?;
        let open = match breaker::open_window(&plan.timeline, expect, &calls, &measured.seconds) {
            Some(window) => world.figures_over(plan, window).await?,
            None => None,
        };
        let judged_breaker = breaker::judge(&plan.timeline, expect, &calls, &measured.seconds, open.as_ref());
        expectations.extend(judged_breaker.expectations);
        breaker_figures = Some(judged_breaker.figures);
        // Without a measured inject phase the run stays Inconclusive; otherwise every
        // expectation counts, the breaker's too.
        if measured.phase(PhaseName::Inject).is_some_and(|f| f.total > 0) {
            (verdict, message) = judge::verdict_of(&expectations, &effects);
        }
    }
    if let Some(record) = &aborted_by {
        verdict = Verdict::Aborted;
        message = if record.observed.is_empty() {
            format!("aborted: {}", record.rule)
        } else {
            format!("aborted by the rule `{}` (observed {})", record.rule, record.observed.join(", "))
        };
    }
    if let Some(failure) = failure {
        verdict = Verdict::Error;
        message = failure;
    }
    let judgement = Judgement {
        phases: judge::phase_results(&plan.timeline, load_start, &measured),
        expectations,
        recovery: judged.recovery,
        aborted_by,
    };
    Ok(TrialOutcome {
        verdict,
        message,
        judgement,
        faults: windows,
        breaker: breaker_figures,
        started_at: load_start,
        finished_at: Timestamp::now(),
    })
}

/// When `fault` ends by itself: its planned end plus [`EXPIRY_MARGIN`].
fn expiry_of(load_start: Timestamp, fault: &PlannedFault) -> Timestamp {
    at(load_start, Duration::from_secs(fault.slot.end) + EXPIRY_MARGIN)
}

/// `start + offset` as a timestamp.
pub fn at(start: Timestamp, offset: Duration) -> Timestamp {
    let offset = SignedDuration::try_from(offset).unwrap_or(SignedDuration::MAX);
    start.checked_add(offset).unwrap_or(start)
}

#[cfg(test)]
#[path = "drive_tests.rs"]
mod tests;
