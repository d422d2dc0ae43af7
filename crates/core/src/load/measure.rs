//! The load engine's measurement core: it owns how each request's timings and outcome are
//! recorded into per-second HDR histograms, how runners' recorders merge exactly, the compact
//! report a runner sends back, and the figures of a window of seconds that verdicts judge.
//!
//! Nothing here does I/O or keeps time: the runner passes offsets from the test start.
//!
//! - Latency counts from the request's *intended* start (the schedule's due time) to its end, so
//!   a stalled server or a late generator shows in the percentiles (no coordinated omission).
//!   Service time counts from the actual send to the end; scheduler lag is actual send − intended.
//! - A request belongs to the second of its intended start, whatever second it ends in.
//! - Histograms track 1 µs to 60 s with 3 significant digits. Longer values are recorded as 60 s
//!   and counted in `clamped`, so nothing is lost silently.
//! - Every sent request is recorded in the latency histograms whatever its outcome (a timeout
//!   took at least the timeout for its caller); dropped requests were never sent, so they are
//!   counted but have no latency.
//! - Merging adds histograms and counts; percentiles are never averaged.

use std::{collections::BTreeMap, ops::Range, time::Duration};

use hdrhistogram::{
    AdditionError, CreationError, Histogram,
    serialization::{DeserializeError, Deserializer, Serializer, V2DeflateSerializeError, V2DeflateSerializer},
};
use serde::{Deserialize, Serialize};

use crate::{
    api::figures::{LatencySummary, RequestCounts},
    load::verdict::Figures,
};

/// The lowest value the histograms tell apart, in microseconds.
pub const LOWEST_MICROS: u64 = 1;
/// The highest value the histograms track, in microseconds (60 s); longer values are clamped.
pub const HIGHEST_MICROS: u64 = 60_000_000;
/// Significant decimal digits the histograms keep.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// The report format this module writes and reads.
pub const REPORT_VERSION: u32 = 1;

/// How one request came out; one class per field of `RequestCounts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Answered with an expected status.
    Ok,
    /// The connection could not be opened.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// Answered with a 4xx status that was not expected.
    Status4xx,
    /// Answered with a 5xx status that was not expected.
    Status5xx,
    /// Answered with another unexpected status.
    UnexpectedStatus,
    /// The response body could not be read to the end.
    Body,
    /// Never sent: `maxInFlight` was reached.
    Dropped,
}

impl Outcome {
    /// Whether the request was sent (everything but `Dropped`).
    pub fn sent(self) -> bool {
        self != Outcome::Dropped
    }

    /// Whether a response came back (a status, even an unexpected one).
    pub fn answered(self) -> bool {
        matches!(
            self,
            Outcome::Ok | Outcome::Status4xx | Outcome::Status5xx | Outcome::UnexpectedStatus | Outcome::Body
        )
    }
}

/// Why measuring, merging or reading a report failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot create a latency histogram: {0}")]
    Create(#[from] CreationError),
    #[error("cannot add latency histograms: {0}")]
    Add(#[from] AdditionError),
    #[error("cannot serialize a latency histogram: {0}")]
    Serialize(#[from] V2DeflateSerializeError),
    #[error("cannot read a latency histogram from the report: {0}")]
    Deserialize(#[from] DeserializeError),
    #[error("the report has version {0}, and this build reads version {REPORT_VERSION}")]
    Version(u32),
    #[error("second {0} appears twice in the report")]
    DuplicateSecond(u64),
}

/// Scheduler lag (actual send − intended send) of sent requests, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LagStats {
    pub count: u64,
    pub sum_micros: u64,
    pub max_micros: u64,
}

impl LagStats {
    fn record(&mut self, micros: u64) {
        self.count = self.count.saturating_add(1);
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    fn add(&mut self, other: &LagStats) {
        self.count = self.count.saturating_add(other.count);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// The mean lag; zero when nothing was sent.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.sum_micros as f64 / self.count as f64 / 1e6)
    }

    /// The longest lag.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_micros)
    }
}

/// What was recorded for the requests intended in one second (or in a window, or a whole run).
#[derive(Clone, Debug, PartialEq)]
pub struct Bucket {
    /// Latency from the intended start, in microseconds.
    pub latency: Histogram<u64>,
    /// Service time from the actual send, in microseconds.
    pub service: Histogram<u64>,
    pub lag: LagStats,
    pub counts: RequestCounts,
    /// Latency or service values above 60 s, recorded as 60 s.
    pub clamped: u64,
}

impl Bucket {
    /// An empty bucket with histograms of 1 µs to 60 s and 3 significant digits.
    pub fn new() -> Result<Bucket, MeasureError> {
        Ok(Bucket::empty(&Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)?))
    }

    fn empty(template: &Histogram<u64>) -> Bucket {
        Bucket {
            latency: Histogram::new_from(template),
            service: Histogram::new_from(template),
            lag: LagStats::default(),
            counts: RequestCounts::default(),
            clamped: 0,
        }
    }

    fn record(&mut self, intended: Duration, actual_send: Duration, done: Duration, outcome: Outcome) {
        count(&mut self.counts, outcome);
        if !outcome.sent() {
            return;
        }
        let latency = micros(done.saturating_sub(intended));
        let service = micros(done.saturating_sub(actual_send));
        self.clamped += u64::from(latency > HIGHEST_MICROS) + u64::from(service > HIGHEST_MICROS);
        self.latency.saturating_record(latency.clamp(LOWEST_MICROS, HIGHEST_MICROS));
        self.service.saturating_record(service.clamp(LOWEST_MICROS, HIGHEST_MICROS));
        self.lag.record(micros(actual_send.saturating_sub(intended)));
    }

    /// Adds another bucket's histograms and counts.
    pub fn add(&mut self, other: &Bucket) -> Result<(), MeasureError> {
        self.latency.add(&other.latency)?;
        self.service.add(&other.service)?;
        self.lag.add(&other.lag);
        add_counts(&mut self.counts, &other.counts);
        self.clamped = self.clamped.saturating_add(other.clamped);
        Ok(())
    }

    /// The figures of this bucket as a window of `seconds` (rates are per second of it), with
    /// Little's-law concurrency, service time and scheduler lag.
    pub fn figures(&self, seconds: f64, target_rate: Option<f64>) -> WindowFigures {
        let counts = &self.counts;
        let answered = counts.ok + counts.status4xx + counts.status5xx + counts.unexpected_status + counts.body;
        let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let achieved_rate = per_second(counts.total);
        let error_rate =
            if counts.total == 0 { 0.0 } else { counts.total.saturating_sub(counts.ok) as f64 / counts.total as f64 };
        let latency = &self.latency;
        let figures = Figures {
            error_rate,
            achieved_rate,
            target_rate,
            rps: per_second(answered),
            dropped: counts.dropped,
            total: counts.total,
            ..percentiles(latency)
        };
        WindowFigures {
            concurrency: achieved_rate * mean(latency).as_secs_f64(),
            in_flight: achieved_rate * mean(&self.service).as_secs_f64(),
            service: self.service_summary(),
            lag_mean: self.lag.mean(),
            lag_max: self.lag.max(),
            clamped: self.clamped,
            figures,
        }
    }

    /// Percentiles, max and mean of latency from the intended start, in milliseconds.
    pub fn latency_summary(&self) -> LatencySummary {
        summarize(&self.latency)
    }

    /// Percentiles, max and mean of service time, in milliseconds.
    pub fn service_summary(&self) -> LatencySummary {
        summarize(&self.service)
    }
}

/// The figures of a window of seconds: what verdicts judge, and what explains them.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowFigures {
    pub figures: Figures,
    /// Little's law from the caller's side: sent per second × mean latency from the intended
    /// start; the requests outstanding, counting those the generator was late to send.
    pub concurrency: f64,
    /// Little's law on the wire: sent per second × mean service time; the requests in flight,
    /// what `maxInFlight` bounds.
    pub in_flight: f64,
    pub service: LatencySummary,
    pub lag_mean: Duration,
    pub lag_max: Duration,
    pub clamped: u64,
}

/// Records requests of one runner (or, merged, of all runners) per second of intended start.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadRecorder {
    template: Histogram<u64>,
    seconds: BTreeMap<u64, Bucket>,
    total: Bucket,
}

impl LoadRecorder {
    /// An empty recorder with histograms of 1 µs to 60 s and 3 significant digits.
    pub fn new() -> Result<LoadRecorder, MeasureError> {
        let template = Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)?;
        let total = Bucket::empty(&template);
        Ok(LoadRecorder { template, seconds: BTreeMap::new(), total })
    }

    /// Records one request. Offsets count from the test start: when it was due, when it was
    /// actually sent and when it ended. A dropped request is counted in the second it was due;
    /// its other offsets are ignored.
    pub fn record(&mut self, intended: Duration, actual_send: Duration, done: Duration, outcome: Outcome) {
        let template = &self.template;
        self.seconds.entry(intended.as_secs()).or_insert_with(|| Bucket::empty(template)).record(
            intended,
            actual_send,
            done,
            outcome,
        );
        self.total.record(intended, actual_send, done, outcome);
    }

    /// Adds another recorder's histograms and counts, second by second.
    pub fn merge(&mut self, other: &LoadRecorder) -> Result<(), MeasureError> {
        for (second, bucket) in &other.seconds {
            self.bucket_mut(*second).add(bucket)?;
        }
        self.total.add(&other.total)
    }

    /// Adds one sealed second (as the engine's ticks hand them on) to this recorder.
    pub fn add_second(&mut self, second: u64, bucket: &Bucket) -> Result<(), MeasureError> {
        self.bucket_mut(second).add(bucket)?;
        self.total.add(bucket)
    }

    fn bucket_mut(&mut self, second: u64) -> &mut Bucket {
        let template = &self.template;
        self.seconds.entry(second).or_insert_with(|| Bucket::empty(template))
    }

    /// Removes and returns the seconds before `second`, in order, keeping the total. A long run
    /// hands its finished seconds on (to a report segment, a chart) instead of holding every
    /// second's histograms, which take about 280 KB each.
    pub fn take_before(&mut self, second: u64) -> Vec<(u64, Bucket)> {
        let kept = self.seconds.split_off(&second);
        std::mem::replace(&mut self.seconds, kept).into_iter().collect()
    }

    /// The seconds that have requests, in order, with what was recorded in each.
    pub fn seconds(&self) -> impl Iterator<Item = (u64, &Bucket)> {
        self.seconds.iter().map(|(second, bucket)| (*second, bucket))
    }

    /// What was recorded over the whole run.
    pub fn total(&self) -> &Bucket {
        &self.total
    }

    /// Latency percentiles and request counts of the whole run, as status reports them.
    pub fn summary(&self) -> (LatencySummary, RequestCounts) {
        (self.total.latency_summary(), self.total.counts.clone())
    }

    /// Everything recorded for requests intended in `window` (seconds since the test start).
    pub fn bucket(&self, window: Range<u64>) -> Result<Bucket, MeasureError> {
        let mut merged = Bucket::empty(&self.template);
        if window.start < window.end {
            for bucket in self.seconds.range(window).map(|(_, bucket)| bucket) {
                merged.add(bucket)?;
            }
        }
        Ok(merged)
    }

    /// The figures of `window` (seconds since the test start, end excluded), to judge a phase,
    /// a step or one second. Rates are per second of the window's length, counting the
    /// requests intended in it.
    pub fn figures(&self, window: Range<u64>, target_rate: Option<f64>) -> Result<Figures, MeasureError> {
        Ok(self.window(window, target_rate)?.figures)
    }

    /// The figures of `window` with Little's-law concurrency, service time and scheduler lag.
    pub fn window(&self, window: Range<u64>, target_rate: Option<f64>) -> Result<WindowFigures, MeasureError> {
        let length = window.end.saturating_sub(window.start) as f64;
        Ok(self.bucket(window)?.figures(length, target_rate))
    }

    /// The compact report a runner sends back.
    pub fn report(&self) -> Result<Recording, MeasureError> {
        let mut serializer = V2DeflateSerializer::new();
        let mut seconds = Vec::with_capacity(self.seconds.len());
        for (second, bucket) in &self.seconds {
            seconds.push(SecondReport { second: *second, bucket: BucketReport::of(bucket, &mut serializer)? });
        }
        Ok(Recording { version: REPORT_VERSION, seconds, total: BucketReport::of(&self.total, &mut serializer)? })
    }

    /// The recorder a report was made from, exactly.
    pub fn from_report(report: &Recording) -> Result<LoadRecorder, MeasureError> {
        if report.version != REPORT_VERSION {
            return Err(MeasureError::Version(report.version));
        }
        let mut recorder = LoadRecorder::new()?;
        for second in &report.seconds {
            let bucket = second.bucket.read(&recorder.template)?;
            if recorder.seconds.insert(second.second, bucket).is_some() {
                return Err(MeasureError::DuplicateSecond(second.second));
            }
        }
        recorder.total = report.total.read(&recorder.template)?;
        Ok(recorder)
    }
}

/// A recorder as data (a recording): per-second summaries and histograms (V2 deflate, base64 in JSON),
/// and the whole run's histograms. Histograms, not percentiles, so that merging is exact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    pub version: u32,
    pub seconds: Vec<SecondReport>,
    pub total: BucketReport,
}

/// One second of a report, keyed by the second of intended start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondReport {
    pub second: u64,
    #[serde(flatten)]
    pub bucket: BucketReport,
}

/// A bucket as reported: summaries to read at a glance, histograms to merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketReport {
    pub counts: RequestCounts,
    pub latency: LatencySummary,
    pub lag: LagStats,
    pub clamped: u64,
    /// Latency from the intended start, HDR V2 deflate.
    #[serde(with = "base64_bytes")]
    pub latency_histogram: Vec<u8>,
    /// Service time, HDR V2 deflate.
    #[serde(with = "base64_bytes")]
    pub service_histogram: Vec<u8>,
}

impl BucketReport {
    /// The report of `bucket`; pass one serializer for many buckets to reuse its buffers.
    pub fn of(bucket: &Bucket, serializer: &mut V2DeflateSerializer) -> Result<BucketReport, MeasureError> {
        let mut latency_histogram = Vec::new();
        serializer.serialize(&bucket.latency, &mut latency_histogram)?;
        let mut service_histogram = Vec::new();
        serializer.serialize(&bucket.service, &mut service_histogram)?;
        Ok(BucketReport {
            counts: bucket.counts.clone(),
            latency: bucket.latency_summary(),
            lag: bucket.lag,
            clamped: bucket.clamped,
            latency_histogram,
            service_histogram,
        })
    }

    /// The bucket this report was made of, exactly.
    pub fn bucket(&self) -> Result<Bucket, MeasureError> {
        self.read(&Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, SIGNIFICANT_DIGITS)?)
    }

    fn read(&self, template: &Histogram<u64>) -> Result<Bucket, MeasureError> {
        let mut bucket = Bucket::empty(template);
        // Adding into histograms of our own bounds rejects one whose values do not fit them.
        bucket.latency.add(&decode(&self.latency_histogram)?)?;
        bucket.service.add(&decode(&self.service_histogram)?)?;
        bucket.lag = self.lag;
        bucket.counts = self.counts.clone();
        bucket.clamped = self.clamped;
        Ok(bucket)
    }
}

fn decode(bytes: &[u8]) -> Result<Histogram<u64>, MeasureError> {
    let mut reader = bytes;
    Ok(Deserializer::new().deserialize(&mut reader)?)
}

fn count(counts: &mut RequestCounts, outcome: Outcome) {
    let field = match outcome {
        Outcome::Ok => &mut counts.ok,
        Outcome::Connect => &mut counts.connect,
        Outcome::Timeout => &mut counts.timeout,
        Outcome::Status4xx => &mut counts.status4xx,
        Outcome::Status5xx => &mut counts.status5xx,
        Outcome::UnexpectedStatus => &mut counts.unexpected_status,
        Outcome::Body => &mut counts.body,
        Outcome::Dropped => &mut counts.dropped,
    };
    *field = field.saturating_add(1);
    if outcome.sent() {
        counts.total = counts.total.saturating_add(1);
    }
}

pub(crate) fn add_counts(into: &mut RequestCounts, other: &RequestCounts) {
    let RequestCounts { total, ok, connect, timeout, status4xx, status5xx, unexpected_status, body, dropped } = other;
    into.total = into.total.saturating_add(*total);
    into.ok = into.ok.saturating_add(*ok);
    into.connect = into.connect.saturating_add(*connect);
    into.timeout = into.timeout.saturating_add(*timeout);
    into.status4xx = into.status4xx.saturating_add(*status4xx);
    into.status5xx = into.status5xx.saturating_add(*status5xx);
    into.unexpected_status = into.unexpected_status.saturating_add(*unexpected_status);
    into.body = into.body.saturating_add(*body);
    into.dropped = into.dropped.saturating_add(*dropped);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The latency fields of [`Figures`] from a histogram; the rest default.
pub(crate) fn percentiles(latency: &Histogram<u64>) -> Figures {
    Figures {
        p50: quantile(latency, 0.50),
        p90: quantile(latency, 0.90),
        p95: quantile(latency, 0.95),
        p99: quantile(latency, 0.99),
        p999: quantile(latency, 0.999),
        max: max(latency),
        mean: mean(latency),
        ..Figures::default()
    }
}

pub(crate) fn quantile(h: &Histogram<u64>, q: f64) -> Duration {
    if h.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_micros(h.value_at_quantile(q))
}

pub(crate) fn max(h: &Histogram<u64>) -> Duration {
    if h.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_micros(h.max())
}

pub(crate) fn mean(h: &Histogram<u64>) -> Duration {
    if h.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(h.mean() / 1e6)
}

fn summarize(h: &Histogram<u64>) -> LatencySummary {
    let ms = |d: Duration| d.as_nanos() as f64 / 1e6;
    LatencySummary {
        p50_ms: ms(quantile(h, 0.50)),
        p90_ms: ms(quantile(h, 0.90)),
        p95_ms: ms(quantile(h, 0.95)),
        p99_ms: ms(quantile(h, 0.99)),
        p999_ms: ms(quantile(h, 0.999)),
        max_ms: ms(max(h)),
        mean_ms: ms(mean(h)),
    }
}

/// Bytes as standard base64 in JSON: histograms are already deflated, so this is the only
/// overhead (a third), half that of hex.
mod base64_bytes {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| D::Error::custom(format!("histogram is not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A small deterministic generator (SplitMix64), so tests need no seed plumbing.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// One synthetic request: intended, actual send, done, outcome.
    type Request = (Duration, Duration, Duration, Outcome);

    /// `rate` requests per second for `seconds`, with lag up to 200 µs, a long-tailed service
    /// time (mostly 1–20 ms, sometimes up to 2 s) and a few failures and drops.
    fn stream(seconds: u64, rate: u64, seed: u64) -> Vec<Request> {
        let mut rng = Lcg(seed);
        let step = 1_000_000 / rate;
        (0..seconds * rate)
            .map(|i| {
                let intended = us(i * step);
                let lag = us(rng.next() % 200);
                let service_us = if rng.unit() < 0.01 {
                    20_000 + rng.next() % 2_000_000
                } else {
                    // Exponential-ish body around 4 ms.
                    1_000 + (-(1.0 - rng.unit()).ln() * 3_000.0) as u64
                };
                let outcome = match rng.next() % 1000 {
                    0 => Outcome::Dropped,
                    1 => Outcome::Timeout,
                    2 => Outcome::Status5xx,
                    3 => Outcome::Connect,
                    _ => Outcome::Ok,
                };
                let send = intended + lag;
                (intended, send, send + us(service_us), outcome)
            })
            .collect()
    }

    fn recorder_of<'a>(requests: impl IntoIterator<Item = &'a Request>) -> LoadRecorder {
        let mut recorder = LoadRecorder::new().expect("recorder");
        for &(intended, send, done, outcome) in requests {
            recorder.record(intended, send, done, outcome);
        }
        recorder
    }

    /// Within HDR precision: 3 significant digits, a relative error of at most 1/1000.
    fn assert_close(actual: Duration, expected: Duration) {
        let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
        assert!((a - e).abs() <= e * 1e-3 + 1e-6, "{actual:?} is not within 0.1% of {expected:?}");
    }

    #[test]
    fn percentiles_of_a_uniform_distribution_are_within_hdr_precision() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        // Latencies 1 ms, 2 ms, … 10 000 ms, one request each, all sent on time.
        for n in 1..=10_000u64 {
            let intended = us(n * 100);
            recorder.record(intended, intended, intended + ms(n), Outcome::Ok);
        }
        let window = recorder.window(0..10, Some(10_000.0)).expect("figures");
        let f = &window.figures;
        assert_close(f.p50, ms(5_000));
        assert_close(f.p90, ms(9_000));
        assert_close(f.p95, ms(9_500));
        assert_close(f.p99, ms(9_900));
        assert_close(f.p999, ms(9_990));
        assert_close(f.max, ms(10_000));
        assert_close(f.mean, Duration::from_secs_f64(5.0005));
        assert_eq!(f.total, 10_000);
        // Service time equals latency when nothing is late; lag is zero.
        assert_eq!(window.service, f.latency_summary());
        assert_eq!(window.lag_max, Duration::ZERO);
    }

    #[test]
    fn a_constant_latency_gives_every_percentile() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        for i in 0..1000u64 {
            recorder.record(us(i * 1000), us(i * 1000), us(i * 1000 + 250), Outcome::Ok);
        }
        let (latency, counts) = recorder.summary();
        for p in [latency.p50_ms, latency.p99_ms, latency.p999_ms, latency.max_ms, latency.mean_ms] {
            assert!((p - 0.25).abs() <= 0.25e-3, "{p}");
        }
        assert_eq!(counts, RequestCounts { total: 1000, ok: 1000, ..RequestCounts::default() });
    }

    #[test]
    fn a_stall_shows_in_latency_from_the_intended_start_but_not_in_service_time() {
        // 100 requests per second for 10 s, served in 1 ms. At 5 s the server stalls for 1 s:
        // the request sent at 5.0 s answers at 6.0 s, and the generator (one connection) sends
        // the requests due during the stall only at 6.0 s, each served in 1 ms.
        let mut recorder = LoadRecorder::new().expect("recorder");
        for i in 0..1000u64 {
            let intended = ms(i * 10);
            let (send, done) = if i == 500 {
                (intended, ms(6_000))
            } else if (501..600).contains(&i) {
                (ms(6_000), ms(6_001))
            } else {
                (intended, intended + ms(1))
            };
            recorder.record(intended, send, done, Outcome::Ok);
        }
        let run = recorder.window(0..10, Some(100.0)).expect("figures");
        assert!(run.figures.p99 > ms(900), "latency p99 {:?} hides the stall", run.figures.p99);
        assert!(run.figures.p95 > ms(400), "10% of requests were late: p95 {:?}", run.figures.p95);
        assert!(run.service.p99_ms < 1.01, "service p99 {} ms shows the stall", run.service.p99_ms);
        assert_close(Duration::from_secs_f64(run.service.max_ms / 1e3), ms(1_000));
        assert_close(run.lag_max, ms(990));
        // The second of the stall carries it; the second before does not.
        let stalled = recorder.figures(5..6, Some(100.0)).expect("figures");
        assert!(stalled.p50 > ms(400));
        let before = recorder.figures(4..5, Some(100.0)).expect("figures");
        assert_close(before.max, ms(1));
    }

    #[test]
    fn one_runner_and_four_runners_merge_to_identical_histograms() {
        let requests = stream(10, 2_000, 7);
        let single = recorder_of(&requests);

        let mut runners: Vec<LoadRecorder> = (0..4).map(|_| LoadRecorder::new().expect("recorder")).collect();
        for (i, &(intended, send, done, outcome)) in requests.iter().enumerate() {
            runners[i % 4].record(intended, send, done, outcome);
        }
        let mut merged = LoadRecorder::new().expect("recorder");
        for runner in &runners {
            merged.merge(runner).expect("merge");
        }

        assert_eq!(merged, single);
        assert_eq!(merged.summary(), single.summary());
        for (second, bucket) in single.seconds() {
            let other = merged.bucket(second..second + 1).expect("bucket");
            assert_eq!(other.latency, bucket.latency);
            assert_eq!(other.service, bucket.service);
            assert_eq!(other.counts, bucket.counts);
        }
        assert_eq!(
            merged.window(2..7, Some(2_000.0)).expect("figures"),
            single.window(2..7, Some(2_000.0)).expect("figures")
        );
        // A contiguous split (each runner a slice of time) merges just as exactly.
        let mut by_time = LoadRecorder::new().expect("recorder");
        for chunk in requests.chunks(requests.len() / 4) {
            by_time.merge(&recorder_of(chunk)).expect("merge");
        }
        assert_eq!(by_time, single);
    }

    #[test]
    fn merging_adds_counts_and_keeps_every_second() {
        let mut a = LoadRecorder::new().expect("recorder");
        a.record(ms(100), ms(100), ms(110), Outcome::Ok);
        let mut b = LoadRecorder::new().expect("recorder");
        b.record(ms(2_100), ms(2_100), ms(2_130), Outcome::Status4xx);
        b.record(ms(2_200), ms(2_200), ms(2_200), Outcome::Dropped);
        a.merge(&b).expect("merge");
        let seconds: Vec<u64> = a.seconds().map(|(second, _)| second).collect();
        assert_eq!(seconds, vec![0, 2]);
        let (latency, counts) = a.summary();
        assert_eq!(counts, RequestCounts { total: 2, ok: 1, status4xx: 1, dropped: 1, ..RequestCounts::default() });
        assert!((latency.max_ms - 30.0).abs() < 0.03);
        assert_eq!(a.total().latency.len(), 2);
    }

    #[test]
    fn dropped_requests_count_but_have_no_latency() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        recorder.record(ms(10), ms(10), ms(20), Outcome::Ok);
        for i in 0..3 {
            recorder.record(ms(20 + i), Duration::ZERO, Duration::ZERO, Outcome::Dropped);
        }
        let total = recorder.total();
        assert_eq!(total.latency.len(), 1);
        assert_eq!(total.service.len(), 1);
        assert_eq!(total.lag.count, 1);
        assert_eq!(total.counts.dropped, 3);
        assert_eq!(total.counts.total, 1);
        let f = recorder.figures(0..1, Some(4.0)).expect("figures");
        assert_eq!((f.total, f.dropped), (1, 3));
        assert_close(f.p50, ms(10));
        // Only drops in a window: counted, no latency, no errors made up.
        let mut only_drops = LoadRecorder::new().expect("recorder");
        only_drops.record(ms(5), ms(5), ms(5), Outcome::Dropped);
        let f = only_drops.figures(0..1, Some(1.0)).expect("figures");
        assert_eq!((f.total, f.dropped, f.p99, f.error_rate), (0, 1, Duration::ZERO, 0.0));
    }

    #[test]
    fn values_above_sixty_seconds_are_clamped_and_counted() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        // Sent 10 s late, then 65 s of service: latency 75 s and service 65 s, both clamped.
        recorder.record(ms(0), ms(10_000), ms(75_000), Outcome::Timeout);
        // Latency 61 s clamped, service 1 s not.
        recorder.record(ms(500), ms(60_500), ms(61_500), Outcome::Ok);
        recorder.record(ms(900), ms(900), ms(901), Outcome::Ok);
        let window = recorder.window(0..1, None).expect("figures");
        assert_eq!(window.clamped, 3);
        assert_eq!(window.figures.total, 3);
        assert_eq!(recorder.total().latency.len(), 3, "clamped values are still recorded");
        assert_close(window.figures.max, Duration::from_secs(60));
        assert_close(Duration::from_secs_f64(window.service.max_ms / 1e3), Duration::from_secs(60));
        assert_eq!(recorder.total().clamped, 3);
    }

    #[test]
    fn window_figures_cover_only_their_seconds() {
        // Seconds 0..10 at 100 req/s; latency of second s is (s + 1) ms; second 3 has 10 5xx,
        // second 4 has 20 dropped instead of sent.
        let mut recorder = LoadRecorder::new().expect("recorder");
        for s in 0..10u64 {
            for i in 0..100u64 {
                let intended = ms(s * 1_000 + i * 10);
                let outcome = match (s, i) {
                    (3, 0..10) => Outcome::Status5xx,
                    (4, 0..20) => Outcome::Dropped,
                    _ => Outcome::Ok,
                };
                recorder.record(intended, intended, intended + ms(s + 1), outcome);
            }
        }
        let window = recorder.window(2..5, Some(100.0)).expect("figures");
        let f = &window.figures;
        assert_eq!(f.total, 280);
        assert_eq!(f.dropped, 20);
        assert!((f.error_rate - 10.0 / 280.0).abs() < 1e-12);
        assert!((f.achieved_rate - 280.0 / 3.0).abs() < 1e-9);
        assert!((f.rps - 280.0 / 3.0).abs() < 1e-9, "a 5xx is an answer");
        assert_eq!(f.target_rate, Some(100.0));
        assert_close(f.max, ms(5));
        assert_close(f.p50, ms(4));
        // Mean latency is (100·3 + 100·4 + 80·5) / 280 ms; Little's law: rate × mean.
        let mean = (300.0 + 400.0 + 400.0) / 280.0 / 1e3;
        assert!((f.mean.as_secs_f64() - mean).abs() < mean * 1e-3);
        assert!((window.concurrency - f.achieved_rate * mean).abs() < 1e-3);
        assert!((window.in_flight - window.concurrency).abs() < 1e-9, "sent on time: service = latency");

        // One second, and an empty or inverted window.
        let one = recorder.figures(9..10, None).expect("figures");
        assert_eq!((one.total, one.target_rate), (100, None));
        assert_close(one.p999, ms(10));
        for empty in [20..30, 5..5] {
            let f = recorder.figures(empty, Some(100.0)).expect("figures");
            assert_eq!((f.total, f.dropped, f.achieved_rate, f.rps), (0, 0, 0.0, 0.0));
            assert_eq!(f.p99, Duration::ZERO);
        }
    }

    #[test]
    fn timeouts_and_connect_failures_count_as_sent_but_not_answered() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        recorder.record(ms(0), ms(0), ms(30), Outcome::Ok);
        recorder.record(ms(1), ms(1), ms(2), Outcome::Connect);
        recorder.record(ms(2), ms(2), ms(900), Outcome::Timeout);
        recorder.record(ms(3), ms(3), ms(40), Outcome::Body);
        recorder.record(ms(4), ms(4), ms(40), Outcome::UnexpectedStatus);
        let f = recorder.figures(0..1, None).expect("figures");
        assert_eq!(f.total, 5);
        assert!((f.rps - 3.0).abs() < 1e-12);
        assert!((f.error_rate - 0.8).abs() < 1e-12);
        assert_close(f.max, ms(898));
    }

    #[test]
    fn a_report_of_sixty_seconds_at_ten_thousand_per_second_is_small_and_exact() {
        let requests = stream(60, 10_000, 42);
        let recorder = recorder_of(&requests);
        let report = recorder.report().expect("report");
        let json = serde_json::to_vec(&report).expect("json");
        // The histograms carry the size: 120 per-second ones (latency and service) and the run's
        // two, V2 deflate. Measured with this seed: 254 699 bytes of histograms, about 2 KB per
        // histogram-second (a wide distribution at 1 µs resolution: counts are noise that does not
        // compress); JSON with base64 adds a third (hex doubled it: 532 619 bytes).
        let histogram_bytes: usize = report
            .seconds
            .iter()
            .map(|s| &s.bucket)
            .chain([&report.total])
            .map(|b| b.latency_histogram.len() + b.service_histogram.len())
            .sum();
        assert!(histogram_bytes < 256 * 1024, "histograms are {histogram_bytes} bytes");
        assert!(json.len() < 400 * 1024, "report is {} bytes", json.len());
        let read: Recording = serde_json::from_slice(&json).expect("json");
        assert_eq!(read, report);
        let back = LoadRecorder::from_report(&read).expect("from report");
        assert_eq!(back, recorder);

        // Two runners' reports merge to what one recorder of both streams holds.
        let other = stream(60, 10_000, 43);
        let mut merged = LoadRecorder::from_report(&read).expect("from report");
        merged
            .merge(&LoadRecorder::from_report(&recorder_of(&other).report().expect("report")).expect("read"))
            .expect("merge");
        assert_eq!(merged, recorder_of(requests.iter().chain(&other)));
        assert_eq!(report.seconds.len(), 60);
        assert_eq!(report.total.counts.total + report.total.counts.dropped, 600_000);
    }

    #[test]
    fn a_report_shows_per_second_summaries() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        recorder.record(ms(100), ms(100), ms(150), Outcome::Ok);
        recorder.record(ms(1_100), ms(1_100), ms(1_300), Outcome::Status5xx);
        let report = recorder.report().expect("report");
        let seconds: Vec<(u64, u64)> = report.seconds.iter().map(|s| (s.second, s.bucket.counts.status5xx)).collect();
        assert_eq!(seconds, vec![(0, 0), (1, 1)]);
        assert!((report.seconds[1].bucket.latency.p50_ms - 200.0).abs() < 0.2);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["seconds"][0]["second"], 0);
        assert!(json["seconds"][0]["latencyHistogram"].is_string());
    }

    #[test]
    fn a_bad_report_is_an_error_not_a_panic() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        recorder.record(ms(100), ms(100), ms(150), Outcome::Ok);
        let report = recorder.report().expect("report");

        let mut wrong_version = report.clone();
        wrong_version.version = 99;
        assert!(matches!(LoadRecorder::from_report(&wrong_version), Err(MeasureError::Version(99))));

        let mut garbage = report.clone();
        garbage.total.latency_histogram = vec![1, 2, 3, 4, 5];
        assert!(matches!(LoadRecorder::from_report(&garbage), Err(MeasureError::Deserialize(_))));

        let mut twice = report.clone();
        twice.seconds.push(twice.seconds[0].clone());
        assert!(matches!(LoadRecorder::from_report(&twice), Err(MeasureError::DuplicateSecond(0))));

        // A histogram of wider bounds than ours does not fit.
        let mut wide = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
        wide.record(120_000_000).expect("record");
        let mut bytes = Vec::new();
        V2DeflateSerializer::new().serialize(&wide, &mut bytes).expect("serialize");
        let mut too_wide = report.clone();
        too_wide.total.service_histogram = bytes;
        assert!(matches!(LoadRecorder::from_report(&too_wide), Err(MeasureError::Add(_))));

        let mut json = serde_json::to_value(&report).expect("json");
        json["total"]["latencyHistogram"] = "abc".into();
        assert!(serde_json::from_value::<Recording>(json.clone()).is_err());
        json["total"]["latencyHistogram"] = "zz".into();
        assert!(serde_json::from_value::<Recording>(json).is_err());
    }
}
