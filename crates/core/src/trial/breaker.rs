//! Judging a circuit breaker from outside: from the calls its dependency received each second
//! (counted at the proxy in front of it) and the caller's figures each second. Whichever
//! library the caller uses, an open breaker shows as calls to the dependency falling away while
//! the caller keeps answering fast, and a closed one as the calls coming back.
//!
//! Definitions (docs/api.md, CircuitBreakerTrial): the breaker counts as **open** from the first
//! second of inject in which the dependency received at most `baseline × (1 − reduction)` calls
//! (`reduction` is `dependencyCallReductionPercent`, default 50 %), and as **closed** again from
//! the first second after the heal in which it received at least half the baseline's calls (a
//! breaker that never opened never closes). A second counts as open only while the caller still
//! answers at least half the requests sent to it, and a baseline without calls judges nothing.
//! Times are to the end of that second, so they are whole seconds.

use std::{ops::Range, time::Duration};

use super::{judge::timing, timeline::Timeline};
use crate::{
    api::{
        common::human_duration,
        figures::{ExpectationResult, PhaseName},
        trial::{BreakerExpectations, BreakerFigures},
    },
    load::verdict::Figures,
};

/// The share of the baseline's calls below which the breaker counts as open, when the spec
/// names no reduction.
const DEFAULT_REDUCTION: f64 = 0.5;
/// The share of the baseline's calls at or above which it counts as closed again.
const CLOSED_SHARE: f64 = 0.5;
/// The share of the requests sent to the caller it must answer (any status) in a second for
/// the calls' fall to count as its breaker opening.
const ANSWERED_SHARE: f64 = 0.5;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BreakerJudged {
    pub expectations: Vec<ExpectationResult>,
    pub figures: BreakerFigures,
}

/// The calls the dependency got in the baseline, per second (`None`: no baseline phase or no
/// reading), and the second the breaker opened.
struct Opening {
    baseline_calls: Option<f64>,
    /// The baseline's calls when there were any: what the breaker is judged against.
    baseline: Option<f64>,
    opened: Option<u64>,
}

fn mean_calls(calls: &[Option<u64>], from: u64, to: u64) -> Option<f64> {
    let read: Vec<u64> = (from..to).filter_map(|s| calls.get(s as usize).copied().flatten()).collect();
    (!read.is_empty()).then(|| read.iter().sum::<u64>() as f64 / read.len() as f64)
}

fn opening(
    timeline: &Timeline,
    expect: &BreakerExpectations,
    calls: &[Option<u64>],
    caller: &[Option<Figures>],
) -> Opening {
    let inject = timeline.inject();
    let baseline_calls = timeline.window(PhaseName::Baseline).and_then(|w| mean_calls(calls, w.start, w.end));
    // A dependency that got no calls normally has nothing to be spared: nothing can be judged.
    let baseline = baseline_calls.filter(|b| *b > 0.0);
    let reduction = expect.dependency_call_reduction_percent.map_or(DEFAULT_REDUCTION, |p| p / 100.0);
    let calls_at = |s: u64| calls.get(s as usize).copied().flatten();
    // The caller must still answer (fast failures and fallbacks are answers): a caller that
    // crashed or stalled also stops calling its dependency, and that is no open breaker.
    let caller_answers = |s: u64| {
        caller
            .get(s as usize)
            .cloned()
            .flatten()
            .is_some_and(|f| f.total > 0 && f.rps >= ANSWERED_SHARE * f.achieved_rate)
    };
    let opened = baseline.and_then(|b| {
        (inject.start..inject.end)
            .find(|&s| calls_at(s).is_some_and(|c| c as f64 <= b * (1.0 - reduction)) && caller_answers(s))
    });
    Opening { baseline_calls, baseline, opened }
}

/// The seconds the breaker was open during inject (from its opening to the heal), if it opened:
/// the window whose caller figures `openP99Below` is judged on.
/// The dependency's calls in each of the `seconds` seconds of a load that began at
/// `load_start`, from the calls the proxies counted per Unix second (`None`: not seen). Both
/// environments count per Unix second, and the load starts on a whole one.
pub fn calls_per_load_second(
    by_unix_second: &std::collections::BTreeMap<u64, u64>,
    load_start: k8s_openapi::jiff::Timestamp,
    seconds: u64,
) -> Vec<Option<u64>> {
    let start = u64::try_from(load_start.as_second()).unwrap_or(0);
    (0..seconds).map(|s| by_unix_second.get(&(start + s)).copied()).collect()
}

pub fn open_window(
    timeline: &Timeline,
    expect: &BreakerExpectations,
    calls: &[Option<u64>],
    caller: &[Option<Figures>],
) -> Option<Range<u64>> {
    opening(timeline, expect, calls, caller).opened.map(|o| o..timeline.inject().end)
}

/// `calls[s]`: calls that reached the dependency in second `s` of the load (`None`: not read).
/// `caller[s]`: the caller's figures in that second. `open`: the caller's figures over
/// [`open_window`] as one window (its p99 is `openP99Below`'s); without them, the worst
/// per-second p99 of that window stands in (an upper bound: a second holds few requests).
pub fn judge(
    timeline: &Timeline,
    expect: &BreakerExpectations,
    calls: &[Option<u64>],
    caller: &[Option<Figures>],
    open: Option<&Figures>,
) -> BreakerJudged {
    let inject = timeline.inject();
    let Opening { baseline_calls, baseline, opened } = opening(timeline, expect, calls, caller);
    let calls_at = |s: u64| calls.get(s as usize).copied().flatten();
    let end = timeline.load_seconds();
    // Only a breaker that opened can close: calls that never fell away say nothing of closing.
    let closed = baseline
        .filter(|_| opened.is_some())
        .and_then(|b| (inject.end..end).find(|&s| calls_at(s).is_some_and(|c| c as f64 >= b * CLOSED_SHARE)));
    let open_calls = opened.and_then(|o| mean_calls(calls, o, inject.end));
    let worst_second =
        |o: u64| (o..inject.end).filter_map(|s| caller.get(s as usize).cloned().flatten()).map(|f| f.p99).max();
    let open_p99 = opened.and_then(|o| open.filter(|f| f.total > 0).map(|f| f.p99).or_else(|| worst_second(o)));
    let secs = |s: u64| Duration::from_secs(s);
    let figures = BreakerFigures {
        opens_after: opened.map(|o| human_duration(secs(o + 1 - inject.start))),
        closes_after: closed.map(|c| human_duration(secs(c + 1 - inject.end))),
        dependency_calls_baseline: baseline,
        dependency_calls_open: open_calls,
    };

    let no_baseline = if baseline_calls.is_some() {
        "the dependency received no calls in the baseline: there was nothing for the breaker to spare"
    } else {
        "needs phases.baseline: the calls the dependency gets normally are what the breaker is judged against"
    };
    let mut results = Vec::new();
    let never = |what: &str| format!("never {what}");
    if let Some(within) = expect.opens_within {
        let observed = opened.map(|o| secs(o + 1 - inject.start));
        results.push(timing(
            "opensWithin",
            within.as_std(),
            observed,
            &never("opened"),
            baseline.is_none().then(|| no_baseline.to_owned()),
        ));
    }
    if let Some(bound) = expect.open_p99_below {
        let bound = bound.as_std();
        results.push(ExpectationResult {
            expression: format!("openP99Below {}", human_duration(bound)),
            observed: Some(open_p99.map_or_else(|| never("opened"), human_duration)),
            threshold: Some(human_duration(bound)),
            passed: open_p99.is_some_and(|p| p < bound),
            message: baseline.is_none().then(|| no_baseline.to_owned()),
        });
    }
    if let Some(percent) = expect.dependency_call_reduction_percent {
        let achieved = baseline
            .zip(open_calls.or(opened.map(|_| 0.0)))
            .map(|(b, o)| if b > 0.0 { 100.0 * (1.0 - o / b) } else { 0.0 });
        let during = mean_calls(calls, inject.start, inject.end);
        let observed =
            achieved.or_else(|| baseline.zip(during).map(|(b, d)| if b > 0.0 { 100.0 * (1.0 - d / b) } else { 0.0 }));
        results.push(ExpectationResult {
            expression: format!("dependencyCallReductionPercent {percent}"),
            observed: Some(observed.map_or_else(|| "not measured".to_owned(), |p| format!("{p:.1}%"))),
            threshold: Some(format!("{percent}%")),
            passed: achieved.is_some_and(|p| p >= percent),
            message: baseline.is_none().then(|| no_baseline.to_owned()),
        });
    }
    if let Some(within) = expect.closes_within {
        let observed = closed.map(|c| secs(c + 1 - inject.end));
        let ok = baseline.is_some();
        let never_closed = if opened.is_some() { never("closed") } else { never("opened") };
        let unjudged = (!ok).then(|| no_baseline.to_owned());
        results.push(timing("closesWithin", within.as_std(), observed, &never_closed, unjudged));
    }
    BreakerJudged { expectations: results, figures }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_proxies_unix_seconds_become_the_loads_seconds() {
        let at = |s: i64| k8s_openapi::jiff::Timestamp::from_second(s).expect("a time");
        let counted = std::collections::BTreeMap::from([(1_000, 7), (1_001, 9), (1_003, 2), (999, 50)]);
        assert_eq!(super::calls_per_load_second(&counted, at(1_000), 5), [Some(7), Some(9), None, Some(2), None]);
        assert!(super::calls_per_load_second(&counted, at(1_000), 0).is_empty());
    }

    use super::*;
    use crate::api::figures::PhasePlan;

    fn timeline() -> Timeline {
        let plan: PhasePlan = serde_saphyr::from_str("{baseline: 5s, inject: 10s, recover: 5s}").unwrap();
        Timeline::new(&plan)
    }

    fn expect() -> BreakerExpectations {
        serde_saphyr::from_str(
            "{opensWithin: 3s, openP99Below: 100ms, dependencyCallReductionPercent: 80, closesWithin: 4s}",
        )
        .unwrap()
    }

    fn caller(p99_ms: u64) -> Vec<Option<Figures>> {
        let answering = Figures {
            p99: Duration::from_millis(p99_ms),
            total: 20,
            achieved_rate: 20.0,
            rps: 20.0,
            ..Figures::default()
        };
        vec![Some(answering); 20]
    }

    #[test]
    fn a_breaker_that_opens_spares_the_dependency_and_closes_passes() {
        // 20 calls a second; the fault at 5 s: 10 calls, then 3 trial calls every 5 s; heal at 15.
        // Open from second 6 (0 <= 20 x 20%): 3 calls in 9 open seconds is a 98.3% reduction.
        let calls: Vec<Option<u64>> =
            [20, 20, 20, 20, 20, 10, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 20, 20, 20, 20].map(Some).to_vec();
        let judged = judge(&timeline(), &expect(), &calls, &caller(12), None);
        let got: Vec<(&str, &str, bool)> = judged
            .expectations
            .iter()
            .map(|r| (r.expression.as_str(), r.observed.as_deref().unwrap(), r.passed))
            .collect();
        assert_eq!(
            got,
            vec![
                ("opensWithin 3.0s", "2.0s", true),
                ("openP99Below 100ms", "12ms", true),
                ("dependencyCallReductionPercent 80", "98.3%", true),
                ("closesWithin 4.0s", "2.0s", true),
            ]
        );
        assert_eq!(judged.figures.dependency_calls_baseline, Some(20.0));
        assert_eq!(judged.figures.opens_after.as_deref(), Some("2.0s"));
    }

    #[test]
    fn without_a_breaker_the_calls_never_fall_and_the_right_expectations_fail() {
        // Every request still calls the dependency, twice with the retry.
        let calls: Vec<Option<u64>> = (0..20).map(|s| Some(if (5..15).contains(&s) { 40 } else { 20 })).collect();
        let judged = judge(&timeline(), &expect(), &calls, &caller(12), None);
        let failed: Vec<(&str, &str)> = judged
            .expectations
            .iter()
            .filter(|r| !r.passed)
            .map(|r| (r.expression.as_str(), r.observed.as_deref().unwrap()))
            .collect();
        assert_eq!(
            failed,
            vec![
                ("opensWithin 3.0s", "never opened"),
                ("openP99Below 100ms", "never opened"),
                ("dependencyCallReductionPercent 80", "-100.0%"),
                // Calls that never fell away cannot come back: never opened, never closed.
                ("closesWithin 4.0s", "never opened"),
            ]
        );
        assert_eq!(judged.figures.closes_after, None);
        assert!(judged.expectations.iter().all(|r| r.message.is_none()));
    }

    #[test]
    fn open_p99_is_the_open_windows_own_p99_when_the_world_gives_it() {
        let calls: Vec<Option<u64>> =
            [20, 20, 20, 20, 20, 10, 0, 0, 0, 0, 3, 0, 0, 0, 0, 3, 20, 20, 20, 20].map(Some).to_vec();
        // One slow second while open (a hiccup: its p99 is its slowest of 20 requests).
        let mut caller = caller(12);
        caller[8] = caller[8].clone().map(|f| Figures { p99: Duration::from_millis(150), ..f });
        assert_eq!(open_window(&timeline(), &expect(), &calls, &caller), Some(6..15));
        let worst = judge(&timeline(), &expect(), &calls, &caller, None);
        assert_eq!(worst.expectations[1].observed.as_deref(), Some("150ms"), "the worst second stands in");
        assert!(!worst.expectations[1].passed);
        // Over the whole open window (180 requests), the p99 is the window's.
        let window = Figures { p99: Duration::from_millis(14), total: 180, ..Figures::default() };
        let judged = judge(&timeline(), &expect(), &calls, &caller, Some(&window));
        assert_eq!(judged.expectations[1].observed.as_deref(), Some("14ms"));
        assert!(judged.expectations[1].passed);
    }

    #[test]
    fn a_caller_that_stops_answering_is_no_open_breaker() {
        // The calls fall away because the caller crashed at 5 s: its requests get no answer.
        let calls: Vec<Option<u64>> = (0..20).map(|s| Some(if (5..15).contains(&s) { 0 } else { 20 })).collect();
        let mut caller = caller(12);
        for second in caller.iter_mut().take(15).skip(5) {
            *second = Some(Figures { total: 20, achieved_rate: 20.0, rps: 0.0, error_rate: 1.0, ..Figures::default() });
        }
        let judged = judge(&timeline(), &expect(), &calls, &caller, None);
        assert_eq!(judged.figures.opens_after, None, "{:?}", judged.figures);
        assert!(!judged.expectations[0].passed, "opensWithin: {:?}", judged.expectations[0]);
    }

    #[test]
    fn a_dependency_without_calls_in_the_baseline_judges_nothing() {
        let calls = vec![Some(0); 20];
        let judged = judge(&timeline(), &expect(), &calls, &caller(12), None);
        assert!(judged.expectations.iter().all(|r| !r.passed));
        let message = judged.expectations[0].message.as_deref().unwrap();
        assert!(message.contains("no calls in the baseline"), "{message}");
    }

    #[test]
    fn without_a_baseline_nothing_can_be_judged() {
        let plan: PhasePlan = serde_saphyr::from_str("{inject: 10s}").unwrap();
        let calls = vec![Some(0); 10];
        let judged = judge(&Timeline::new(&plan), &expect(), &calls, &caller(12), None);
        assert!(judged.expectations.iter().all(|r| !r.passed && r.message.is_some()));
    }
}
