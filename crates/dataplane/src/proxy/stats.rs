//! What the proxy saw, counted on the request path without a lock shared by every request:
//! atomic counters, a ring of per-second atomic counters, and the upstream latency in HDR
//! histograms sharded by connection. `GET /stats` reads it as a [`StatsReport`], `/metrics`
//! as Prometheus text.
//!
//! Memory is bounded: the ring holds 3602 seconds (the last 3600 are reported, two ahead are
//! cleared in advance by [`Stats::tick`]), each histogram covers 1 µs to 1 h at 3 significant
//! digits (about 190 KB), one per shard.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::plan::TYPES;
use crate::proxy::faults::type_name;

/// Seconds reported in `perSecond`.
pub const SECONDS_KEPT: u64 = 3600;
/// Slots of the ring: the seconds kept and two cleared ahead.
const RING: u64 = SECONDS_KEPT + 2;
/// The largest latency recorded (larger ones are recorded as this), in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// `GET /stats`: everything in camelCase, as the operator reads it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatsReport {
    /// HTTP requests (http mode) or TCP connections (tcp mode) on the faulted routes.
    pub requests: u64,
    /// Client connections accepted on the faulted routes.
    pub connections: u64,
    /// Faults applied by type; only types applied at least once.
    #[serde(default)]
    pub faults_applied: BTreeMap<String, u64>,
    /// Upstream answers by status code (http mode; empty in tcp mode).
    #[serde(default)]
    pub upstream_status: BTreeMap<String, u64>,
    /// Upstream connections that failed or timed out, and requests upstream that broke before
    /// a response head.
    pub upstream_errors: u64,
    pub upstream_latency: LatencyStats,
    /// The last seconds (at most 3600), oldest first; the last one is the current second, still
    /// counting.
    #[serde(default)]
    pub per_second: Vec<SecondReport>,
    /// When the proxy started.
    pub since: Timestamp,
}

/// Time from sending a request upstream to its response head (http), or to connect upstream
/// (tcp), in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecondReport {
    /// Unix seconds.
    pub second: u64,
    pub requests: u64,
    /// Requests (or connections) with at least one fault applied.
    pub faulted: u64,
    pub upstream_requests: u64,
    pub upstream_errors: u64,
}

#[derive(Debug, Default)]
struct Second {
    requests: AtomicU64,
    faulted: AtomicU64,
    upstream_requests: AtomicU64,
    upstream_errors: AtomicU64,
}

impl Second {
    fn clear(&self) {
        for n in [&self.requests, &self.faulted, &self.upstream_requests, &self.upstream_errors] {
            n.store(0, Relaxed);
        }
    }
}

/// The proxy's counters.
#[derive(Debug)]
pub struct Stats {
    since: Timestamp,
    start_second: u64,
    requests: AtomicU64,
    connections: AtomicU64,
    upstream_errors: AtomicU64,
    pass_connections: AtomicU64,
    faults: [AtomicU64; 5],
    /// By status code, 0 to 599 (hyper never hands out another).
    status: Box<[AtomicU64]>,
    latency: Box<[Mutex<Histogram<u64>>]>,
    /// An empty histogram of the same bounds, to merge the shards into.
    empty: Histogram<u64>,
    seconds: Box<[Second]>,
    /// The last second whose slot has been cleared (only [`Stats::tick`] writes it).
    cleared_through: AtomicU64,
}

/// Unix seconds now.
pub fn unix_second() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let shards = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        let start_second = unix_second();
        // Start-up: 1 µs to 1 h at 3 significant digits are valid bounds.
        #[allow(clippy::expect_used)]
        let empty = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
        Stats {
            since: Timestamp::now(),
            start_second,
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            pass_connections: AtomicU64::new(0),
            faults: Default::default(),
            status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..shards).map(|_| Mutex::new(empty.clone())).collect(),
            empty,
            seconds: (0..RING).map(|_| Second::default()).collect(),
            // Every slot starts cleared: the ring is good for its first RING seconds.
            cleared_through: AtomicU64::new(start_second + RING - 1),
        }
    }

    fn second(&self, second: u64) -> &Second {
        &self.seconds[(second % RING) as usize]
    }

    pub fn connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    pub fn pass_connection(&self) {
        self.pass_connections.fetch_add(1, Relaxed);
    }

    /// One request (or tcp connection) at unix second `second`, with the faults applied to it
    /// by type (indexed as [`TYPES`]).
    pub fn request(&self, second: u64, applied: &[u8; 5]) {
        self.requests.fetch_add(1, Relaxed);
        let slot = self.second(second);
        slot.requests.fetch_add(1, Relaxed);
        if applied.iter().any(|n| *n > 0) {
            slot.faulted.fetch_add(1, Relaxed);
            for (counter, n) in self.faults.iter().zip(applied) {
                if *n > 0 {
                    counter.fetch_add(u64::from(*n), Relaxed);
                }
            }
        }
    }

    pub fn upstream_request(&self, second: u64) {
        self.second(second).upstream_requests.fetch_add(1, Relaxed);
    }

    pub fn upstream_error(&self, second: u64) {
        self.upstream_errors.fetch_add(1, Relaxed);
        self.second(second).upstream_errors.fetch_add(1, Relaxed);
    }

    /// An upstream answer (`status` 0 in tcp mode: a connection) after `latency`, recorded in
    /// the histogram shard of `connection`.
    pub fn upstream_answer(&self, status: u16, latency: Duration, connection: u64) {
        if status > 0
            && let Some(counter) = self.status.get(usize::from(status))
        {
            counter.fetch_add(1, Relaxed);
        }
        let shard = (connection % self.latency.len() as u64) as usize;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_US);
        if let Ok(mut h) = self.latency[shard].lock() {
            h.saturating_record(micros);
        }
    }

    /// Clears the ring's slots ahead of time; call at least once a second.
    pub fn tick(&self) {
        let target = unix_second() + 2;
        let mut through = self.cleared_through.load(Relaxed);
        while through < target {
            through += 1;
            self.second(through).clear();
        }
        self.cleared_through.store(through, Relaxed);
    }

    /// The upstream latency histogram over all shards.
    pub fn latency(&self) -> Histogram<u64> {
        let mut all = self.empty.clone();
        for shard in self.latency.iter() {
            if let Ok(h) = shard.lock() {
                // Same bounds: adding cannot fail.
                let _ = all.add(&*h);
            }
        }
        all
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    pub fn upstream_errors(&self) -> u64 {
        self.upstream_errors.load(Relaxed)
    }

    pub fn pass_connections(&self) -> u64 {
        self.pass_connections.load(Relaxed)
    }

    /// Faults applied by type name, zeros included.
    pub fn faults_applied(&self) -> Vec<(&'static str, u64)> {
        TYPES.iter().zip(&self.faults).map(|(kind, n)| (type_name(*kind), n.load(Relaxed))).collect()
    }

    /// Upstream answers by status, only statuses seen.
    pub fn upstream_status(&self) -> Vec<(u16, u64)> {
        self.status
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                (n > 0).then_some((code as u16, n))
            })
            .collect()
    }

    pub fn report(&self) -> StatsReport {
        let latency = self.latency();
        let ms = |us: u64| us as f64 / 1000.0;
        let now = unix_second();
        let first = self.start_second.max(now.saturating_sub(SECONDS_KEPT - 1));
        StatsReport {
            requests: self.requests(),
            connections: self.connections(),
            faults_applied: self
                .faults_applied()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| (kind.to_owned(), n))
                .collect(),
            upstream_status: self.upstream_status().into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
            upstream_errors: self.upstream_errors(),
            upstream_latency: if latency.is_empty() {
                LatencyStats::default()
            } else {
                LatencyStats {
                    count: latency.len(),
                    p50_ms: ms(latency.value_at_quantile(0.5)),
                    p90_ms: ms(latency.value_at_quantile(0.9)),
                    p99_ms: ms(latency.value_at_quantile(0.99)),
                    max_ms: ms(latency.max()),
                }
            },
            per_second: (first..=now)
                .map(|second| {
                    let slot = self.second(second);
                    SecondReport {
                        second,
                        requests: slot.requests.load(Relaxed),
                        faulted: slot.faulted.load(Relaxed),
                        upstream_requests: slot.upstream_requests.load(Relaxed),
                        upstream_errors: slot.upstream_errors.load(Relaxed),
                    }
                })
                .collect(),
            since: self.since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_in_the_report() {
        let stats = Stats::new();
        let now = unix_second();
        stats.connection();
        stats.request(now, &[0; 5]);
        stats.request(now, &[2, 0, 0, 0, 1]);
        stats.request(now, &[0, 1, 0, 0, 0]);
        stats.upstream_request(now);
        stats.upstream_request(now);
        stats.upstream_answer(200, Duration::from_millis(3), 0);
        stats.upstream_answer(503, Duration::from_millis(5), 1);
        stats.upstream_error(now);
        let report = stats.report();
        assert_eq!(report.requests, 3);
        assert_eq!(report.connections, 1);
        assert_eq!(
            report.faults_applied,
            BTreeMap::from([("abort".into(), 1), ("bandwidth".into(), 1), ("latency".into(), 2)])
        );
        assert_eq!(report.upstream_status, BTreeMap::from([("200".into(), 1), ("503".into(), 1)]));
        assert_eq!(report.upstream_errors, 1);
        assert_eq!(report.upstream_latency.count, 2);
        assert!((report.upstream_latency.max_ms - 5.0).abs() < 0.01, "{:?}", report.upstream_latency);
        let last = report.per_second.last().unwrap();
        assert!(last.second >= now);
        let total: u64 = report.per_second.iter().map(|s| s.requests).sum();
        assert_eq!(total, 3);
        let faulted: u64 = report.per_second.iter().map(|s| s.faulted).sum();
        assert_eq!(faulted, 2);
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "requests",
            "connections",
            "faultsApplied",
            "upstreamStatus",
            "upstreamErrors",
            "upstreamLatency",
            "perSecond",
            "since",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert!(json["upstreamLatency"]["p99Ms"].is_f64());
        assert!(json["perSecond"][0]["upstreamRequests"].is_u64());
        let back: StatsReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_ring_clears_ahead_and_reports_at_most_an_hour() {
        let stats = Stats::new();
        // Pretend an hour and more went by: the slot two seconds ahead is cleared by tick.
        let ahead = unix_second() + 2;
        stats.second(ahead).requests.store(9, Relaxed);
        stats.cleared_through.store(ahead - 1, Relaxed);
        stats.tick();
        assert_eq!(stats.second(ahead).requests.load(Relaxed), 0);
        assert!(stats.report().per_second.len() <= SECONDS_KEPT as usize);
    }
}
