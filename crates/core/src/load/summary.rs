//! Run summaries: what a run's sealed seconds add up to, folded one second at a time as the
//! engine (or a merged runner report) hands them out — a line per second for progress and
//! charts, the whole run, one window per step of the plan — and the decisions taken on them:
//! where a capacity search breaks, when `abortOnFail` stops a run, and the final verdict.
//!
//! Pure like the rest of `load`: no I/O, no clock. Seconds arrive in order, each once, with
//! every runner's requests already merged into them ([`Bucket::add`]).
//!
//! **Steps.** Each step of the plan is judged over its settled part only: the whole seconds in
//! `[settled, end)` (when a step is too short to hold one whole second, the seconds it touches).
//! A step is complete once a second at or after the end of its window has been folded, or when
//! the run is finished having planned it to its end.
//!
//! **Capacity** (`SummarySpec::capacity`). When a step completes, the thresholds are judged on
//! its figures. The highest level that held every one is the *knee*, the first that broke one is
//! `brokeAt`, and the run can stop there: [`fold`](RunSummary::fold) returns
//! [`Stop::CapacityBroke`]. The verdict asks whether the nominal level L held: Pass when the
//! step at L held (whatever broke above it), Fail when a step at or below L broke, Inconclusive
//! when the run ended before L was judged. The threshold results reported are those of the step
//! at L, or of the step that broke.
//!
//! **abortOnFail** (`SummarySpec::abort_grace`). A capacity search judges its thresholds per
//! step and already stops at the first that breaks, so abortOnFail does not apply to it (the
//! whole run's figures, which it would judge, are meant to break there). Otherwise nothing
//! aborts while the folded seconds lie within the grace period. After it, at every folded second:
//! - *Certain failure* (both models): from the figures so far and the most requests the rest of
//!   the run can still send, each metric's final value is bounded — the best and the worst the
//!   rest could make it (every remaining request sent and answered instantly and well, or each
//!   one a 60 s failure or dropped). A threshold that fails at both ends of that range cannot hold
//!   any more, and the run is aborted at once. In the open model the rest is known: the plan's
//!   remaining area (plus one for rounding). The closed model sends as many requests as the
//!   server lets it, so only what can never shrink decides there: a `dropped` count, a `max`.
//!   Percentiles of a partial run are never taken as final: `p99 < 250ms` aborts only once more
//!   than 1 % of every request the run can send is already known to be slower.
//! - *Sustained failure* (closed model only, since there certain failure rarely fires): a
//!   threshold that fails on the figures so far at each of the last [`SUSTAINED_SECONDS`] folded
//!   seconds aborts the run. Thresholds in requests per second (`rps`, `achievedRate` without
//!   `%`) are left out: a ramp makes them fail early, and they judge the whole run.

use std::{fmt, ops::Range, time::Duration};

use hdrhistogram::Histogram;

use crate::{
    api::{
        Verdict,
        figures::{ExpectationResult, RequestCounts},
        load::{CapacityResult, LoadModel},
    },
    domain::expression::{Expression, ExpressionError, Metric, Value},
    load::{
        measure::{Bucket, HIGHEST_MICROS, LOWEST_MICROS, MeasureError, WindowFigures, max, percentiles, quantile},
        stages::{Plan, Step},
        verdict::{Figures, evaluate},
    },
};

/// The grace period of `abortOnFail` when the spec gives none.
pub const DEFAULT_ABORT_GRACE: Duration = Duration::from_secs(10);
/// Closed model: seconds in a row a threshold must fail on the figures so far to abort a run.
pub const SUSTAINED_SECONDS: u32 = 5;
/// Stands for "no bound" on the requests the closed model may still send: more than any run of
/// at most 24h at 1 000 000 per second can send (8.64 × 10¹⁰).
const UNBOUNDED_REQUESTS: u64 = 1 << 40;

/// What a summary needs to know about the run beyond its seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct SummarySpec {
    /// The plan that runs: its levels give the target rates (open model) and its steps the
    /// per-step windows.
    pub plan: Plan,
    pub model: LoadModel,
    /// Threshold expressions as written (`p99 < 250ms`).
    pub thresholds: Vec<String>,
    /// A capacity search around the nominal level L: judge each step as it completes and stop
    /// at the first that breaks a threshold.
    pub capacity: Option<u32>,
    /// `abortOnFail` with this grace period; `None` never aborts.
    pub abort_grace: Option<Duration>,
}

/// Why a summary cannot be built or fed.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("thresholds[{index}]: {source}")]
    Threshold { index: usize, source: ExpressionError },
    #[error("second {second} was folded after second {last}: seconds must come in order, each once")]
    OutOfOrder { second: u64, last: u64 },
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// One second of intended start, as a progress line or chart shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SecondSummary {
    pub second: u64,
    pub counts: RequestCounts,
    /// Latency from the intended start.
    pub p50: Duration,
    pub p99: Duration,
    /// Requests sent in this second (dropped ones were not).
    pub achieved_rate: f64,
    /// What the plan asked for in this second (open model).
    pub target_rate: Option<f64>,
}

/// One level held, over its settled seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSummary {
    pub step: Step,
    /// The seconds judged: the settled part `[settled, end)` in whole seconds.
    pub window: Range<u64>,
    /// What was recorded in `window`.
    pub bucket: Bucket,
    /// Every second of `window` has been folded (or the run finished past it).
    pub complete: bool,
    /// The end of the seconds of `window` folded so far: a step cut short (a run stopped in
    /// it) has its rates per second of what ran.
    pub through: u64,
    /// What the plan asked for over `window` (open model).
    pub target_rate: Option<f64>,
    /// Capacity: how each threshold came out on this step, once it completed.
    pub judgement: Option<Vec<ExpectationResult>>,
}

impl StepSummary {
    /// The figures of the step's window, or of its seconds folded so far while incomplete.
    pub fn figures(&self) -> WindowFigures {
        let end = if self.complete { self.window.end } else { self.through.clamp(self.window.start, self.window.end) };
        self.bucket.figures((end - self.window.start) as f64, self.target_rate)
    }

    /// Capacity: whether every threshold held on this step, once judged.
    pub fn held(&self) -> Option<bool> {
        self.judgement.as_ref().map(|results| results.iter().all(|r| r.passed))
    }
}

/// A decision to stop the run before its plan ends.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// Capacity: the step at `level` broke a threshold, so the levels above it need not run.
    CapacityBroke { step: usize, level: u32 },
    /// `abortOnFail`: `expression` has failed for good (or long enough), decided when second
    /// `second` was folded.
    Abort { second: u64, expression: String, reason: String },
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::CapacityBroke { level, .. } => write!(f, "capacity: a threshold broke at level {level}"),
            Stop::Abort { second, reason, .. } => write!(f, "aborted at {second}s: {reason}"),
        }
    }
}

/// The end of a run: its figures, threshold results and verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalSummary {
    /// How long the run sent load: the plan's length, or less when it stopped early.
    pub length: Duration,
    /// The figures of the whole run, with Little's law, service time and scheduler lag.
    pub window: WindowFigures,
    /// How each threshold came out (capacity: on the step at L, or on the step that broke).
    pub thresholds: Vec<ExpectationResult>,
    /// Capacity: the level of the step `thresholds` were judged on.
    pub thresholds_at: Option<u32>,
    pub verdict: Verdict,
    pub capacity: Option<CapacityResult>,
    pub stop: Option<Stop>,
    /// Why the verdict is what it is, when the thresholds alone do not say.
    pub note: Option<String>,
}

/// Folds a run's sealed seconds; see the module documentation.
#[derive(Clone, Debug)]
pub struct RunSummary {
    plan: Plan,
    model: LoadModel,
    thresholds: Vec<(String, Expression)>,
    capacity: Option<u32>,
    abort_grace: Option<Duration>,
    seconds: Vec<SecondSummary>,
    total: Bucket,
    steps: Vec<StepSummary>,
    /// Every second before it has been folded.
    next: u64,
    /// Per threshold: folded seconds in a row it failed on the figures so far (closed model).
    failing: Vec<u32>,
    broke_at: Option<u32>,
    stop: Option<Stop>,
}

impl RunSummary {
    pub fn new(spec: SummarySpec) -> Result<RunSummary, SummaryError> {
        let thresholds = spec
            .thresholds
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.parse::<Expression>()
                    .map(|e| (text.clone(), e))
                    .map_err(|source| SummaryError::Threshold { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut steps = Vec::new();
        for step in spec.plan.steps() {
            let window = step_window(&step);
            let target_rate = target_rate(&spec.plan, spec.model, window.start as f64, window.end as f64);
            let through = window.start;
            steps.push(StepSummary {
                step,
                window,
                bucket: Bucket::new()?,
                complete: false,
                through,
                target_rate,
                judgement: None,
            });
        }
        Ok(RunSummary {
            failing: vec![0; thresholds.len()],
            thresholds,
            capacity: spec.capacity,
            abort_grace: spec.abort_grace,
            seconds: Vec::new(),
            total: Bucket::new()?,
            steps,
            next: 0,
            broke_at: None,
            stop: None,
            plan: spec.plan,
            model: spec.model,
        })
    }

    /// Folds one sealed second (of intended start). Returns a decision to stop the run the
    /// first time one is taken; later calls return `None` and keep folding what still comes.
    pub fn fold(&mut self, second: u64, bucket: &Bucket) -> Result<Option<Stop>, SummaryError> {
        if second < self.next {
            return Err(SummaryError::OutOfOrder { second, last: self.next - 1 });
        }
        self.total.add(bucket)?;
        for step in self.steps.iter_mut().filter(|s| s.window.contains(&second)) {
            step.bucket.add(bucket)?;
            step.through = second + 1;
        }
        let target_rate = target_rate(&self.plan, self.model, second as f64, second as f64 + 1.0);
        self.seconds.push(SecondSummary {
            second,
            counts: bucket.counts.clone(),
            p50: quantile(&bucket.latency, 0.50),
            p99: quantile(&bucket.latency, 0.99),
            achieved_rate: bucket.counts.total as f64,
            target_rate,
        });
        self.next = second + 1;
        let decided = self.stop.is_some();
        self.complete_steps(self.next);
        if self.stop.is_none() {
            self.check_abort(second);
        }
        Ok(if decided { None } else { self.stop.clone() })
    }

    /// The seconds folded so far, in order.
    pub fn seconds(&self) -> &[SecondSummary] {
        &self.seconds
    }

    /// Everything folded so far.
    pub fn total(&self) -> &Bucket {
        &self.total
    }

    /// One summary per step of the plan, in order.
    pub fn steps(&self) -> &[StepSummary] {
        &self.steps
    }

    /// The plan the summary follows.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The load model: the open model has target rates, the closed one VUs.
    pub fn model(&self) -> LoadModel {
        self.model
    }

    /// The step the plan is in at `t` (ramp included), for a progress line.
    pub fn step_at(&self, t: Duration) -> Option<usize> {
        self.steps.iter().position(|s| s.step.start <= t && t < s.step.end)
    }

    /// The stop decided so far, if any.
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// Capacity: the knee and the first level that broke, as judged so far.
    pub fn capacity(&self) -> Option<CapacityResult> {
        let judged: Vec<(u32, bool)> =
            self.steps.iter().filter_map(|s| s.held().map(|held| (s.step.level, held))).collect();
        self.capacity.map(|_| capacity_of(&judged))
    }

    /// The figures of the seconds folded so far, judged as if the run had been that long.
    pub fn figures_so_far(&self) -> WindowFigures {
        let length = self.next as f64;
        self.total.figures(length, target_rate(&self.plan, self.model, 0.0, length))
    }

    /// Finishes the run: `ran` is how long it sent load (the plan's length when it ran to the
    /// end, less when it was stopped). Call it after the last sealed second has been folded.
    pub fn finish(&mut self, ran: Duration) -> FinalSummary {
        let length = ran.min(self.plan.total_duration());
        // Steps the run planned to their end are complete even if their last seconds were empty.
        let through = length.as_millis().div_ceil(1000);
        self.complete_steps(u64::try_from(through).unwrap_or(u64::MAX).max(self.next));
        let secs = length.as_secs_f64();
        let window = self.total.figures(secs, target_rate(&self.plan, self.model, 0.0, secs));
        let (thresholds, thresholds_at, mut verdict, note) = match self.capacity {
            Some(nominal) => self.capacity_verdict(nominal),
            None => {
                let results: Vec<ExpectationResult> =
                    self.thresholds.iter().map(|(text, e)| evaluate(text, e, &window.figures, None)).collect();
                let (verdict, why) =
                    crate::load::verdict::judged(&results, self.total.counts.total, self.total.counts.ok);
                (results, None, verdict, why)
            }
        };
        let mut note = note;
        if self.capacity.is_some()
            && verdict != Verdict::Fail
            && let Some(why) = crate::load::verdict::no_success(self.total.counts.total, self.total.counts.ok)
        {
            (verdict, note) = (Verdict::Inconclusive, Some(why));
        }
        if matches!(self.stop, Some(Stop::Abort { .. })) {
            verdict = Verdict::Aborted;
        }
        FinalSummary {
            length,
            window,
            thresholds,
            thresholds_at,
            verdict,
            capacity: self.capacity(),
            stop: self.stop.clone(),
            note,
        }
    }

    /// Marks the steps whose window ends at or before `through` complete and, in a capacity
    /// search, judges them in order until one breaks.
    fn complete_steps(&mut self, through: u64) {
        for index in 0..self.steps.len() {
            if self.steps[index].complete || self.steps[index].window.end > through {
                continue;
            }
            self.steps[index].complete = true;
            if self.capacity.is_none() || self.broke_at.is_some() {
                continue;
            }
            let figures = self.steps[index].figures().figures;
            let results: Vec<ExpectationResult> =
                self.thresholds.iter().map(|(text, e)| evaluate(text, e, &figures, None)).collect();
            let step = &mut self.steps[index];
            let level = step.step.level;
            step.judgement = Some(results);
            if step.held() != Some(true) {
                self.broke_at = Some(level);
                if self.stop.is_none() {
                    self.stop = Some(Stop::CapacityBroke { step: index, level });
                }
            }
        }
    }

    /// Capacity: the results, the level they were judged at, the verdict and why.
    fn capacity_verdict(&self, nominal: u32) -> (Vec<ExpectationResult>, Option<u32>, Verdict, Option<String>) {
        let judged: Vec<&StepSummary> = self.steps.iter().filter(|s| s.judgement.is_some()).collect();
        let levels: Vec<(u32, bool)> = judged.iter().map(|s| (s.step.level, s.held() == Some(true))).collect();
        let (verdict, at, note) = capacity_verdict(&levels, nominal);
        let step = at.map(|i| judged[i]);
        (step.and_then(|s| s.judgement.clone()).unwrap_or_default(), step.map(|s| s.step.level), verdict, Some(note))
    }

    fn check_abort(&mut self, second: u64) {
        let Some(grace) = self.abort_grace else { return };
        if Duration::from_secs(self.next) <= grace || self.thresholds.is_empty() || self.capacity.is_some() {
            return;
        }
        if let Some((expression, reason)) =
            certain_failure(&self.thresholds, &self.total, self.next, &self.plan, self.model)
        {
            self.stop = Some(Stop::Abort { second, expression, reason });
            return;
        }
        let so_far = self.figures_so_far().figures;
        for (index, (text, expression)) in self.thresholds.iter().enumerate() {
            let now = evaluate(text, expression, &so_far, None);
            if self.model == LoadModel::Closed && !per_second_of_run(expression) {
                let failing = &mut self.failing[index];
                *failing = if !now.passed && now.message.is_none() { *failing + 1 } else { 0 };
                if *failing >= SUSTAINED_SECONDS {
                    let reason = format!(
                        "{text:?} failed on the figures so far at each of the last {SUSTAINED_SECONDS} seconds (now {}, limit {})",
                        now.observed.as_deref().unwrap_or("unknown"),
                        now.threshold.as_deref().unwrap_or("unknown")
                    );
                    self.stop = Some(Stop::Abort { second, expression: text.clone(), reason });
                    return;
                }
            }
        }
    }
}

/// The first threshold that can no longer hold whatever the rest of an open-model run brings:
/// it fails both on the best and on the worst final figures, given the whole run's bucket so
/// far (seconds `[0, next)`) and the most requests still to come. For the closed model, whose
/// remaining requests have no bound, only counts that can only grow (`dropped`) and `max` can
/// be certain. Returns the expression and why, for `abortOnFail`: the CLI's summary and the
/// operator's merged runner reports both ask this.
pub fn certain_failure(
    thresholds: &[(String, Expression)],
    total: &Bucket,
    next: u64,
    plan: &Plan,
    model: LoadModel,
) -> Option<(String, String)> {
    let remaining = remaining_requests(plan, model, next);
    let (best, worst) = final_bounds(plan, model, total, remaining.unwrap_or(UNBOUNDED_REQUESTS));
    let length = (next as f64).min(plan.total_duration().as_secs_f64());
    let so_far = total.figures(length, target_rate(plan, model, 0.0, length)).figures;
    for (text, expression) in thresholds {
        let now = evaluate(text, expression, &so_far, None);
        let at_best = evaluate(text, expression, &best, None);
        let at_worst = evaluate(text, expression, &worst, None);
        let judged = |r: &ExpectationResult| r.message.is_none();
        if judged(&at_best) && judged(&at_worst) && !at_best.passed && !at_worst.passed {
            let observed = now.observed.as_deref().unwrap_or("unknown");
            let limit = now.threshold.as_deref().unwrap_or("its limit");
            let rest = match remaining {
                Some(n) => format!(
                    " (the at most {n} requests still to come leave it between {} and {})",
                    at_best.observed.as_deref().unwrap_or("?"),
                    at_worst.observed.as_deref().unwrap_or("?")
                ),
                None => String::new(),
            };
            let reason = format!(
                "{text:?} can no longer hold: it is {observed} so far, and the rest of the run cannot bring it within {limit}{rest}"
            );
            return Some((text.clone(), reason));
        }
    }
    None
}

/// Open model: the most requests still to be scheduled after the folded seconds. The
/// schedule never strays from the plan's area by more than half a request, so one more
/// than the area covers it. `None` for the closed model, which has no such bound.
fn remaining_requests(plan: &Plan, model: LoadModel, next: u64) -> Option<u64> {
    if model == LoadModel::Closed {
        return None;
    }
    let end = plan.total_duration().as_secs_f64();
    let area = area_between(plan, (next as f64).min(end), end);
    Some(area.ceil() as u64 + 1)
}

/// The best and the worst final figures of the whole planned run, each field on its own,
/// given the seconds so far and at most `remaining` more requests.
fn final_bounds(plan: &Plan, model: LoadModel, total: &Bucket, remaining: u64) -> (Figures, Figures) {
    let length = plan.total_duration().as_secs_f64();
    let per_second = |n: u64| if length > 0.0 { n as f64 / length } else { 0.0 };
    let counts = &total.counts;
    let (sent, dropped, ok) = (counts.total, counts.dropped, counts.ok);
    let errors = sent.saturating_sub(ok);
    let answered = answered(counts);
    let all = sent.saturating_add(remaining);
    let share = |n: u64| if all == 0 { 0.0 } else { n as f64 / all as f64 };
    let latency = &total.latency;
    let sum_micros = mean_micros(latency) * latency.len() as f64;
    let mean_of = |sum: f64| {
        if all == 0 { Duration::ZERO } else { Duration::from_secs_f64(sum / all as f64 / 1e6) }
    };
    let target = target_rate(plan, model, 0.0, length);
    let with = |value: u64| {
        let mut h = latency.clone();
        h.saturating_record_n(value, remaining);
        h
    };
    let (fast, slow) = (with(LOWEST_MICROS), with(HIGHEST_MICROS));
    let best = Figures {
        max: max(latency),
        mean: mean_of(sum_micros),
        error_rate: share(errors),
        achieved_rate: per_second(sent),
        target_rate: target,
        rps: per_second(answered),
        dropped,
        total: all,
        ..percentiles(&fast)
    };
    let worst = Figures {
        max: if remaining > 0 { Duration::from_micros(HIGHEST_MICROS) } else { max(latency) },
        mean: mean_of(sum_micros + remaining as f64 * HIGHEST_MICROS as f64),
        error_rate: share(errors.saturating_add(remaining)),
        achieved_rate: per_second(all),
        target_rate: target,
        rps: per_second(answered.saturating_add(remaining)),
        dropped: dropped.saturating_add(remaining),
        total: sent,
        ..percentiles(&slow)
    };
    (best, worst)
}

/// What a capacity search found, from the levels judged in order (`(level, held every
/// threshold)`): the knee is the highest level that held before the first that broke. The one
/// rule for `chaoslab load` and for a LoadTest in the cluster.
pub fn capacity_of(judged: &[(u32, bool)]) -> CapacityResult {
    let broke = judged.iter().position(|&(_, held)| !held);
    let knee = judged[..broke.unwrap_or(judged.len())].iter().map(|&(level, _)| level).max();
    CapacityResult { knee, broke_at: broke.map(|i| judged[i].0) }
}

/// The capacity preset's verdict, from the levels judged in order (`(level, held every
/// threshold)`) and the nominal level L: Fail when a level at or below L broke, Pass when L held,
/// Inconclusive when the run ended before L was judged. Also the index of the level whose
/// threshold results explain it, and why.
pub fn capacity_verdict(judged: &[(u32, bool)], nominal: u32) -> (Verdict, Option<usize>, String) {
    let broke = judged.iter().position(|&(_, held)| !held);
    let at_nominal = judged.iter().position(|&(level, _)| level == nominal);
    match (broke, at_nominal) {
        (Some(b), _) if judged[b].0 <= nominal => (
            Verdict::Fail,
            Some(b),
            format!("a threshold broke at level {}, at or below the nominal level {nominal}", judged[b].0),
        ),
        (broke, Some(n)) => (
            Verdict::Pass,
            Some(n),
            match broke {
                Some(b) => format!("every threshold held at the nominal level {nominal}; one broke at {}", judged[b].0),
                None => format!("every threshold held at every level judged, the nominal level {nominal} included"),
            },
        ),
        (_, None) => (
            Verdict::Inconclusive,
            judged.len().checked_sub(1),
            format!("the run ended before the nominal level {nominal} was held to its end, so it was not judged"),
        ),
    }
}

/// The integral of the plan's level over `[from, to)` seconds: requests the open model
/// schedules in that window.
pub fn area_between(plan: &Plan, from: f64, to: f64) -> f64 {
    let mut level = f64::from(plan.start);
    let mut begin = 0.0;
    let mut area = 0.0;
    for stage in &plan.stages {
        let length = stage.duration.as_std().as_secs_f64();
        let end = begin + length;
        let target = f64::from(stage.target);
        let (a, b) = (from.max(begin), to.min(end));
        if a < b && length > 0.0 {
            let at = |t: f64| level + (target - level) * (t - begin) / length;
            area += (at(a) + at(b)) / 2.0 * (b - a);
        }
        level = target;
        begin = end;
    }
    area
}

/// The rate the plan asks for over `[from, to)` seconds, on average; `None` for the closed
/// model, which schedules no rate.
fn target_rate(plan: &Plan, model: LoadModel, from: f64, to: f64) -> Option<f64> {
    match model {
        LoadModel::Closed => None,
        LoadModel::Open if to > from => Some(area_between(plan, from, to) / (to - from)),
        LoadModel::Open => Some(0.0),
    }
}

/// The whole seconds of a step's settled part; when it holds no whole second, the seconds it
/// touches. What a level is judged over, here and in the runners' reports.
pub fn step_window(step: &Step) -> Range<u64> {
    let first = u64::try_from(step.settled.as_millis().div_ceil(1000)).unwrap_or(u64::MAX);
    let end = step.end.as_secs();
    if first < end { first..end } else { step.settled.as_secs()..first.max(step.settled.as_secs() + 1) }
}

/// Thresholds in requests per second judge the rate of the whole run, which a ramp holds down
/// at first; the sustained rule leaves them out.
fn per_second_of_run(expression: &Expression) -> bool {
    match expression.metric {
        Metric::Rps => true,
        Metric::AchievedRate => !matches!(expression.value, Value::Ratio(_)),
        _ => false,
    }
}

fn answered(counts: &RequestCounts) -> u64 {
    counts.ok + counts.status4xx + counts.status5xx + counts.unexpected_status + counts.body
}

fn mean_micros(h: &Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { h.mean() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{GoDuration, load::Stage},
        load::{
            measure::{LoadRecorder, Outcome},
            stages::{constant, expand_preset},
        },
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn spec(plan: Plan, thresholds: &[&str]) -> SummarySpec {
        SummarySpec {
            plan,
            model: LoadModel::Open,
            thresholds: thresholds.iter().map(|t| t.to_string()).collect(),
            capacity: None,
            abort_grace: None,
        }
    }

    /// One second of `n` requests evenly spread, each `latency` long, `outcome` for the first
    /// `bad` of them and Ok for the rest.
    fn second(s: u64, n: u64, latency: Duration, bad: u64, outcome: Outcome) -> Bucket {
        let mut recorder = LoadRecorder::new().expect("recorder");
        for i in 0..n {
            let intended = secs(s) + Duration::from_nanos(i * 1_000_000_000 / n.max(1));
            let outcome = if i < bad { outcome } else { Outcome::Ok };
            recorder.record(intended, intended, intended + latency, outcome);
        }
        recorder.bucket(s..s + 1).expect("bucket")
    }

    fn ok_second(s: u64, n: u64, latency: Duration) -> Bucket {
        second(s, n, latency, 0, Outcome::Ok)
    }

    #[test]
    fn folding_keeps_per_second_lines_and_the_total() {
        let mut summary = RunSummary::new(spec(constant(100, secs(3)).expect("plan"), &[])).expect("summary");
        summary.fold(0, &ok_second(0, 100, ms(5))).expect("fold");
        summary.fold(1, &second(1, 90, ms(20), 9, Outcome::Status5xx)).expect("fold");
        assert!(matches!(
            summary.fold(1, &ok_second(1, 1, ms(1))),
            Err(SummaryError::OutOfOrder { second: 1, last: 1 })
        ));
        // An empty second may be skipped.
        summary.fold(3, &ok_second(3, 10, ms(1))).expect("fold");
        let lines = summary.seconds();
        assert_eq!(lines.iter().map(|l| l.second).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(lines[1].counts.status5xx, 9);
        assert_eq!(lines[1].achieved_rate, 90.0);
        assert_eq!(lines[1].target_rate, Some(100.0));
        assert_eq!(lines[3 - 1].target_rate, Some(0.0), "past the plan's end nothing is asked for");
        assert!((lines[1].p99.as_secs_f64() - 0.020).abs() < 0.0001);
        assert_eq!(summary.total().counts.total, 200);
        assert_eq!(summary.total().counts.ok, 191);
    }

    #[test]
    fn final_figures_match_the_recorders_window_on_the_same_data() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        let mut summary =
            RunSummary::new(spec(constant(50, secs(4)).expect("plan"), &["p99 < 100ms"])).expect("summary");
        for s in 0..4u64 {
            for i in 0..50u64 {
                let intended = secs(s) + ms(i * 20);
                let (send, outcome) = match i % 10 {
                    0 => (intended + ms(3), Outcome::Timeout),
                    1 => (intended, Outcome::Dropped),
                    _ => (intended + ms(1), Outcome::Ok),
                };
                recorder.record(intended, send, send + ms(10 + i + s), outcome);
            }
        }
        for (s, bucket) in recorder.seconds() {
            summary.fold(s, bucket).expect("fold");
        }
        let end = summary.finish(secs(4));
        let expected = recorder.window(0..4, Some(50.0)).expect("window");
        assert_eq!(end.window, expected);
        assert_eq!(recorder.total().figures(4.0, Some(50.0)), expected);
        assert_eq!(end.length, secs(4));
        assert_eq!(end.verdict, Verdict::Pass);
        assert_eq!(end.thresholds.len(), 1);
        // A run stopped at 2.5s: its rates are per second of what ran.
        let mut short = RunSummary::new(spec(constant(50, secs(4)).expect("plan"), &[])).expect("summary");
        for (s, bucket) in recorder.seconds().take(3) {
            short.fold(s, bucket).expect("fold");
        }
        let end = short.finish(ms(2_500));
        assert_eq!(end.length, ms(2_500));
        assert_eq!(end.window.figures.target_rate, Some(50.0));
        assert!((end.window.figures.achieved_rate - 3.0 * 45.0 / 2.5).abs() < 1e-9);
    }

    #[test]
    fn target_rates_integrate_the_plan() {
        let plan = Plan { start: 0, stages: vec![Stage { duration: GoDuration::from_secs(10), target: 100 }] };
        assert!((area_between(&plan, 0.0, 10.0) - 500.0).abs() < 1e-9);
        assert!((area_between(&plan, 2.0, 3.0) - 25.0).abs() < 1e-9);
        assert_eq!(area_between(&plan, 10.0, 20.0), 0.0);
        assert_eq!(target_rate(&plan, LoadModel::Closed, 0.0, 10.0), None);
        let load = expand_preset(crate::api::load::Preset::Load, 100, Some(secs(100))).expect("plan");
        assert!((area_between(&load, 0.0, 100.0) - load.area()).abs() < 1e-6);
    }

    #[test]
    fn steps_are_judged_over_their_settled_seconds_only() {
        // Capacity around L = 10 with holds of 10s: level 1 settles at 1s, ends at 11s; level 2
        // ramps over [11, 12) and holds [12, 22).
        let plan = expand_preset(crate::api::load::Preset::Capacity, 10, Some(secs(30))).expect("plan");
        let mut summary = RunSummary::new(spec(plan, &[])).expect("summary");
        assert_eq!(summary.steps()[0].window, 1..11);
        assert_eq!(summary.steps()[1].window, 12..22);
        // The ramp second 0 and 11 carry a slow request each; the settled seconds do not.
        for s in 0..23u64 {
            let latency = if s == 0 || s == 11 { ms(900) } else { ms(2) };
            let level = if s < 11 { 1 } else { 2 };
            summary.fold(s, &ok_second(s, level, latency)).expect("fold");
        }
        let first = &summary.steps()[0];
        assert!(first.complete);
        assert_eq!(first.bucket.counts.total, 10);
        assert_eq!(first.figures().figures.target_rate, Some(1.0));
        assert!(first.figures().figures.max < ms(3), "the ramp second is left out");
        assert!(summary.steps()[1].complete);
        assert_eq!(summary.steps()[1].bucket.counts.total, 20);
        let third = &summary.steps()[2];
        assert!(!third.complete);
        assert_eq!((third.window.clone(), third.through), (23..33, 23), "second 22 is its ramp");
        summary.fold(23, &ok_second(23, 3, ms(2))).expect("fold");
        summary.fold(24, &ok_second(24, 3, ms(2))).expect("fold");
        let third = &summary.steps()[2];
        assert_eq!(third.figures().figures.achieved_rate, 3.0, "a step cut short: per second of what ran");
        assert_eq!(summary.steps()[1].judgement, None, "only a capacity search judges steps");
        assert_eq!(summary.step_at(ms(11_500)), Some(1));
        // A step too short for one whole second keeps the seconds it touches.
        let short = Step { level: 5, start: ms(0), settled: ms(1_200), end: ms(1_900) };
        assert_eq!(step_window(&short), 1..2);
        assert_eq!(step_window(&Step { level: 5, start: ms(0), settled: ms(1_000), end: ms(2_000) }), 1..2);
    }

    /// A capacity search around L = 10 (levels 1 … 20, holds of 10s) against a server that
    /// answers 503 above `limit` requests per second.
    fn capacity_run(limit: u64, nominal_only: bool) -> (RunSummary, Option<Stop>, u64) {
        let plan = expand_preset(crate::api::load::Preset::Capacity, 10, Some(secs(10))).expect("plan");
        let steps = plan.steps();
        let mut s = spec(plan.clone(), &["errorRate < 1%", "p99 < 100ms"]);
        s.capacity = Some(10);
        let mut summary = RunSummary::new(s).expect("summary");
        let mut stop = None;
        let mut last = 0;
        for second in 0..plan.total_duration().as_secs() {
            let level =
                steps.iter().find(|st| st.start.as_secs() <= second && second < st.end.as_secs()).expect("step").level;
            let n = u64::from(level);
            let bad = n.saturating_sub(limit);
            let decided = summary.fold(second, &second_with(second, n, bad)).expect("fold");
            last = second;
            if decided.is_some() {
                stop = decided;
                if !nominal_only {
                    break;
                }
            }
        }
        (summary, stop, last)
    }

    fn second_with(s: u64, n: u64, bad: u64) -> Bucket {
        second(s, n, ms(3), bad, Outcome::Status5xx)
    }

    #[test]
    fn capacity_reports_the_knee_and_the_first_level_that_broke() {
        let (mut summary, stop, last) = capacity_run(13, false);
        assert_eq!(stop, Some(Stop::CapacityBroke { step: 13, level: 14 }));
        assert_eq!(summary.capacity(), Some(CapacityResult { knee: Some(13), broke_at: Some(14) }));
        // Level 14 holds [144, 154): decided when its last second was folded.
        assert_eq!(summary.steps()[13].window, 144..154);
        assert_eq!(last, 153);
        assert_eq!(summary.steps()[12].held(), Some(true));
        assert_eq!(summary.steps()[13].held(), Some(false));
        let end = summary.finish(secs(165));
        assert_eq!(end.verdict, Verdict::Pass, "L = 10 held: {:?}", end.note);
        assert_eq!(end.thresholds_at, Some(10));
        assert!(end.thresholds.iter().all(|r| r.passed));
        assert_eq!(end.capacity, Some(CapacityResult { knee: Some(13), broke_at: Some(14) }));
        assert!(end.note.as_deref().is_some_and(|n| n.contains("one broke at 14")));
    }

    #[test]
    fn capacity_fails_when_the_nominal_level_breaks() {
        let (mut summary, stop, _) = capacity_run(7, false);
        assert_eq!(stop, Some(Stop::CapacityBroke { step: 7, level: 8 }));
        let end = summary.finish(secs(96));
        assert_eq!(end.verdict, Verdict::Fail);
        assert_eq!(end.thresholds_at, Some(8));
        assert_eq!(end.capacity, Some(CapacityResult { knee: Some(7), broke_at: Some(8) }));
        assert!(end.thresholds.iter().any(|r| r.expression == "errorRate < 1%" && !r.passed));
        // Folding on after the decision keeps the first break.
        let (mut on, first, _) = capacity_run(7, true);
        assert_eq!(first, Some(Stop::CapacityBroke { step: 7, level: 8 }));
        assert_eq!(on.capacity(), Some(CapacityResult { knee: Some(7), broke_at: Some(8) }));
        assert_eq!(on.finish(secs(999)).verdict, Verdict::Fail);
    }

    #[test]
    fn capacity_that_never_breaks_has_the_top_level_as_knee() {
        let (mut summary, stop, _) = capacity_run(1000, true);
        assert_eq!(stop, None);
        let end = summary.finish(secs(220));
        assert_eq!(end.capacity, Some(CapacityResult { knee: Some(20), broke_at: None }));
        assert_eq!(end.verdict, Verdict::Pass);
    }

    #[test]
    fn capacity_stopped_before_the_nominal_level_is_inconclusive() {
        let plan = expand_preset(crate::api::load::Preset::Capacity, 10, Some(secs(10))).expect("plan");
        let mut s = spec(plan, &["errorRate < 1%"]);
        s.capacity = Some(10);
        let mut summary = RunSummary::new(s).expect("summary");
        for second in 0..30 {
            summary.fold(second, &ok_second(second, 2, ms(1))).expect("fold");
        }
        let end = summary.finish(secs(30));
        assert_eq!(end.verdict, Verdict::Inconclusive);
        assert_eq!(end.capacity, Some(CapacityResult { knee: Some(2), broke_at: None }));
        assert_eq!(end.thresholds.len(), 1, "the last judged step's results");
        assert_eq!(end.thresholds_at, Some(2));
    }

    fn abort_spec(plan: Plan, model: LoadModel, thresholds: &[&str]) -> SummarySpec {
        let mut s = spec(plan, thresholds);
        s.model = model;
        s.abort_grace = Some(secs(5));
        s
    }

    /// Folds `seconds` seconds of `make(second)`; returns the first stop and when it came.
    fn run_until_stop(summary: &mut RunSummary, seconds: u64, make: impl Fn(u64) -> Bucket) -> Option<(u64, Stop)> {
        for s in 0..seconds {
            if let Some(stop) = summary.fold(s, &make(s)).expect("fold") {
                return Some((s, stop));
            }
        }
        None
    }

    #[test]
    fn an_error_rate_that_cannot_recover_aborts_after_the_grace() {
        // 100 req/s for 100s, every request fails: errorRate < 1% is lost once the errors exceed
        // 1% of the 10 000 the run sends, at the first second after the 5s grace.
        let plan = constant(100, secs(100)).expect("plan");
        let mut summary =
            RunSummary::new(abort_spec(plan.clone(), LoadModel::Open, &["errorRate < 1%"])).expect("summary");
        let (at, stop) =
            run_until_stop(&mut summary, 100, |s| second(s, 100, ms(2), 100, Outcome::Status5xx)).expect("abort");
        assert_eq!(at, 5, "the first second after the grace");
        let Stop::Abort { expression, reason, .. } = &stop else { panic!("{stop:?}") };
        assert_eq!(expression, "errorRate < 1%");
        assert!(reason.contains("can no longer hold: it is 100% so far"), "{reason}");
        assert!(reason.contains("still to come"), "{reason}");
        assert_eq!(summary.finish(secs(6)).verdict, Verdict::Aborted);

        // 5% errors: certain once 5% of what was sent exceeds 1% of the whole run (≈ 20s).
        let mut summary = RunSummary::new(abort_spec(plan, LoadModel::Open, &["errorRate < 1%"])).expect("summary");
        let (at, _) =
            run_until_stop(&mut summary, 100, |s| second(s, 100, ms(2), 5, Outcome::Status5xx)).expect("abort");
        assert!((19..=22).contains(&at), "aborted at {at}");
    }

    #[test]
    fn a_slow_start_that_the_rest_of_the_run_can_outweigh_does_not_abort() {
        let plan = constant(100, secs(100)).expect("plan");
        let mut summary = RunSummary::new(abort_spec(plan, LoadModel::Open, &["p99 < 100ms"])).expect("summary");
        // Seconds 5..10 have 10 slow requests each: 50 of 10 000 overall (0.5%), while at 10s
        // the figures so far show 50 of 1 000 (5%), p99 500ms: failing now, not certain.
        let stop = run_until_stop(&mut summary, 100, |s| {
            let slow = if (5..10).contains(&s) { 10 } else { 0 };
            let mut b = second(s, 100 - slow, ms(2), 0, Outcome::Ok);
            b.add(&second(s, slow, ms(500), 0, Outcome::Ok)).expect("add");
            b
        });
        assert_eq!(stop, None);
        let end = summary.finish(secs(100));
        assert_eq!(end.verdict, Verdict::Pass, "{:?}", end.thresholds);
    }

    #[test]
    fn slow_requests_past_the_share_a_percentile_allows_abort() {
        // Every request 300ms: more than 1% of all 10 000 are slow once 101 are.
        let plan = constant(100, secs(100)).expect("plan");
        let mut summary = RunSummary::new(abort_spec(plan, LoadModel::Open, &["p99 < 250ms"])).expect("summary");
        let (at, _) = run_until_stop(&mut summary, 100, |s| ok_second(s, 100, ms(300))).expect("abort");
        assert_eq!(at, 5);
        // Nothing aborts within the grace, however bad.
        let plan = constant(100, secs(100)).expect("plan");
        let mut s = abort_spec(plan, LoadModel::Open, &["p99 < 250ms"]);
        s.abort_grace = Some(secs(30));
        let mut summary = RunSummary::new(s).expect("summary");
        let (at, _) = run_until_stop(&mut summary, 100, |s| ok_second(s, 100, ms(300))).expect("abort");
        assert_eq!(at, 30);
    }

    #[test]
    fn counts_that_only_grow_abort_in_both_models() {
        for model in [LoadModel::Open, LoadModel::Closed] {
            let mut summary = RunSummary::new(abort_spec(
                constant(10, secs(60)).expect("plan"),
                model,
                &["dropped <= 3", "max < 1s"],
            ))
            .expect("summary");
            let (at, stop) = run_until_stop(&mut summary, 60, |s| {
                let dropped = if s == 7 { 4 } else { 0 };
                second(s, 10, ms(5), dropped, Outcome::Dropped)
            })
            .expect("abort");
            assert_eq!(at, 7, "{model:?}");
            assert!(matches!(&stop, Stop::Abort { expression, .. } if expression == "dropped <= 3"), "{stop:?}");

            let mut summary = RunSummary::new(abort_spec(constant(10, secs(60)).expect("plan"), model, &["max < 1s"]))
                .expect("summary");
            let (at, _) = run_until_stop(&mut summary, 60, |s| {
                if s == 2 { ok_second(s, 10, ms(1_500)) } else { ok_second(s, 10, ms(5)) }
            })
            .expect("abort");
            assert_eq!(at, 5, "{model:?}: the slow request at 2s counts once the grace is over");
        }
    }

    #[test]
    fn the_closed_model_aborts_on_a_sustained_failure_only() {
        let plan = constant(10, secs(60)).expect("plan");
        let mut summary =
            RunSummary::new(abort_spec(plan.clone(), LoadModel::Closed, &["errorRate < 1%", "rps > 1000"]))
                .expect("summary");
        // Errors from 10s on: the figures so far fail from the 10th second, the 5th in a row at 14.
        let (at, stop) = run_until_stop(&mut summary, 60, |s| {
            let bad = if s >= 10 { 5 } else { 0 };
            second(s, 10, ms(5), bad, Outcome::Status5xx)
        })
        .expect("abort");
        assert_eq!(at, 14);
        let Stop::Abort { expression, reason, .. } = &stop else { panic!("{stop:?}") };
        assert_eq!(expression, "errorRate < 1%", "rps thresholds never abort on the sustained rule");
        assert!(reason.contains("at each of the last 5 seconds"), "{reason}");

        // A failure that recovers resets the count: 8 slow requests in second 5 fail p99 on the
        // figures so far at 5 and 6 (8 of 600, 8 of 700), and no more from 7 (8 of 800).
        let mut summary = RunSummary::new(abort_spec(plan, LoadModel::Closed, &["p99 < 100ms"])).expect("summary");
        let stop = run_until_stop(&mut summary, 60, |s| {
            let slow = if s == 5 { 8 } else { 0 };
            let mut b = ok_second(s, 100 - slow, ms(5));
            b.add(&ok_second(s, slow, ms(500))).expect("add");
            b
        });
        assert_eq!(stop, None);
        assert_eq!(summary.failing, vec![0]);
    }

    #[test]
    fn a_capacity_search_stops_at_its_broken_step_not_by_abort_on_fail() {
        let plan = expand_preset(crate::api::load::Preset::Capacity, 10, Some(secs(10))).expect("plan");
        let mut s = abort_spec(plan, LoadModel::Open, &["errorRate < 1%"]);
        s.capacity = Some(10);
        let mut summary = RunSummary::new(s).expect("summary");
        // Every request fails: abortOnFail would stop the run at 5s, right after the grace, but
        // the search goes on to the end of the first step, which is what breaks.
        let (at, stop) =
            run_until_stop(&mut summary, 220, |s| second(s, 20, ms(2), 20, Outcome::Status5xx)).expect("stop");
        assert_eq!((at, stop), (10, Stop::CapacityBroke { step: 0, level: 1 }));
    }

    #[test]
    fn without_abort_on_fail_nothing_aborts() {
        let mut summary =
            RunSummary::new(spec(constant(100, secs(20)).expect("plan"), &["errorRate < 1%"])).expect("summary");
        let stop = run_until_stop(&mut summary, 20, |s| second(s, 100, ms(2), 100, Outcome::Status5xx));
        assert_eq!(stop, None);
        let end = summary.finish(secs(20));
        assert_eq!(end.verdict, Verdict::Fail);
        assert_eq!(end.thresholds[0].observed.as_deref(), Some("100%"));
    }

    #[test]
    fn thresholds_that_cannot_be_judged_are_inconclusive_and_bad_ones_refused() {
        let mut s = spec(constant(5, secs(10)).expect("plan"), &["achievedRate >= 99%"]);
        s.model = LoadModel::Closed;
        let mut summary = RunSummary::new(s).expect("summary");
        summary.fold(0, &ok_second(0, 5, ms(1))).expect("fold");
        let end = summary.finish(secs(10));
        assert_eq!(end.verdict, Verdict::Inconclusive);
        assert!(end.thresholds[0].message.as_deref().is_some_and(|m| m.contains("closed model")));
        let bad = RunSummary::new(spec(constant(5, secs(10)).expect("plan"), &["p99 <"])).map(|_| ()).unwrap_err();
        assert!(bad.to_string().starts_with("thresholds[0]: \"p99 <\": missing value"), "{bad}");
    }
}
