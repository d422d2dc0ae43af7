//! Judging expressions: a parsed threshold, expectation or abort rule against measured figures,
//! with baseline-relative values resolved, reported as an `ExpectationResult` with units.
//!
//! What cannot be judged never passes: a percentage of a target rate the run did not have, a
//! baseline that was not measured, latency of a window in which nothing was sent. Such a result
//! has `passed: false` and a `message` saying why, so the verdict can be Inconclusive rather
//! than a Pass nobody earned.

use std::time::Duration;

use crate::{
    api::{
        Verdict,
        figures::{ExpectationResult, LatencySummary},
    },
    domain::expression::{Expression, Metric, Op, Value},
};

/// What was measured in one window (the run, a phase, or one second for abort rules).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub p50: Duration,
    pub p90: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub mean: Duration,
    /// Failed requests / sent requests, as a fraction.
    pub error_rate: f64,
    /// Requests sent per second.
    pub achieved_rate: f64,
    /// The rate the schedule asked for, per second (open model); `None` for the closed model,
    /// which schedules no rate.
    pub target_rate: Option<f64>,
    /// Requests answered per second (throughput).
    pub rps: f64,
    /// Requests not sent because `maxInFlight` was reached.
    pub dropped: u64,
    /// Requests sent. Dropped requests were never sent, so they are not in it.
    pub total: u64,
}

impl Figures {
    /// The latency percentiles as status reports them, in milliseconds.
    pub fn latency_summary(&self) -> LatencySummary {
        let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
        LatencySummary {
            p50_ms: ms(self.p50),
            p90_ms: ms(self.p90),
            p95_ms: ms(self.p95),
            p99_ms: ms(self.p99),
            p999_ms: ms(self.p999),
            max_ms: ms(self.max),
            mean_ms: ms(self.mean),
        }
    }

    /// Requests the schedule asked for: those sent and those dropped.
    fn scheduled(&self) -> u64 {
        self.total.saturating_add(self.dropped)
    }
}

/// Why an expression cannot be judged; the text becomes the result's `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum CannotJudge {
    #[error("no request was scheduled in {0}, so there is nothing to judge")]
    NothingScheduled(Window),
    #[error(
        "no request was sent in {window} (all {dropped} were dropped at maxInFlight), so there is no {what} to judge"
    )]
    NothingSent { window: Window, dropped: u64, what: &'static str },
    #[error(
        "achievedRate as a percentage needs the rate the schedule asked for, and {0} has none (the closed model schedules no rate): compare with requests per second instead, such as achievedRate >= 450"
    )]
    NoTargetRate(Window),
    #[error("this compares with the baseline, but no baseline was measured")]
    NoBaseline,
    #[error("{metric} in {window} is not a number")]
    NotANumber { metric: &'static str, window: Window },
    #[error("the value does not fit {0}")]
    ValueDoesNotFit(&'static str),
}

/// Which window a figure comes from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Window {
    Judged,
    Baseline,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Window::Judged => "the judged window",
            Window::Baseline => "the baseline",
        })
    }
}

/// What a number is, for comparing and printing. Latency is kept in nanoseconds so that
/// comparisons with durations are exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Nanos,
    Fraction,
    PerSecond,
    Count,
}

/// Which figure an expression reads. Some metrics have two: `achievedRate` as a share of the
/// target rate or in requests per second, `dropped` as a count or a share of the requests
/// scheduled; the value's form decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Latency(Metric),
    ErrorRate,
    AchievedShare,
    AchievedRate,
    Rps,
    DroppedCount,
    DroppedShare,
}

impl View {
    fn of(metric: Metric, value: &Value) -> View {
        // A percentage reads the share; so does `x baseline` of dropped, because a count
        // depends on the window's length and the baseline is often shorter than the window
        // judged. `x baseline` of achievedRate reads requests per second, already per time.
        let percent = match value {
            Value::Ratio(_) => true,
            Value::BaselinePlus(margin) => matches!(**margin, Value::Ratio(_)),
            Value::TimesBaseline(_) => metric == Metric::Dropped,
            Value::Latency(_) | Value::Number(_) => false,
        };
        match metric {
            Metric::ErrorRate => View::ErrorRate,
            Metric::AchievedRate if percent => View::AchievedShare,
            Metric::AchievedRate => View::AchievedRate,
            Metric::Rps => View::Rps,
            Metric::Dropped if percent => View::DroppedShare,
            Metric::Dropped => View::DroppedCount,
            latency => View::Latency(latency),
        }
    }

    fn unit(self) -> Unit {
        match self {
            View::Latency(_) => Unit::Nanos,
            View::ErrorRate | View::AchievedShare | View::DroppedShare => Unit::Fraction,
            View::AchievedRate | View::Rps => Unit::PerSecond,
            View::DroppedCount => Unit::Count,
        }
    }

    fn measure(self, figures: &Figures, window: Window) -> Result<f64, CannotJudge> {
        let scheduled = figures.scheduled();
        if scheduled == 0 {
            return Err(CannotJudge::NothingScheduled(window));
        }
        let nothing_sent = |what| CannotJudge::NothingSent { window, dropped: figures.dropped, what };
        let value = match self {
            View::Latency(_) if figures.total == 0 => return Err(nothing_sent("latency")),
            View::Latency(metric) => latency(figures, metric).as_nanos() as f64,
            View::ErrorRate if figures.total == 0 => return Err(nothing_sent("error rate")),
            View::ErrorRate => figures.error_rate,
            View::AchievedShare => match figures.target_rate {
                Some(target) if target > 0.0 && target.is_finite() => figures.achieved_rate / target,
                _ => return Err(CannotJudge::NoTargetRate(window)),
            },
            View::AchievedRate => figures.achieved_rate,
            View::Rps => figures.rps,
            View::DroppedCount => figures.dropped as f64,
            View::DroppedShare => figures.dropped as f64 / scheduled as f64,
        };
        if value.is_finite() { Ok(value) } else { Err(CannotJudge::NotANumber { metric: self.name(), window }) }
    }

    fn name(self) -> &'static str {
        match self {
            View::Latency(metric) => metric_name(metric),
            View::ErrorRate => "errorRate",
            View::AchievedShare | View::AchievedRate => "achievedRate",
            View::Rps => "rps",
            View::DroppedCount | View::DroppedShare => "dropped",
        }
    }

    /// An absolute value in this view's unit, if it is of the kind the view reads.
    fn absolute(self, value: &Value) -> Result<f64, CannotJudge> {
        match (value, self.unit()) {
            (Value::Latency(d), Unit::Nanos) => Ok(d.as_nanos() as f64),
            (Value::Ratio(r), Unit::Fraction) => Ok(*r),
            (Value::Number(n), Unit::PerSecond | Unit::Count) => Ok(*n),
            _ => Err(CannotJudge::ValueDoesNotFit(self.name())),
        }
    }

    /// The limit, after resolving a baseline-relative value.
    fn threshold(self, value: &Value, baseline: Option<&Figures>) -> Result<f64, CannotJudge> {
        let base = || self.measure(baseline.ok_or(CannotJudge::NoBaseline)?, Window::Baseline);
        let limit = match value {
            Value::TimesBaseline(factor) => factor * base()?,
            Value::BaselinePlus(margin) => {
                let margin = self.absolute(margin)?;
                base()? + margin
            }
            absolute => self.absolute(absolute)?,
        };
        // Latency limits are whole nanoseconds, like the figures they are compared with.
        let limit = if self.unit() == Unit::Nanos { limit.round() } else { limit };
        if limit.is_finite() {
            Ok(limit)
        } else {
            Err(CannotJudge::NotANumber { metric: self.name(), window: Window::Baseline })
        }
    }
}

fn latency(figures: &Figures, metric: Metric) -> Duration {
    match metric {
        Metric::P50 => figures.p50,
        Metric::P90 => figures.p90,
        Metric::P95 => figures.p95,
        Metric::P99 => figures.p99,
        Metric::P999 => figures.p999,
        Metric::Max => figures.max,
        _ => figures.mean,
    }
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::P50 => "p50",
        Metric::P90 => "p90",
        Metric::P95 => "p95",
        Metric::P99 => "p99",
        Metric::P999 => "p999",
        Metric::Max => "max",
        Metric::Mean => "mean",
        Metric::ErrorRate => "errorRate",
        Metric::AchievedRate => "achievedRate",
        Metric::Rps => "rps",
        Metric::Dropped => "dropped",
    }
}

fn holds(observed: f64, op: Op, limit: f64) -> bool {
    match op {
        Op::Lt => observed < limit,
        Op::Le => observed <= limit,
        Op::Gt => observed > limit,
        Op::Ge => observed >= limit,
    }
}

/// Judge a parsed expression. `text` is the expression as written in the spec; `baseline` the
/// figures of the baseline phase, if the run measured one.
pub fn evaluate(
    text: &str,
    expression: &Expression,
    observed: &Figures,
    baseline: Option<&Figures>,
) -> ExpectationResult {
    let view = View::of(expression.metric, &expression.value);
    let measured = view.measure(observed, Window::Judged);
    let limit = view.threshold(&expression.value, baseline);
    let unit = view.unit();
    let (observed_text, threshold_text) = match (&measured, &limit) {
        (Ok(o), Ok(l)) => {
            let (o_text, l_text) = (format(*o, unit, false), format(*l, unit, false));
            // Rounded for reading, 250.04ms and 250ms would both print as 250ms next to a
            // failed `p99 < 250ms`; print both finer when the rounding hides the difference.
            if o_text == l_text && o != l {
                (Some(format(*o, unit, true)), Some(format(*l, unit, true)))
            } else {
                (Some(o_text), Some(l_text))
            }
        }
        _ => (
            measured.as_ref().ok().map(|o| format(*o, unit, false)),
            limit.as_ref().ok().map(|l| format(*l, unit, false)),
        ),
    };
    let (passed, message) = match (measured, limit) {
        (Ok(o), Ok(l)) => (holds(o, expression.op, l), None),
        (Err(why), _) | (_, Err(why)) => (false, Some(why.to_string())),
    };
    ExpectationResult {
        expression: text.to_owned(),
        observed: observed_text,
        threshold: threshold_text,
        passed,
        message,
    }
}

/// Parse and judge an expression as written. One that does not parse cannot pass either: the
/// spec checks refuse such expressions before a run, so this only guards against a spec that
/// skipped them.
pub fn judge(text: &str, observed: &Figures, baseline: Option<&Figures>) -> ExpectationResult {
    match text.parse::<Expression>() {
        Ok(expression) => evaluate(text, &expression, observed, baseline),
        Err(e) => ExpectationResult {
            expression: text.to_owned(),
            passed: false,
            message: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// A value with its unit, as a person reads it: `212.4ms`, `1.5s`, `0.8%`, `448.7 req/s`,
/// `12`. `fine` prints to a millionth, for values the usual rounding would make look equal.
fn format(value: f64, unit: Unit, fine: bool) -> String {
    let coarse = |value: f64| match unit {
        Unit::Nanos if value < 1e6 => format!("{}ms", decimals(value / 1e6, 3)),
        Unit::Nanos if value < 1e9 => format!("{}ms", decimals(value / 1e6, 1)),
        Unit::Nanos => format!("{}s", decimals(value / 1e9, 3)),
        Unit::Fraction => format!("{}%", decimals(value * 100.0, 2)),
        Unit::PerSecond => format!("{} req/s", decimals(value, 1)),
        Unit::Count => decimals(value, 3),
    };
    let fine_text = |value: f64| match unit {
        Unit::Nanos => format!("{}ms", decimals(value / 1e6, 6)),
        Unit::Fraction => format!("{}%", decimals(value * 100.0, 6)),
        Unit::PerSecond => format!("{} req/s", decimals(value, 6)),
        Unit::Count => decimals(value, 6),
    };
    if fine {
        return fine_text(value);
    }
    let text = coarse(value);
    // A value that is not zero must not print as zero (an error rate of 0.001% is not 0%).
    let rest = text.trim_start_matches('0');
    let prints_as_zero = rest.is_empty() || rest.starts_with(|c: char| !c.is_ascii_digit() && c != '.');
    if value != 0.0 && prints_as_zero { fine_text(value) } else { text }
}

/// `value` with at most `places` decimals, trailing zeros dropped.
fn decimals(value: f64, places: usize) -> String {
    let text = format!("{value:.places$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// Whether an abort rule fires: its condition held on every one of the last `for_seconds`
/// seconds of `seconds` (figures of consecutive seconds, oldest first). Returns the observed
/// values, one per second, as the rule's unit writes them. A second in which nothing was sent
/// cannot hold a latency condition, so a silent stretch never fires a latency rule.
pub fn abort_fires(when: &str, for_seconds: u64, seconds: &[Figures]) -> Option<Vec<String>> {
    let needed = usize::try_from(for_seconds.max(1)).unwrap_or(usize::MAX);
    if seconds.len() < needed {
        return None;
    }
    let window = &seconds[seconds.len() - needed..];
    let mut observed = Vec::with_capacity(window.len());
    for figures in window {
        let result = judge(when, figures, None);
        if !result.passed {
            return None;
        }
        observed.push(result.observed.unwrap_or_default());
    }
    Some(observed)
}

/// The verdict of a run's thresholds — the one rule for `chaoslab load` and the LoadTest: Fail
/// when a threshold failed on a measured figure; Inconclusive when one could not be judged; else
/// Pass. A run with no success is never judged by this: see [`no_success`].
pub fn verdict_of(results: &[ExpectationResult]) -> Verdict {
    if results.iter().any(|r| !r.passed && r.message.is_none()) {
        Verdict::Fail
    } else if results.iter().any(|r| !r.passed) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    }
}

/// No Pass without a success: a run that sent nothing, or whose every request failed, measured
/// nothing that says the service works, whatever its thresholds say (with none, or with only
/// latency thresholds, failures answered fast would pass). The reason, when that is so; the
/// verdict is then Inconclusive (a threshold that failed outright still makes it Fail).
pub fn no_success(sent: u64, succeeded: u64) -> Option<String> {
    if sent == 0 {
        Some("no request was sent, so nothing was measured".to_owned())
    } else if succeeded == 0 {
        Some(format!("no request succeeded ({sent} sent, every one failed): nothing measured says the service works"))
    } else {
        None
    }
}

/// The verdict of thresholds with the no-success rule applied: a threshold that failed on a
/// measured figure is Fail; otherwise a run with no success is Inconclusive with the reason.
pub fn judged(results: &[ExpectationResult], sent: u64, succeeded: u64) -> (Verdict, Option<String>) {
    let verdict = verdict_of(results);
    match no_success(sent, succeeded) {
        Some(why) if verdict != Verdict::Fail => (Verdict::Inconclusive, Some(why)),
        _ => (verdict, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pass_without_a_success() {
        let held = ExpectationResult { expression: "p99 < 1s".into(), passed: true, ..Default::default() };
        let failed = ExpectationResult { expression: "p99 < 1ms".into(), passed: false, ..Default::default() };
        assert_eq!(judged(&[], 10, 1), (Verdict::Pass, None));
        let (verdict, why) = judged(&[], 10, 0);
        assert_eq!(verdict, Verdict::Inconclusive);
        assert!(why.is_some_and(|w| w.contains("no request succeeded (10 sent")));
        let (verdict, why) = judged(std::slice::from_ref(&held), 0, 0);
        assert_eq!(verdict, Verdict::Inconclusive, "nothing sent: the latency threshold held on nothing");
        assert!(why.is_some_and(|w| w.contains("no request was sent")));
        assert_eq!(judged(&[held, failed], 10, 0), (Verdict::Fail, None), "a measured failure stays Fail");
    }

    fn ms(x: f64) -> Duration {
        Duration::from_micros((x * 1000.0).round() as u64)
    }

    /// A healthy window: 10 000 requests at 100 req/s of 100 asked for.
    fn figures() -> Figures {
        Figures {
            p50: ms(40.0),
            p90: ms(90.0),
            p95: ms(120.0),
            p99: ms(212.4),
            p999: ms(480.0),
            max: ms(1500.0),
            mean: ms(55.5),
            error_rate: 0.008,
            achieved_rate: 99.2,
            target_rate: Some(100.0),
            rps: 98.7,
            dropped: 12,
            total: 9_988,
        }
    }

    fn run(text: &str) -> ExpectationResult {
        judge(text, &figures(), None)
    }

    fn with_baseline(text: &str, observed: &Figures, baseline: &Figures) -> ExpectationResult {
        judge(text, observed, Some(baseline))
    }

    fn outcome(r: &ExpectationResult) -> (Option<&str>, Option<&str>, bool) {
        (r.observed.as_deref(), r.threshold.as_deref(), r.passed)
    }

    #[track_caller]
    fn cannot_judge(r: &ExpectationResult, says: &str) {
        assert!(!r.passed, "{r:?} must not pass");
        let message = r.message.as_deref().unwrap_or_else(|| panic!("{r:?} needs a message"));
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }

    #[test]
    fn every_latency_metric_and_op() {
        let values = [
            ("p50", 40.0),
            ("p90", 90.0),
            ("p95", 120.0),
            ("p99", 212.4),
            ("p999", 480.0),
            ("max", 1500.0),
            ("mean", 55.5),
        ];
        for (metric, observed) in values {
            let at = format(ms(observed).as_nanos() as f64, Unit::Nanos, false);
            let below = format!("{}ms", observed - 1.0);
            let above = format!("{}ms", observed + 1.0);
            for (op, limit, passes) in [
                ("<", &above, true),
                ("<", &at, false),
                ("<=", &at, true),
                ("<=", &below, false),
                (">", &below, true),
                (">", &at, false),
                (">=", &at, true),
                (">=", &above, false),
            ] {
                let text = format!("{metric} {op} {limit}");
                let r = run(&text);
                assert_eq!(r.passed, passes, "{text}: {r:?}");
                assert_eq!(r.observed.as_deref(), Some(at.as_str()), "{text}");
                assert_eq!(r.message, None, "{text}");
                assert_eq!(r.expression, text);
            }
        }
    }

    #[test]
    fn latency_prints_in_the_unit_a_person_reads() {
        assert_eq!(outcome(&run("p99 < 250ms")), (Some("212.4ms"), Some("250ms"), true));
        assert_eq!(outcome(&run("max <= 1.5s")), (Some("1.5s"), Some("1.5s"), true));
        assert_eq!(outcome(&run("max < 2s")), (Some("1.5s"), Some("2s"), true));
        assert_eq!(outcome(&run("p50 > 250us")), (Some("40ms"), Some("0.25ms"), true));
        assert_eq!(format(1_234_567_890.0, Unit::Nanos, false), "1.235s");
    }

    #[test]
    fn rounding_never_hides_why_a_threshold_failed() {
        let mut f = figures();
        f.p99 = Duration::from_micros(250_040);
        let r = judge("p99 < 250ms", &f, None);
        assert_eq!(outcome(&r), (Some("250.04ms"), Some("250ms"), false));
        f.error_rate = 0.01 + 1e-7;
        assert_eq!(outcome(&judge("errorRate <= 1%", &f, None)), (Some("1.00001%"), Some("1%"), false));
        // Equal values print equal.
        f.p99 = ms(250.0);
        assert_eq!(outcome(&judge("p99 <= 250ms", &f, None)), (Some("250ms"), Some("250ms"), true));
        f.error_rate = 0.00001;
        assert_eq!(outcome(&judge("errorRate <= 0%", &f, None)), (Some("0.001%"), Some("0%"), false));
    }

    #[test]
    fn error_rate_every_op() {
        assert_eq!(outcome(&run("errorRate < 1%")), (Some("0.8%"), Some("1%"), true));
        assert_eq!(outcome(&run("errorRate < 0.8%")), (Some("0.8%"), Some("0.8%"), false));
        assert!(run("errorRate <= 0.8%").passed);
        assert!(!run("errorRate <= 0.5%").passed);
        assert!(run("errorRate > 0.5%").passed);
        assert!(!run("errorRate > 0.8%").passed);
        assert!(run("errorRate >= 0.8%").passed);
        assert!(!run("errorRate >= 1%").passed);
        let mut f = figures();
        f.error_rate = 0.0;
        assert_eq!(outcome(&judge("errorRate <= 0%", &f, None)), (Some("0%"), Some("0%"), true));
    }

    #[test]
    fn achieved_rate_as_a_share_of_the_target_or_per_second() {
        assert_eq!(outcome(&run("achievedRate >= 99%")), (Some("99.2%"), Some("99%"), true));
        assert!(!run("achievedRate >= 99.5%").passed);
        assert!(!run("achievedRate > 99.2%").passed);
        assert!(run("achievedRate < 120%").passed);
        assert!(run("achievedRate <= 99.2%").passed);
        assert_eq!(outcome(&run("achievedRate >= 95")), (Some("99.2 req/s"), Some("95 req/s"), true));
        assert!(!run("achievedRate > 99.2").passed);
        assert!(run("achievedRate < 100").passed);
        assert!(!run("achievedRate <= 99").passed);
    }

    #[test]
    fn achieved_rate_as_a_share_cannot_be_judged_without_a_target_rate() {
        let mut closed = figures();
        closed.target_rate = None;
        for (text, limit) in [("achievedRate >= 99%", "99%"), ("achievedRate < 200%", "200%")] {
            let r = judge(text, &closed, None);
            cannot_judge(&r, "achievedRate as a percentage needs the rate the schedule asked for");
            assert_eq!((r.observed.as_deref(), r.threshold.as_deref()), (None, Some(limit)));
        }
        closed.target_rate = Some(0.0);
        cannot_judge(&judge("achievedRate >= 99%", &closed, None), "has none");
        closed.target_rate = Some(f64::NAN);
        cannot_judge(&judge("achievedRate >= 99%", &closed, None), "has none");
        // Requests per second need no target.
        assert!(judge("achievedRate >= 95", &closed, None).passed);
    }

    #[test]
    fn rps_every_op() {
        assert_eq!(outcome(&run("rps > 50")), (Some("98.7 req/s"), Some("50 req/s"), true));
        assert!(!run("rps > 98.7").passed);
        assert!(run("rps >= 98.7").passed);
        assert!(run("rps < 99").passed);
        assert!(!run("rps < 98.7").passed);
        assert!(run("rps <= 98.7").passed);
        assert!(!run("rps <= 98").passed);
    }

    #[test]
    fn dropped_as_a_count_or_a_share_of_the_requests_scheduled() {
        assert_eq!(outcome(&run("dropped <= 12")), (Some("12"), Some("12"), true));
        assert!(!run("dropped < 12").passed);
        assert!(!run("dropped <= 0").passed);
        assert!(run("dropped > 11").passed);
        assert!(run("dropped >= 12").passed);
        // 12 of 10 000 scheduled (9 988 sent + 12 dropped).
        assert_eq!(outcome(&run("dropped < 0.5%")), (Some("0.12%"), Some("0.5%"), true));
        assert!(!run("dropped <= 0.1%").passed);
        assert!(run("dropped >= 0.12%").passed);
        assert!(!run("dropped > 0.12%").passed);
        let mut none = figures();
        none.dropped = 0;
        assert_eq!(outcome(&judge("dropped <= 0", &none, None)), (Some("0"), Some("0"), true));
    }

    #[test]
    fn relative_values_resolve_against_the_baseline() {
        let mut base = figures();
        base.p99 = ms(106.2);
        base.p50 = ms(30.0);
        base.error_rate = 0.003;
        base.rps = 100.0;
        base.achieved_rate = 99.9;
        base.target_rate = Some(100.0);
        base.dropped = 0;
        base.total = 6000;
        let now = figures();
        let check = |text: &str| with_baseline(text, &now, &base);

        assert_eq!(outcome(&check("p99 <= 2x baseline")), (Some("212.4ms"), Some("212.4ms"), true));
        assert_eq!(outcome(&check("p99 < 2x baseline")), (Some("212.4ms"), Some("212.4ms"), false));
        assert_eq!(outcome(&check("p99 <= 1.5 x baseline")), (Some("212.4ms"), Some("159.3ms"), false));
        assert_eq!(outcome(&check("p50 < baseline + 50ms")), (Some("40ms"), Some("80ms"), true));
        assert_eq!(outcome(&check("p50 < baseline + 5ms")), (Some("40ms"), Some("35ms"), false));
        assert_eq!(outcome(&check("errorRate <= baseline + 0.5%")), (Some("0.8%"), Some("0.8%"), true));
        assert_eq!(outcome(&check("errorRate <= baseline + 0.4%")), (Some("0.8%"), Some("0.7%"), false));
        assert_eq!(outcome(&check("errorRate < 3x baseline")), (Some("0.8%"), Some("0.9%"), true));
        assert_eq!(outcome(&check("rps >= 0.9x baseline")), (Some("98.7 req/s"), Some("90 req/s"), true));
        assert_eq!(outcome(&check("rps > baseline + 1")), (Some("98.7 req/s"), Some("101 req/s"), false));
        // achievedRate: `x baseline` in requests per second, `baseline + n%` as shares.
        assert_eq!(outcome(&check("achievedRate >= 0.99x baseline")), (Some("99.2 req/s"), Some("98.9 req/s"), true));
        assert_eq!(outcome(&check("achievedRate >= baseline + 1%")), (Some("99.2%"), Some("100.9%"), false));
        assert_eq!(outcome(&check("achievedRate > baseline + 5")), (Some("99.2 req/s"), Some("104.9 req/s"), false));
        // dropped: `x baseline` as shares (the windows' lengths differ), `baseline + n` as counts.
        let mut dropping = base.clone();
        dropping.dropped = 6;
        dropping.total = 5_994;
        let check_d = |text: &str| with_baseline(text, &now, &dropping);
        assert_eq!(outcome(&check_d("dropped <= 2x baseline")), (Some("0.12%"), Some("0.2%"), true));
        assert_eq!(outcome(&check_d("dropped <= 1x baseline")), (Some("0.12%"), Some("0.1%"), false));
        assert_eq!(outcome(&check_d("dropped <= baseline + 6")), (Some("12"), Some("12"), true));
        assert_eq!(outcome(&check_d("dropped < baseline + 0.01%")), (Some("0.12%"), Some("0.11%"), false));
        for text in ["p99 <= 2x baseline", "errorRate <= baseline + 0.5%", "dropped <= 2x baseline"] {
            assert_eq!(check(text).message, None, "{text}");
        }
    }

    #[test]
    fn relative_values_cannot_be_judged_without_a_baseline() {
        for text in [
            "p99 <= 2x baseline",
            "p50 < baseline + 50ms",
            "errorRate <= baseline + 0.5%",
            "rps >= 0.9x baseline",
            "achievedRate >= baseline + 1%",
            "achievedRate >= 2x baseline",
            "dropped <= 2x baseline",
            "dropped <= baseline + 3",
        ] {
            let r = run(text);
            cannot_judge(&r, "no baseline was measured");
            assert!(r.observed.is_some(), "{text}: what was measured is still shown");
            assert_eq!(r.threshold, None, "{text}");
        }
    }

    #[test]
    fn a_baseline_that_measured_nothing_judges_nothing() {
        let mut empty = figures();
        empty.total = 0;
        empty.dropped = 0;
        let r = with_baseline("p99 <= 2x baseline", &figures(), &empty);
        cannot_judge(&r, "no request was scheduled in the baseline");
        let mut all_dropped = figures();
        all_dropped.total = 0;
        cannot_judge(
            &with_baseline("p99 <= 2x baseline", &figures(), &all_dropped),
            "no request was sent in the baseline",
        );
        cannot_judge(&with_baseline("errorRate <= baseline + 1%", &figures(), &all_dropped), "no error rate");
        let mut no_target = figures();
        no_target.target_rate = None;
        cannot_judge(&with_baseline("achievedRate >= baseline + 1%", &figures(), &no_target), "the baseline has none");
        let mut nan = figures();
        nan.rps = f64::NAN;
        cannot_judge(&with_baseline("rps >= 0.9x baseline", &figures(), &nan), "rps in the baseline is not a number");
    }

    #[test]
    fn a_window_without_requests_judges_nothing() {
        let mut empty = figures();
        empty.total = 0;
        empty.dropped = 0;
        for text in [
            "p99 < 250ms",
            "errorRate < 1%",
            "achievedRate >= 99%",
            "achievedRate >= 5",
            "rps < 100",
            "dropped <= 0",
            "dropped < 1%",
        ] {
            cannot_judge(&judge(text, &empty, None), "no request was scheduled in the judged window");
        }
        // Everything dropped: there is no latency or error rate, but the drops and the rate are
        // real measurements, and they fail.
        let mut dropped = figures();
        dropped.total = 0;
        dropped.dropped = 500;
        dropped.achieved_rate = 0.0;
        dropped.rps = 0.0;
        cannot_judge(
            &judge("p99 < 250ms", &dropped, None),
            "(all 500 were dropped at maxInFlight), so there is no latency",
        );
        cannot_judge(&judge("errorRate < 1%", &dropped, None), "no error rate to judge");
        assert_eq!(outcome(&judge("dropped <= 0", &dropped, None)), (Some("500"), Some("0"), false));
        assert_eq!(outcome(&judge("dropped < 1%", &dropped, None)), (Some("100%"), Some("1%"), false));
        assert_eq!(outcome(&judge("achievedRate >= 99%", &dropped, None)), (Some("0%"), Some("99%"), false));
        assert!(!judge("rps > 1", &dropped, None).passed);
    }

    #[test]
    fn figures_that_are_not_numbers_judge_nothing() {
        let mut f = figures();
        f.error_rate = f64::NAN;
        f.rps = f64::INFINITY;
        f.achieved_rate = f64::NAN;
        for (text, metric) in [
            ("errorRate < 1%", "errorRate"),
            ("errorRate >= 0%", "errorRate"),
            ("rps > 1", "rps"),
            ("rps < 1", "rps"),
            ("achievedRate >= 1", "achievedRate"),
            ("achievedRate < 100%", "achievedRate"),
        ] {
            cannot_judge(&judge(text, &f, None), &format!("{metric} in the judged window is not a number"));
        }
    }

    #[test]
    fn what_cannot_be_judged_never_passes_whatever_the_op() {
        let mut hopeless = figures();
        hopeless.total = 0;
        hopeless.target_rate = None;
        for metric in ["p50", "p90", "p95", "p99", "p999", "max", "mean", "errorRate", "achievedRate"] {
            for op in ["<", "<=", ">", ">="] {
                let value = match metric {
                    "errorRate" | "achievedRate" => "50%",
                    _ => "1s",
                };
                let text = format!("{metric} {op} {value}");
                for window in [&hopeless, &Figures::default()] {
                    let r = judge(&text, window, None);
                    assert!(!r.passed && r.message.is_some(), "{text}: {r:?}");
                }
                let relative = format!("{metric} {op} 2x baseline");
                let r = run(&relative);
                assert!(!r.passed && r.message.is_some(), "{relative}: {r:?}");
            }
        }
    }

    #[test]
    fn values_that_do_not_fit_the_metric_never_pass() {
        // The parser refuses these; a hand-built expression must not slip through.
        for (metric, value) in [
            (Metric::ErrorRate, Value::Latency(ms(1.0))),
            (Metric::P99, Value::Ratio(0.5)),
            (Metric::P99, Value::Number(5.0)),
            (Metric::Rps, Value::Latency(ms(1.0))),
            (Metric::ErrorRate, Value::Number(0.5)),
            (Metric::P99, Value::BaselinePlus(Box::new(Value::TimesBaseline(2.0)))),
        ] {
            for op in [Op::Lt, Op::Le, Op::Gt, Op::Ge] {
                let expression = Expression { metric, op, value: value.clone() };
                let r = evaluate("hand-built", &expression, &figures(), Some(&figures()));
                cannot_judge(&r, "the value does not fit");
            }
        }
    }

    #[test]
    fn an_expression_that_does_not_parse_never_passes() {
        let r = run("p98 < 250ms");
        cannot_judge(&r, "unknown metric \"p98\"");
        assert_eq!((r.observed, r.threshold, r.expression.as_str()), (None, None, "p98 < 250ms"));
    }

    #[test]
    fn figures_report_latency_in_milliseconds() {
        let summary = figures().latency_summary();
        assert!((summary.p99_ms - 212.4).abs() < 1e-9);
        assert_eq!(summary.max_ms, 1500.0);
        assert_eq!(summary.mean_ms, 55.5);
    }

    #[test]
    fn an_abort_rule_fires_only_when_it_held_for_the_whole_window() {
        let second = |error_rate: f64, p99_ms: u64, total: u64| Figures {
            error_rate,
            p99: Duration::from_millis(p99_ms),
            total,
            ..Default::default()
        };
        let calm = second(0.01, 20, 100);
        let bad = second(0.4, 20, 100);
        assert_eq!(abort_fires("errorRate > 20%", 3, &[calm.clone(), bad.clone(), bad.clone()]), None);
        let fired = abort_fires("errorRate > 20%", 3, &[calm.clone(), bad.clone(), bad.clone(), bad.clone()]);
        assert_eq!(fired, Some(vec!["40%".to_owned(); 3]));
        assert_eq!(abort_fires("errorRate > 20%", 3, &[bad.clone(), bad.clone()]), None, "too few seconds yet");
        // A silent second has no latency to judge, so a latency rule does not fire on it.
        let silent = second(0.0, 0, 0);
        assert_eq!(abort_fires("p99 > 1s", 2, &[silent.clone(), silent]), None);
        assert!(abort_fires("p99 > 1s", 2, &[second(0.0, 1500, 10), second(0.0, 2000, 10)]).is_some());
    }
}
