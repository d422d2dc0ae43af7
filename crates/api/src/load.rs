//! The load profile every load-generating kind shares, and the LoadTest kind itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    IMMUTABLE_WHILE_RUNNING, IMMUTABLE_WHILE_RUNNING_MESSAGE,
    common::{GoDuration, RunStatus},
    figures::{AbortRule, ExpectationResult, LatencySummary, RequestCounts},
};

/// What load to send, where, and how it is paced. The same block appears as `spec.load` in
/// LoadTest, CircuitBreakerTrial, AutoscalingCheck and Drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.stages) || (!has(self.duration) && !has(self.preset))").message("load.stages replaces load.duration and load.preset: give stages, or a constant level with a duration, or a preset"),
    validation = Rule::new("self.model != 'open' || has(self.stages) || has(self.rate)").message("load.rate (requests per second) is required for the open model unless load.stages are given"),
    validation = Rule::new("self.model != 'closed' || has(self.stages) || has(self.vus)").message("load.vus (virtual users) is required for the closed model unless load.stages are given"),
    validation = Rule::new("self.model == 'open' || (!has(self.rate) && !has(self.maxInFlight))").message("load.rate and load.maxInFlight belong to the open model; the closed model uses load.vus"),
    validation = Rule::new("self.model == 'closed' || (!has(self.vus) && !has(self.thinkTime))").message("load.vus and load.thinkTime belong to the closed model; the open model uses load.rate"),
)]
pub struct LoadProfile {
    /// Where the requests go: a URL, or a Service in this namespace.
    pub target: LoadTarget,
    /// The requests to send, picked by weight. Empty means `GET` on the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub requests: Vec<RequestSpec>,
    /// `open` (default): requests start at their scheduled time whatever the server does, and
    /// latency counts from that time — the model for SLOs. `closed`: virtual users that each
    /// wait for their answer before sending again — the model for capacity and soak work.
    #[serde(default)]
    pub model: LoadModel,
    /// A test type of performance engineering that expands into stages around the nominal
    /// level (`rate` or `vus`); the expanded stages are shown in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// Open model: requests per second, in total over all runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub rate: Option<u32>,
    /// Closed model: concurrent virtual users, in total over all runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub vus: Option<u32>,
    /// How long a constant load lasts (at most 24h). Required in LoadTest and AutoscalingCheck
    /// unless `stages` or `preset` are given; in CircuitBreakerTrial and Drill the phases set the
    /// length, and `duration`, if given, must equal warmup + baseline + inject + recover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("load.duration must be from 1s to 24h"))]
    pub duration: Option<GoDuration>,
    /// A ramping load: each stage moves linearly to its `target` (rate or VUs) over its
    /// duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 100))]
    pub stages: Option<Vec<Stage>>,
    /// Open model: the most requests in flight at once. A request due while the bound is
    /// reached is counted as dropped, never delayed. Default: 10 000 over all runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_in_flight: Option<u32>,
    /// Closed model: pause of each virtual user between an answer and its next request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1m')").message("load.thinkTime must be at most 1m"))]
    pub think_time: Option<GoDuration>,
    /// Per-request timeout (default 10s, at most 5m).
    #[serde(default = "default_request_timeout")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1ms') && duration(self) <= duration('5m')").message("load.timeout must be from 1ms to 5m"))]
    pub timeout: GoDuration,
    /// Speak HTTP/2 (prior knowledge) instead of HTTP/1.1 with keep-alive.
    #[serde(default)]
    pub http2: bool,
    /// How the load runs in the cluster: as N runner pods, each taking 1/N of the load.
    #[serde(default)]
    pub runners: RunnerSpec,
}

fn default_request_timeout() -> GoDuration {
    GoDuration::from_secs(10)
}

/// The endpoint load is sent to: exactly one of `url` and `service`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.service)").message("load.target needs exactly one of url and service"))]
pub struct LoadTarget {
    /// An http:// or https:// URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s/]+(/\S*)?$"))]
    pub url: Option<String>,
    /// A Service in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
}

/// A Service port and path in the experiment's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTarget {
    /// The Service's name.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The Service port: its number or its name. Default: the Service's first port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// The path prefix every request path is appended to (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^/"))]
    pub path: Option<String>,
}

/// One kind of request in the mix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestSpec {
    /// A name for per-request figures (default: method and path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name: Option<String>,
    /// HTTP method (default GET).
    #[serde(default)]
    pub method: HttpMethod,
    /// Path (and query) appended to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
    /// Statuses that count as success (default: any 2xx or 3xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(range(min = 100, max = 599)))]
    pub expect_status: Vec<u16>,
    /// Relative weight in the mix (default 1).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1000))]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl From<HttpMethod> for http::Method {
    fn from(method: HttpMethod) -> Self {
        match method {
            HttpMethod::Get => Self::GET,
            HttpMethod::Head => Self::HEAD,
            HttpMethod::Post => Self::POST,
            HttpMethod::Put => Self::PUT,
            HttpMethod::Patch => Self::PATCH,
            HttpMethod::Delete => Self::DELETE,
            HttpMethod::Options => Self::OPTIONS,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadModel {
    #[default]
    Open,
    Closed,
}

/// Test types of performance engineering. Each expands into stages around the nominal level L
/// (`rate` or `vus`) and the `duration`; `docs/api.md` lists the exact expansion, and the
/// expanded stages are shown in status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A short, low load (10 % of L) to record reference figures.
    Baseline,
    /// The expected load L, with ramps.
    Load,
    /// Beyond the expected load: steps up to 2×L.
    Stress,
    /// A sudden jump from L to 5×L and back.
    Spike,
    /// L held for a long time (the `duration`, default 1h), to find leaks and drift.
    Soak,
    /// Steps up from 10 % of L until a threshold breaks; reports the highest level that held.
    Capacity,
}

/// One stage of a ramping load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// How long the ramp to `target` takes.
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("stages[].duration must be from 1s to 24h"))]
    pub duration: GoDuration,
    /// The rate (open model) or VUs (closed model) reached at the end of the stage.
    #[schemars(range(max = 1_000_000))]
    pub target: u32,
}

/// How a load runs in the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSpec {
    /// Runner pods started together, each taking 1/N of the rate or VUs (1 to 64).
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: u32,
    /// Resources of each runner pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for RunnerSpec {
    fn default() -> Self {
        Self { parallelism: default_parallelism(), resources: None }
    }
}

fn default_parallelism() -> u32 {
    1
}

/// A load test: load of one of the six test types against one endpoint, judged by thresholds
/// over latency percentiles, error rate and achieved rate that chaoslab measures itself.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "LoadTest",
    namespaced,
    status = "LoadTestStatus",
    shortname = "lt",
    category = "chaoslab",
    doc = "A load test: load of one test type against one endpoint, judged by thresholds over figures chaoslab measures itself.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Rate", type_ = "number", json_path = ".status.achievedRate", description = "achieved requests per second"),
    printcolumn(name = "P99(ms)", type_ = "number", json_path = ".status.latency.p99Ms"),
    printcolumn(name = "Errors", type_ = "number", json_path = ".status.errorRate", description = "failed / sent"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(LOAD_LENGTH_RULE).message(LOAD_LENGTH_MESSAGE))]
pub struct LoadTestSpec {
    /// The load: target, requests, model, level and pacing.
    pub load: LoadProfile,
    /// Expressions that decide the verdict, e.g. `p99 < 250ms`, `errorRate < 1%`,
    /// `achievedRate >= 99%` (of the target rate). Metrics: p50 p90 p95 p99 p999 max mean,
    /// errorRate, achievedRate, rps, dropped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 200)))]
    pub thresholds: Vec<String>,
    /// Stop the load as soon as a threshold is certain to fail (after `abortGracePeriod`).
    #[serde(default)]
    pub abort_on_fail: bool,
    /// How long after the start thresholds may abort the run (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("abortGracePeriod must be at most 1h"))]
    pub abort_grace_period: Option<GoDuration>,
    /// Further abort rules over the per-second figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub abort_when: Vec<AbortRule>,
}

/// Kinds whose load is not bounded by phases need its length: a duration, stages or a preset.
pub const LOAD_LENGTH_RULE: &str = "has(self.load.stages) || has(self.load.preset) || has(self.load.duration)";
pub const LOAD_LENGTH_MESSAGE: &str =
    "load.duration is required for a constant load (or give load.stages or load.preset)";

/// What a LoadTest measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    /// The stages that ran, after expanding a preset or a constant level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
    /// The level before the first stage (rate or VUs); the stages ramp from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_level: Option<u32>,
    /// The moment every runner starts its schedule, set once all runner pods are running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_starts_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The base URL the runners send to (a Service target resolved to its cluster DNS name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// Achieved requests per second over the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    /// The rate the schedule asked for, on average (open model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Failed requests / sent requests, as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestCounts>,
    /// Little's law: throughput × mean latency, the concurrency the system really held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub littles_law_concurrency: Option<f64>,
    /// How each threshold came out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<ExpectationResult>,
    /// Capacity preset: the highest level that held every threshold (the knee) and the first
    /// that broke one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityResult>,
    /// Figures of each level the plan held (its settled seconds only), merged over runners.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// The abort rule (`spec.abortWhen`) that stopped the run, with the values that fired it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<super::figures::AbortRecord>,
    /// Runner pods and how they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerRecord>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityResult {
    /// Highest rate (or VUs) at which every threshold held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knee: Option<u32>,
    /// First rate (or VUs) at which a threshold broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke_at: Option<u32>,
}

/// The figures of one level of the plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// The level held: rate (open model) or VUs (closed model).
    pub level: u32,
    /// Seconds since the load's start judged for this level: `[from, to)`.
    pub from: u64,
    pub to: u64,
    pub achieved_rate: f64,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Capacity preset: every threshold held at this level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerRecord {
    /// The runner's index in the Job (0..parallelism).
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Pending, Running, Done, Stopped, Failed (the runner said why), Crashed (its pod failed
    /// for good) or Missing (it never reported).
    pub state: String,
    /// Starts of this runner: more than 1 means it restarted and resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Requests this runner sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
