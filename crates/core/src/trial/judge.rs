//! Judging a run of a judged kind from what it measured: each phase's figures, the expectations
//! against the inject phase (relative ones against the measured baseline), the SLO second by
//! second for time to detect and time to recover, and whether the faults had any observable
//! effect at all. A run that proved nothing is Inconclusive, never a Pass.

use std::{ops::Range, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::timeline::Timeline;
use crate::{
    api::{
        Verdict,
        common::human_duration,
        figures::{ExpectationResult, PhaseName, PhaseResult, RecoveryFigures},
    },
    load::verdict::{Figures, judge as judge_expression},
};

/// What the run measured.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Each phase's figures (exact: the load plan has a step per phase).
    pub phases: Vec<(PhaseName, Figures)>,
    /// Each second's figures from the load's start (index = second); `None` for a second that
    /// was not measured.
    pub seconds: Vec<Option<Figures>>,
}

impl Measured {
    pub fn phase(&self, name: PhaseName) -> Option<&Figures> {
        self.phases.iter().find(|(n, _)| *n == name).map(|(_, f)| f)
    }
}

/// How recovery is judged: the SLO that must hold, for how many seconds in a row, and by when.
#[derive(Clone, Debug, PartialEq)]
pub struct RecoveryRule {
    /// Expressions that make up the SLO, judged on each second.
    pub slo: Vec<String>,
    /// Seconds in a row the SLO must hold to count as recovered.
    pub hold: u64,
    /// The deadline after the faults' end, judged as the expectation `recoveredWithin <d>`.
    pub within: Option<Duration>,
}

/// Whether one fault had an effect anyone could observe, and the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effect {
    pub fault: String,
    pub observed: bool,
    /// `412 requests crossed the proxy`, `no pod matched the selector`.
    pub evidence: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub expectations: Vec<ExpectationResult>,
    pub recovery: Option<RecoveryFigures>,
    pub verdict: Verdict,
    pub message: String,
}

/// Whether every SLO expression holds in one second's figures.
pub fn slo_holds(slo: &[String], second: &Figures, baseline: Option<&Figures>) -> bool {
    slo.iter().all(|e| judge_expression(e, second, baseline).passed)
}

/// Time to detect (from the first fault's start to the first second whose figures break the
/// SLO) and time to recover (from the faults' end to the first second that starts `hold` seconds
/// in a row in which the SLO holds), both in whole seconds. `faults` is `[first start, last end)`.
pub fn recovery(
    faults: Range<u64>,
    seconds: &[Option<Figures>],
    rule: &RecoveryRule,
    baseline: Option<&Figures>,
) -> RecoveryFigures {
    let holds = |s: usize| seconds.get(s).and_then(Option::as_ref).map(|f| slo_holds(&rule.slo, f, baseline));
    let start = usize::try_from(faults.start).unwrap_or(usize::MAX);
    let detect = (start..seconds.len()).find(|&s| holds(s) == Some(false)).map(|s| (s - start) as f64);
    let from = usize::try_from(faults.end).unwrap_or(usize::MAX);
    let hold = usize::try_from(rule.hold.max(1)).unwrap_or(usize::MAX);
    let recover = (from..seconds.len())
        .find(|&s| s + hold <= seconds.len() && (s..s + hold).all(|t| holds(t) == Some(true)))
        .map(|s| (s - from) as f64);
    RecoveryFigures {
        time_to_detect_seconds: detect,
        time_to_recover_seconds: recover,
        time_to_recover: recover.map(|s| human_duration(Duration::from_secs_f64(s))),
    }
}

/// The judgement of a finished run.
pub fn judge(
    measured: &Measured,
    expectations: &[String],
    rule: Option<&RecoveryRule>,
    faults: Range<u64>,
    effects: &[Effect],
) -> Judged {
    let baseline = measured.phase(PhaseName::Baseline);
    let mut results: Vec<ExpectationResult> = Vec::with_capacity(expectations.len() + 1);
    let Some(inject) = measured.phase(PhaseName::Inject).filter(|f| f.total > 0) else {
        let message = "no request was measured during inject, so nothing was proven".to_owned();
        return Judged { expectations: results, recovery: None, verdict: Verdict::Inconclusive, message };
    };
    results.extend(expectations.iter().map(|e| judge_expression(e, inject, baseline)));
    let recovery =
        rule.map(|rule| {
            let figures = recovery(faults.clone(), &measured.seconds, rule, baseline);
            if let Some(within) = rule.within {
                let observed = figures.time_to_recover_seconds;
                results.push(ExpectationResult {
                    expression: format!("recoveredWithin {}", human_duration(within)),
                    observed: Some(observed.map_or_else(
                        || "not within the run".to_owned(),
                        |s| human_duration(Duration::from_secs_f64(s)),
                    )),
                    threshold: Some(human_duration(within)),
                    passed: observed.is_some_and(|s| s <= within.as_secs_f64()),
                    message: None,
                });
            }
            figures
        });
    let (verdict, message) = verdict_of(&results, effects);
    Judged { expectations: results, recovery, verdict, message }
}

/// A timing expectation (`opensWithin 10s`): passed when `observed` is at most `within`;
/// `never` is what is shown when it never happened, `unjudged` why it could not be judged.
pub fn timing(
    name: &str,
    within: Duration,
    observed: Option<Duration>,
    never: &str,
    unjudged: Option<String>,
) -> ExpectationResult {
    ExpectationResult {
        expression: format!("{name} {}", human_duration(within)),
        observed: Some(observed.map_or_else(|| never.to_owned(), human_duration)),
        threshold: Some(human_duration(within)),
        passed: observed.is_some_and(|o| o <= within),
        message: unjudged,
    }
}

/// Fail names what failed; a run whose faults showed no effect, or whose expectations could not
/// all be judged, is Inconclusive; Pass only when every expectation held on faults that did
/// something.
pub fn verdict_of(results: &[ExpectationResult], effects: &[Effect]) -> (Verdict, String) {
    if !effects.is_empty() && effects.iter().all(|e| !e.observed) {
        let evidence: Vec<String> = effects.iter().map(|e| format!("{}: {}", e.fault, e.evidence)).collect();
        return (
            Verdict::Inconclusive,
            format!("the faults had no observable effect ({}), so nothing was proven", evidence.join("; ")),
        );
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed && r.message.is_none())
        .map(|r| format!("{} (observed {})", r.expression, r.observed.as_deref().unwrap_or("nothing")))
        .collect();
    if !failed.is_empty() {
        return (Verdict::Fail, format!("failed: {}", failed.join(", ")));
    }
    let unjudged: Vec<String> =
        results.iter().filter_map(|r| r.message.as_ref().map(|m| format!("{}: {m}", r.expression))).collect();
    if !unjudged.is_empty() {
        return (Verdict::Inconclusive, format!("could not be judged: {}", unjudged.join("; ")));
    }
    (Verdict::Pass, format!("every expectation held ({})", results.len()))
}

/// Each phase's window and figures as status reports them.
pub fn phase_results(timeline: &Timeline, load_start: Timestamp, measured: &Measured) -> Vec<PhaseResult> {
    let at = |second: u64| {
        let offset = k8s_openapi::jiff::SignedDuration::from_secs(i64::try_from(second).unwrap_or(i64::MAX));
        Time(load_start.checked_add(offset).unwrap_or(load_start))
    };
    timeline
        .windows
        .iter()
        .map(|w| {
            let figures = measured.phase(w.name).filter(|f| f.total > 0);
            PhaseResult {
                name: w.name,
                started_at: at(w.start),
                finished_at: Some(at(w.end)),
                throughput: figures.map(|f| f.rps),
                latency: figures.map(Figures::latency_summary),
                error_rate: figures.map(|f| f.error_rate),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
