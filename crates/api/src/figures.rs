//! Measured figures and judgement records shared by the kinds that run load: latency
//! summaries, expectation results, phases, recovery and abort records.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::GoDuration;

/// Latency percentiles in milliseconds, from HDR histograms chaoslab recorded (1 µs resolution,
/// 3 significant digits). Latency counts from each request's intended start, so a stalled
/// server shows in the percentiles (no coordinated omission).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Request outcomes by class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestCounts {
    /// Requests sent.
    pub total: u64,
    /// Requests answered with an expected status.
    pub ok: u64,
    /// The connection could not be opened.
    pub connect: u64,
    /// No answer within the request timeout.
    pub timeout: u64,
    /// Answered with a 4xx status that was not expected.
    pub status4xx: u64,
    /// Answered with a 5xx status that was not expected.
    pub status5xx: u64,
    /// Answered with another unexpected status.
    pub unexpected_status: u64,
    /// The response body could not be read to the end.
    pub body: u64,
    /// Open model only: requests not sent because `maxInFlight` was reached (like k6's
    /// dropped_iterations). They are reported, never silently delayed.
    pub dropped: u64,
}

/// One expectation (or LoadTest threshold) and how it came out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpectationResult {
    /// The expression as written in the spec, e.g. `p99 < 250ms`.
    pub expression: String,
    /// The measured value, with its unit (`212.4ms`, `0.8%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// The limit the measured value was compared with, after resolving any baseline (`250ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Whether it held.
    pub passed: bool,
    /// Why it could not be judged, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The time windows of a judged run, in order. Each one is optional but `inject`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhasePlan {
    /// Load runs, nothing is measured: caches and pools warm up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("warmup must be at most 1h"))]
    pub warmup: Option<GoDuration>,
    /// Load runs without faults; the figures relative expectations compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("baseline must be at most 1h"))]
    pub baseline: Option<GoDuration>,
    /// Faults are active. Required, at least 1s and at most 1h: every fault is time-bounded.
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("inject must be from 1s to 1h"))]
    pub inject: GoDuration,
    /// Faults are reverted and load goes on: how fast the system comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("recover must be at most 1h"))]
    pub recover: Option<GoDuration>,
    /// Load has stopped; the run watches the system settle (scale-down, breaker closing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("cooldown must be at most 1h"))]
    pub cooldown: Option<GoDuration>,
}

/// The name of a time window of a judged run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    Warmup,
    Baseline,
    Inject,
    Recover,
    Cooldown,
}

impl PhaseName {
    /// The name as written in specs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Warmup => "warmup",
            PhaseName::Baseline => "baseline",
            PhaseName::Inject => "inject",
            PhaseName::Recover => "recover",
            PhaseName::Cooldown => "cooldown",
        }
    }
}

/// What was measured in one time window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseResult {
    pub name: PhaseName,
    pub started_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Requests per second achieved in the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// Failed requests / sent requests in the window, as a fraction (0.012 = 1.2 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
}

/// A rule that stops a run early: `errorRate > 20%` for `10s` reverts every fault at once and
/// ends the run with verdict Aborted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbortRule {
    /// A condition over the figures of each second, e.g. `errorRate > 20%` or `p99 > 2s`.
    #[schemars(length(min = 3, max = 200))]
    pub when: String,
    /// How long the condition must hold, second after second, before the run is aborted.
    #[serde(default = "default_abort_for")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('10m')").message("abortWhen[].for must be from 1s to 10m"))]
    pub r#for: GoDuration,
}

fn default_abort_for() -> GoDuration {
    GoDuration::from_secs(5)
}

/// Which abort rule fired and with what values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbortRecord {
    /// The rule's `when`, as written.
    pub rule: String,
    /// The values that fired it, one per second, as written in the rule's unit.
    pub observed: Vec<String>,
    pub at: Time,
}

/// How long the system took to notice a fault and to come back from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryFigures {
    /// Seconds from the start of injection to the first second that broke the SLO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_detect_seconds: Option<f64>,
    /// Seconds from the end of the fault until the SLO held again for the required run of
    /// seconds. Absent when it never recovered within the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover_seconds: Option<f64>,
    /// `time_to_recover_seconds` as a person reads it (`12.4s`), for printer columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_recover: Option<String>,
}
