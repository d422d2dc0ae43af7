//! A recorded run for the report's tests: a Drill with 20 req/s, 2 s warmup, 8 s baseline,
//! 15 s inject with 400 ms of latency in inventory from 11 s to 21 s (errors in its first
//! 3 s), 10 s recover. Its figures are made up but consistent, so every table and chart has
//! something to show.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{Record, Report, SCHEMA, SecondFigures};
use crate::api::{
    Verdict,
    figures::{ExpectationResult, LatencySummary, PhaseName, PhaseResult, RecoveryFigures},
    trial::FaultWindow,
};

/// The load's second 0.
const START: i64 = 1_796_464_800; // 2026-12-05T10:00:00Z

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(START + second).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn phase(name: PhaseName, from: i64, to: i64, throughput: f64, p50: f64, p99: f64, errors: f64) -> PhaseResult {
    PhaseResult {
        name,
        started_at: at(from),
        finished_at: Some(at(to)),
        throughput: Some(throughput),
        latency: Some(LatencySummary {
            p50_ms: p50,
            p90_ms: p99 * 0.8,
            p95_ms: p99 * 0.9,
            p99_ms: p99,
            p999_ms: p99 * 1.1,
            max_ms: p99 * 1.2,
            mean_ms: p50 * 1.1,
        }),
        error_rate: Some(errors),
    }
}

fn expectation(expression: &str, observed: &str, threshold: &str, passed: bool) -> ExpectationResult {
    ExpectationResult {
        expression: expression.into(),
        observed: Some(observed.into()),
        threshold: Some(threshold.into()),
        passed,
        message: None,
    }
}

pub fn drill() -> Report {
    let seconds = (0..35)
        .map(|s| {
            let slow = (11..21).contains(&s);
            let errors = if (11..14).contains(&s) { 3 } else { 0 };
            SecondFigures {
                second: s,
                requests: 20,
                errors,
                throughput: if slow && s == 11 { 16.0 } else { 20.0 },
                p50_ms: if slow { 410.0 } else { 12.0 },
                p99_ms: if slow { 520.0 } else { 20.0 + (s % 3) as f64 },
            }
        })
        .collect();
    Report {
        schema: SCHEMA.into(),
        kind: "Drill".into(),
        name: "tour".into(),
        namespace: None,
        verdict: Some(Verdict::Fail),
        message: Some("1 of 3 expectations failed: p99 <= 2x baseline".into()),
        started_at: Some(at(0)),
        finished_at: Some(at(36)),
        expectations: vec![
            expectation("errorRate <= baseline + 5%", "4.0%", "5.0%", true),
            expectation("p99 <= 2x baseline", "518ms", "42ms", false),
            expectation("recoveredWithin 10s", "1.0s", "10s", true),
        ],
        phases: vec![
            phase(PhaseName::Warmup, 0, 2, 20.0, 12.0, 21.0, 0.0),
            phase(PhaseName::Baseline, 2, 10, 20.0, 12.0, 21.0, 0.0),
            phase(PhaseName::Inject, 10, 25, 19.7, 280.0, 518.0, 0.04),
            phase(PhaseName::Recover, 25, 35, 20.0, 12.1, 21.5, 0.0),
        ],
        recovery: Some(RecoveryFigures {
            time_to_detect_seconds: Some(1.0),
            time_to_recover_seconds: Some(1.0),
            time_to_recover: Some("1.0s".into()),
        }),
        aborted_by: None,
        faults: vec![FaultWindow {
            name: "slow-inventory".into(),
            started_at: Some(at(11)),
            reverted_at: Some(at(21)),
            observed: Some(true),
            effect: Some("200 requests crossed the proxy in front of inventory, 200 delayed".into()),
        }],
        breaker: None,
        replicas: Vec::new(),
        stages: Vec::new(),
        seconds,
        seconds_per_point: None,
        load_test: None,
        pod_kill: None,
        service_fault: None,
        record: Record {
            environment: "local".into(),
            target: "frontend (http://127.0.0.1:8080)".into(),
            load: "open, 20 req/s".into(),
            concurrency_limit: Some(10_000),
            seed: Some(7),
            chaoslab_version: "0.1.0".into(),
        },
    }
}

/// A finished run of `K` read from `crates/report/src/fixtures/`, status included.
fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
    serde_saphyr::from_str(yaml).expect("a fixture that parses")
}

/// The finished LoadTest of `fixtures/loadtest.yaml`.
pub fn load_test_object() -> crate::api::LoadTest {
    object(include_str!("fixtures/loadtest.yaml"))
}

/// The per-second figures of the LoadTest fixture's runners: 10 s, one second (7) unmeasured,
/// 13 ms p50, p99 above 100 ms from second 6.
pub fn load_test_seconds() -> Vec<Option<crate::load::Figures>> {
    use std::time::Duration;
    (0..10u64)
        .map(|s| {
            let rate = (10 + s * 10).min(40) as f64;
            let p99 = if s >= 6 { 140 } else { 30 };
            (s != 7).then(|| crate::load::Figures {
                p50: Duration::from_millis(13),
                p90: Duration::from_millis(25),
                p95: Duration::from_millis(28),
                p99: Duration::from_millis(p99),
                p999: Duration::from_millis(p99 + 5),
                max: Duration::from_millis(p99 + 10),
                mean: Duration::from_millis(18),
                error_rate: if s == 8 { 0.025 } else { 0.0 },
                achieved_rate: rate,
                target_rate: Some(rate),
                rps: rate,
                dropped: 0,
                total: rate as u64,
            })
        })
        .collect()
}

/// The report of the LoadTest fixture.
pub fn load_test() -> Report {
    let lt = load_test_object();
    let status = lt.status.clone().unwrap_or_default();
    Report::of_load_test(&lt, &status, &load_test_seconds())
}

/// The finished PodKill of `fixtures/podkill.yaml`.
pub fn pod_kill_object() -> crate::api::PodKill {
    object(include_str!("fixtures/podkill.yaml"))
}

/// The report of the PodKill fixture.
pub fn pod_kill() -> Report {
    let pk = pod_kill_object();
    Report::of_pod_kill(&pk, &pk.status.clone().unwrap_or_default())
}

/// The finished ServiceFault of `fixtures/servicefault.yaml`.
pub fn service_fault_object() -> crate::api::ServiceFault {
    object(include_str!("fixtures/servicefault.yaml"))
}

/// The report of the ServiceFault fixture.
pub fn service_fault() -> Report {
    let sf = service_fault_object();
    Report::of_service_fault(&sf, &sf.status.clone().unwrap_or_default())
}
