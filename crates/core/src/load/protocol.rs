//! The runner ↔ operator protocol of a LoadTest: the configuration a runner pod is given, the
//! report it writes back, how a runner folds its sealed seconds into that report, and how the
//! operator merges the reports of N runners.
//!
//! The report is one ConfigMap per runner, replaced every few seconds while the runner runs
//! (`docs/architecture.md` explains why a ConfigMap): it survives a runner restart (the runner
//! reads it back and carries on), the operator's restart (it is in the API server), and a
//! runner that crashed (what it had reported stays). Its size is bounded whatever the run's
//! length, far below the 1 MiB object limit:
//! - the time series has at most [`MAX_POINTS`] points (one per second up to an hour, one per
//!   `length / 3600` after), each a short array of counts and percentiles;
//! - histograms are kept only for the whole run and for each step of the plan (at most 100),
//!   which is what verdicts and the capacity search judge, so *those* merge exactly;
//! - the whole JSON is gzipped; histograms are V2-deflate inside it already.
//!
//! Per-point percentiles of N runners merge as the maximum of the runners' values, an upper
//! bound (exact with one runner); the run's and the steps' percentiles are exact merges.

use std::{io::Read, time::Duration};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use hdrhistogram::serialization::V2DeflateSerializer;
use serde::{Deserialize, Serialize};

use crate::{
    api::{
        figures::RequestCounts,
        load::{LoadProfile, Stage},
    },
    load::{
        Figures,
        measure::{Bucket, BucketReport, MeasureError, add_counts},
        stages::Plan,
        summary::step_window,
    },
};

/// The report format this module writes and reads.
pub const PROTOCOL_VERSION: u32 = 1;
/// The most points a report's time series holds.
pub const MAX_POINTS: u64 = 3600;
/// The key of the gzipped report in the ConfigMap's binaryData.
pub const REPORT_KEY: &str = "report.json.gz";
/// Label on report ConfigMaps and runner pods: the LoadTest's UID (names can exceed 63
/// characters, UIDs never do).
pub const RUN_LABEL: &str = "chaoslab.dev/load-test-uid";
/// Label on report ConfigMaps: the runner's index.
pub const RUNNER_LABEL: &str = "chaoslab.dev/runner";

/// What a runner pod is told, as JSON in its `CHAOSLAB_RUNNER` variable. Its index comes from
/// the Indexed Job (`JOB_COMPLETION_INDEX`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerConfig {
    pub load_test: String,
    pub namespace: String,
    pub uid: String,
    pub runners: u32,
    /// The target, resolved: a Service reference has become `http://name.namespace.svc:port/path`.
    pub base_url: String,
    pub profile: LoadProfile,
    /// The plan the operator expanded (and shows in status).
    pub plan_start: u32,
    pub stages: Vec<Stage>,
    /// How often the runner replaces its report while running.
    pub report_every_secs: u32,
}

impl RunnerConfig {
    pub fn plan(&self) -> Plan {
        Plan { start: self.plan_start, stages: self.stages.clone() }
    }
}

/// The report ConfigMap of runner `index` of a LoadTest: the name (cut to fit, with part of the
/// UID to stay unique) and its labels.
pub fn report_name(load_test: &str, uid: &str, index: u32) -> String {
    let short_uid: String = uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let prefix: String = load_test.chars().take(200).collect();
    format!("{}-{short_uid}-runner-{index}", prefix.trim_end_matches('-'))
}

/// How a runner stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunnerState {
    /// Sending load; the report grows.
    #[default]
    Running,
    /// The plan ran to its end.
    Done,
    /// Stopped before the end (SIGTERM: the operator aborted the run or the pod was deleted).
    Stopped,
    /// The runner could not run (bad target, engine error); `message` says why.
    Failed,
}

/// One point of the time series: the seconds `[second, second + seconds)` of intended start.
/// Serialized as an array to stay small:
/// `[second, seconds, [total, ok, connect, timeout, 4xx, 5xx, unexpected, body, dropped],
/// [p50µs, p90µs, p95µs, p99µs, p99.9µs, maxµs, meanµs]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point(pub u64, pub u32, pub [u64; 9], pub [u64; 7]);

/// Index of the mean in a point's latency array; the values before it are maxima when merged.
const MEAN: usize = 6;

impl Point {
    fn of(second: u64, seconds: u32, bucket: &Bucket) -> Point {
        let c = &bucket.counts;
        let l = &bucket.latency;
        let q = |q: f64| if l.is_empty() { 0 } else { l.value_at_quantile(q) };
        Point(
            second,
            seconds,
            [c.total, c.ok, c.connect, c.timeout, c.status4xx, c.status5xx, c.unexpected_status, c.body, c.dropped],
            [
                q(0.5),
                q(0.9),
                q(0.95),
                q(0.99),
                q(0.999),
                if l.is_empty() { 0 } else { l.max() },
                l.mean().round() as u64,
            ],
        )
    }

    /// The figures of this point, to judge abort rules second by second. `target_rate` is the
    /// plan's rate over the point (open model).
    pub fn figures(&self, target_rate: Option<f64>) -> Figures {
        let c = self.counts();
        let seconds = f64::from(self.1.max(1));
        let us = |i: usize| Duration::from_micros(self.3[i]);
        let answered = c.ok + c.status4xx + c.status5xx + c.unexpected_status + c.body;
        Figures {
            p50: us(0),
            p90: us(1),
            p95: us(2),
            p99: us(3),
            p999: us(4),
            max: us(5),
            mean: us(MEAN),
            error_rate: if c.total == 0 { 0.0 } else { c.total.saturating_sub(c.ok) as f64 / c.total as f64 },
            achieved_rate: c.total as f64 / seconds,
            target_rate,
            rps: answered as f64 / seconds,
            dropped: c.dropped,
            total: c.total,
        }
    }

    pub fn second(&self) -> u64 {
        self.0
    }

    pub fn seconds(&self) -> u32 {
        self.1
    }

    pub fn counts(&self) -> RequestCounts {
        let [total, ok, connect, timeout, status4xx, status5xx, unexpected_status, body, dropped] = self.2;
        RequestCounts { total, ok, connect, timeout, status4xx, status5xx, unexpected_status, body, dropped }
    }

    pub fn p50(&self) -> Duration {
        Duration::from_micros(self.3[0])
    }

    pub fn p99(&self) -> Duration {
        Duration::from_micros(self.3[3])
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.3[5])
    }

    /// Adds another runner's point of the same seconds: counts add, percentiles take the
    /// larger value (an upper bound), the mean is weighted by requests.
    fn add(&mut self, other: &Point) {
        let (n, m) = (self.2[0], other.2[0]);
        for (a, b) in self.2.iter_mut().zip(other.2) {
            *a = a.saturating_add(b);
        }
        for i in 0..MEAN {
            self.3[i] = self.3[i].max(other.3[i]);
        }
        if n + m > 0 {
            self.3[MEAN] =
                ((self.3[MEAN] as f64 * n as f64 + other.3[MEAN] as f64 * m as f64) / (n + m) as f64).round() as u64;
        }
    }
}

/// The quantiles a point keeps, with the share of a second's requests at or below each.
const POINT_QUANTILES: [f64; 6] = [0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

/// The figures of the seconds `window` from the per-second points alone, for windows no step
/// histogram covers (a judged run's phases and a breaker's open window). Counts and rates are
/// exact. Percentiles are estimated: each point's requests are spread over the bins between its
/// kept quantiles (half at or below its p50, 40 % up to its p90, and so on), each counted at the
/// bin's upper edge, so an estimate is never below the true value by more than the bin's width
/// and, over seconds alike, equals their own percentiles. `None` when no request was measured.
pub fn window_figures(
    points: &[Point],
    window: std::ops::Range<u64>,
    target_rate: Option<f64>,
) -> Result<Option<Figures>, ProtocolError> {
    let mut bucket = Bucket::new()?;
    let mut seconds = 0u64;
    for point in points.iter().filter(|p| window.contains(&p.0)) {
        seconds += u64::from(point.1.max(1));
        add_counts(&mut bucket.counts, &point.counts());
        let timed = point.2[0].saturating_sub(point.2[8]);
        let mut below = 0u64;
        for (i, q) in POINT_QUANTILES.iter().enumerate() {
            let upto = (timed as f64 * q).round() as u64;
            let n = upto.saturating_sub(below);
            below = upto.max(below);
            if n > 0 {
                bucket.latency.saturating_record_n(point.3[i].max(1), n);
            }
        }
    }
    if bucket.counts.total == 0 {
        return Ok(None);
    }
    Ok(Some(bucket.figures(seconds as f64, target_rate).figures))
}

/// Each second's figures (index = second since the load's start) of the points before
/// `sealed`, the seconds every runner has measured; a point standing for several seconds gives
/// each of them its figures. `target_rate` is the rate asked for over `[from, to)` (open model).
pub fn per_second(
    points: &[Point],
    sealed: u64,
    target_rate: &dyn Fn(u64, u64) -> Option<f64>,
) -> Vec<Option<Figures>> {
    let mut seconds = Vec::new();
    for point in points.iter().filter(|p| p.second() < sealed) {
        let (from, to) = (point.second(), point.second() + u64::from(point.seconds().max(1)));
        let figures = point.figures(target_rate(from, to));
        for s in from..to.min(sealed) {
            let i = usize::try_from(s).unwrap_or(usize::MAX);
            if i >= seconds.len() {
                seconds.resize(i + 1, None);
            }
            seconds[i] = Some(figures.clone());
        }
    }
    seconds
}

/// The histograms of one step of the plan, over its settled seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The step's index in `Plan::steps()`.
    pub index: u32,
    pub level: u32,
    /// Seconds `[from, to)` of intended start that were judged.
    pub from: u64,
    pub to: u64,
    /// Every second of the window is folded in.
    pub complete: bool,
    pub bucket: BucketReport,
}

/// What one runner writes back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerReport {
    pub version: u32,
    pub runner: u32,
    /// 1 for the first start of the runner, +1 for each restart.
    pub attempt: u32,
    pub state: RunnerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds of the time series' points.
    pub resolution: u32,
    /// Seconds `[0, sealed)` of intended start are folded in (or were lost in a gap).
    pub sealed: u64,
    /// Seconds `[from, to)` not measured: the runner was restarting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<(u64, u64)>,
    pub points: Vec<Point>,
    pub steps: Vec<StepReport>,
    pub total: BucketReport,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error(transparent)]
    Measure(#[from] MeasureError),
    #[error("the report is not gzipped JSON: {0}")]
    Encoding(String),
    #[error("the report has version {0}, and this build reads version {PROTOCOL_VERSION}")]
    Version(u32),
}

impl RunnerReport {
    /// The gzipped JSON stored in the ConfigMap.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        serde_json::to_writer(&mut gz, self).map_err(|e| ProtocolError::Encoding(e.to_string()))?;
        gz.finish().map_err(|e| ProtocolError::Encoding(e.to_string()))
    }

    pub fn decode(bytes: &[u8]) -> Result<RunnerReport, ProtocolError> {
        let mut json = Vec::new();
        // Bounded, so a corrupt or hostile object cannot make the operator inflate gigabytes.
        GzDecoder::new(bytes)
            .take(64 * 1024 * 1024)
            .read_to_end(&mut json)
            .map_err(|e| ProtocolError::Encoding(e.to_string()))?;
        let report: RunnerReport = serde_json::from_slice(&json).map_err(|e| ProtocolError::Encoding(e.to_string()))?;
        if report.version != PROTOCOL_VERSION {
            return Err(ProtocolError::Version(report.version));
        }
        Ok(report)
    }
}

/// Seconds per point for a plan of `length`: 1 up to [`MAX_POINTS`] seconds, more after.
pub fn resolution_for(length: Duration) -> u32 {
    u32::try_from(length.as_secs().div_ceil(MAX_POINTS).max(1)).unwrap_or(u32::MAX)
}

/// Folds a runner's sealed seconds, in order, into its report.
pub struct ReportBuilder {
    runner: u32,
    attempt: u32,
    resolution: u32,
    sealed: u64,
    gaps: Vec<(u64, u64)>,
    points: Vec<Point>,
    /// The point being filled: its first second and what it holds so far.
    open_point: Option<(u64, Bucket)>,
    steps: Vec<(u32, u32, u64, u64)>,
    /// Steps whose window is not complete yet, with their bucket so far.
    open_steps: Vec<(usize, Bucket)>,
    done_steps: Vec<StepReport>,
    total: Bucket,
    serializer: V2DeflateSerializer,
}

impl ReportBuilder {
    /// A fresh report for runner `runner` of a run following `plan`.
    pub fn new(runner: u32, plan: &Plan) -> Result<ReportBuilder, ProtocolError> {
        let steps = plan
            .steps()
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let window = step_window(step);
                (i as u32, step.level, window.start, window.end)
            })
            .collect();
        Ok(ReportBuilder {
            runner,
            attempt: 1,
            resolution: resolution_for(plan.total_duration()),
            sealed: 0,
            gaps: Vec::new(),
            points: Vec::new(),
            open_point: None,
            steps,
            open_steps: Vec::new(),
            done_steps: Vec::new(),
            total: Bucket::new()?,
            serializer: V2DeflateSerializer::new(),
        })
    }

    /// Carries on from the report a previous attempt of this runner wrote: what it sealed is
    /// kept exactly; the seconds from its end to `resume_at` become a gap.
    pub fn resume(plan: &Plan, previous: &RunnerReport, resume_at: u64) -> Result<ReportBuilder, ProtocolError> {
        let mut builder = ReportBuilder::new(previous.runner, plan)?;
        builder.attempt = previous.attempt.saturating_add(1);
        builder.resolution = previous.resolution;
        builder.points = previous.points.clone();
        builder.gaps = previous.gaps.clone();
        builder.total = previous.total.bucket()?;
        for step in &previous.steps {
            if step.complete {
                builder.done_steps.push(step.clone());
            } else {
                builder.open_steps.push((step.index as usize, step.bucket.bucket()?));
            }
        }
        builder.sealed = previous.sealed;
        // A point the previous attempt left half-filled is dropped with the gap: its seconds
        // are in the total, but a point must cover whole resolution windows.
        if let Some(last) = builder.points.last()
            && last.0 + u64::from(last.1) > builder.sealed
        {
            builder.sealed = builder.sealed.max(last.0 + u64::from(last.1));
        }
        builder.skip_to(resume_at);
        Ok(builder)
    }

    /// Records the seconds from the last sealed one to `second` as a gap: a runner that starts
    /// late or restarts does not measure them.
    pub fn skip_to(&mut self, second: u64) {
        if second > self.sealed {
            self.gaps.push((self.sealed, second));
            self.sealed = second;
        }
    }

    /// The second the next sealed second must be at least: a runner resuming skips what is
    /// before it.
    pub fn sealed(&self) -> u64 {
        self.sealed
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Folds one sealed second. Seconds must come in order; one before [`Self::sealed`] (already
    /// folded, or inside a gap) is ignored.
    pub fn fold(&mut self, second: u64, bucket: &Bucket) -> Result<(), ProtocolError> {
        if second < self.sealed {
            return Ok(());
        }
        self.total.add(bucket)?;
        // The time series.
        let point_start = second - second % u64::from(self.resolution);
        match &mut self.open_point {
            Some((start, b)) if *start == point_start => b.add(bucket)?,
            _ => {
                self.close_point();
                let mut b = Bucket::new()?;
                b.add(bucket)?;
                self.open_point = Some((point_start, b));
            }
        }
        self.sealed = second + 1;
        if self.sealed == point_start + u64::from(self.resolution) {
            self.close_point();
        }
        // The steps whose window holds this second.
        for &(index, _, from, to) in &self.steps {
            if (from..to).contains(&second) {
                let i = index as usize;
                match self.open_steps.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, b)) => b.add(bucket)?,
                    None => {
                        let mut b = Bucket::new()?;
                        b.add(bucket)?;
                        self.open_steps.push((i, b));
                    }
                }
            }
        }
        self.close_steps(false)?;
        Ok(())
    }

    /// Marks every second up to `second` (exclusive) as sealed, folded or empty: a second in which
    /// nothing was intended never comes as a bucket.
    pub fn seal_through(&mut self, second: u64) -> Result<(), ProtocolError> {
        if second > self.sealed {
            self.sealed = second;
        }
        if let Some((start, _)) = &self.open_point
            && start + u64::from(self.resolution) <= self.sealed
        {
            self.close_point();
        }
        self.close_steps(false)
    }

    fn close_point(&mut self) {
        if let Some((start, bucket)) = self.open_point.take() {
            let seconds = u32::try_from(self.sealed.saturating_sub(start).max(1)).unwrap_or(self.resolution);
            self.points.push(Point::of(start, seconds.min(self.resolution), &bucket));
        }
    }

    /// Serializes the steps whose window is sealed (all open ones when `all`), so a long plan
    /// holds at most the steps in progress as histograms.
    fn close_steps(&mut self, all: bool) -> Result<(), ProtocolError> {
        let sealed = self.sealed;
        let mut i = 0;
        while i < self.open_steps.len() {
            let index = self.open_steps[i].0;
            let (_, level, from, to) = self.steps[index];
            if all || to <= sealed {
                let (_, bucket) = self.open_steps.swap_remove(i);
                self.done_steps.push(StepReport {
                    index: index as u32,
                    level,
                    from,
                    to,
                    complete: to <= sealed,
                    bucket: BucketReport::of(&bucket, &mut self.serializer)?,
                });
            } else {
                i += 1;
            }
        }
        self.done_steps.sort_by_key(|s| s.index);
        Ok(())
    }

    /// The report as it stands: open steps and the open point are included as they are.
    pub fn report(&mut self, state: RunnerState, message: Option<String>) -> Result<RunnerReport, ProtocolError> {
        let mut steps = self.done_steps.clone();
        for (index, bucket) in &self.open_steps {
            let (_, level, from, to) = self.steps[*index];
            steps.push(StepReport {
                index: *index as u32,
                level,
                from,
                to,
                complete: false,
                bucket: BucketReport::of(bucket, &mut self.serializer)?,
            });
        }
        steps.sort_by_key(|s| s.index);
        let mut points = self.points.clone();
        if let Some((start, bucket)) = &self.open_point {
            let seconds = u32::try_from(self.sealed.saturating_sub(*start).max(1)).unwrap_or(self.resolution);
            points.push(Point::of(*start, seconds.min(self.resolution), bucket));
        }
        Ok(RunnerReport {
            version: PROTOCOL_VERSION,
            runner: self.runner,
            attempt: self.attempt,
            state,
            message,
            resolution: self.resolution,
            sealed: self.sealed,
            gaps: self.gaps.clone(),
            points,
            steps,
            total: BucketReport::of(&self.total, &mut self.serializer)?,
        })
    }
}

/// The reports of every runner, merged: exact histograms for the run and each step, the time
/// series added point by point.
#[derive(Debug)]
pub struct MergedRun {
    pub total: Bucket,
    /// Per step of the plan: its level, window and merged bucket, when any runner reported it.
    pub steps: Vec<MergedStep>,
    pub points: Vec<Point>,
    /// The least sealed second over the runners: the merged figures cover `[0, sealed)`.
    pub sealed: u64,
    pub gaps: Vec<(u32, u64, u64)>,
}

#[derive(Debug)]
pub struct MergedStep {
    pub index: u32,
    pub level: u32,
    pub from: u64,
    pub to: u64,
    /// Every runner has sealed the whole window.
    pub complete: bool,
    pub bucket: Bucket,
}

impl MergedRun {
    pub fn merge<'a>(reports: impl IntoIterator<Item = &'a RunnerReport>) -> Result<MergedRun, ProtocolError> {
        let mut total = Bucket::new()?;
        let mut steps: Vec<MergedStep> = Vec::new();
        let mut points: std::collections::BTreeMap<u64, Point> = std::collections::BTreeMap::new();
        let mut sealed = u64::MAX;
        let mut gaps = Vec::new();
        let mut runners = 0;
        // Per step: how many runners sealed its whole window.
        let mut complete_in: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
        for report in reports {
            runners += 1;
            total.add(&report.total.bucket()?)?;
            sealed = sealed.min(report.sealed);
            gaps.extend(report.gaps.iter().map(|&(from, to)| (report.runner, from, to)));
            for p in &report.points {
                points.entry(p.0).and_modify(|q| q.add(p)).or_insert_with(|| p.clone());
            }
            for s in &report.steps {
                *complete_in.entry(s.index).or_default() += usize::from(s.complete);
                let bucket = s.bucket.bucket()?;
                match steps.iter_mut().find(|m| m.index == s.index) {
                    Some(m) => m.bucket.add(&bucket)?,
                    None => steps.push(MergedStep {
                        index: s.index,
                        level: s.level,
                        from: s.from,
                        to: s.to,
                        complete: false,
                        bucket,
                    }),
                }
            }
        }
        for step in &mut steps {
            step.complete = complete_in.get(&step.index) == Some(&runners);
        }
        steps.sort_by_key(|s| s.index);
        let sealed = if runners == 0 { 0 } else { sealed };
        Ok(MergedRun { total, steps, points: points.into_values().collect(), sealed, gaps })
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
