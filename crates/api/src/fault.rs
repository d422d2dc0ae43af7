//! Network faults in front of a Service (the fault set the proxy applies) and the ServiceFault
//! kind that puts them there for a bounded time.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ResourceRequirements, apimachinery::pkg::apis::meta::v1::Time,
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    IMMUTABLE_WHILE_RUNNING, IMMUTABLE_WHILE_RUNNING_MESSAGE,
    common::{GoDuration, RunStatus},
};

/// Where faults go and which: a Service of this namespace, its ports, and the fault set. Used by
/// ServiceFault, by CircuitBreakerTrial (`dependency`) and by Drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.protocol == 'http' || self.faults.all(f, f.type != 'abort' && !has(f.match))").message("faults of type abort and faults with match need protocol http: a tcp proxy sees connections, not requests"))]
pub struct FaultInjection {
    /// The Service the faults are put in front of (in this namespace). Its selector is pointed
    /// at chaoslab's proxy for the duration and restored exactly afterwards.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub service: String,
    /// The Service ports (numbers or names) to put faults on. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<IntOrString>,
    /// `http` (default): the proxy reads HTTP/1.1 and HTTP/2 requests, so faults can match on
    /// path, method and headers and abort with a status. `tcp`: faults apply to connections.
    #[serde(default)]
    pub protocol: ProxyProtocol,
    /// The faults, applied in the order documented in docs/api.md (abort, reset and
    /// blackhole decide first; latency and bandwidth shape what passes).
    #[schemars(length(min = 1, max = 8))]
    pub faults: Vec<Fault>,
    /// The proxy Deployment that carries the faults.
    #[serde(default)]
    pub proxy: ProxySpec,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    Http,
    Tcp,
}

/// One fault: its type, the share of requests (or connections) it hits, and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(self.type == 'latency') == has(self.latency)").message("faults[].latency is required when type is latency and not allowed otherwise"),
    validation = Rule::new("(self.type == 'abort') == has(self.abort)").message("faults[].abort is required when type is abort and not allowed otherwise"),
    validation = Rule::new("(self.type == 'bandwidth') == has(self.bandwidth)").message("faults[].bandwidth is required when type is bandwidth and not allowed otherwise"),
    validation = Rule::new("self.percent > 0.0").message("faults[].percent must be above 0: a fault that hits nothing proves nothing"),
)]
pub struct Fault {
    /// `latency`, `abort` (answer with a status without calling upstream), `reset` (close the
    /// connection with a TCP RST), `blackhole` (accept and never answer) or `bandwidth`.
    #[serde(rename = "type")]
    pub kind: FaultType,
    /// The share of requests (http) or connections (tcp) hit, above 0 and up to 100 (default 100).
    #[serde(default = "default_percent")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub percent: f64,
    /// Only requests matching all of these are hit (http only).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<RequestMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortFault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthFault>,
}

fn default_percent() -> f64 {
    100.0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FaultType {
    Latency,
    Abort,
    Reset,
    Blackhole,
    Bandwidth,
}

/// Which requests a fault hits (http only). Every given field must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^/"))]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<super::load::HttpMethod>,
    /// Header name → exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A delay of `delay` plus a random `jitter` drawn from `distribution`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyFault {
    #[x_kube(validation = Rule::new("duration(self) <= duration('5m')").message("latency.delay must be at most 5m"))]
    pub delay: GoDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('5m')").message("latency.jitter must be at most 5m"))]
    pub jitter: Option<GoDuration>,
    /// How jitter is drawn: `uniform` (default, 0 to jitter), `normal` (jitter is the standard
    /// deviation) or `pareto` (a long tail with jitter as its scale).
    #[serde(default)]
    pub distribution: JitterDistribution,
    /// Delay the `request` before forwarding it (default) or the `response` before returning it.
    /// (Not named `on`: YAML 1.1, which kubectl reads, takes the key `on` for the boolean true.)
    #[serde(default)]
    pub apply_to: LatencyPoint,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JitterDistribution {
    #[default]
    Uniform,
    Normal,
    Pareto,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LatencyPoint {
    #[default]
    Request,
    Response,
}

/// Answer without calling upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbortFault {
    /// The HTTP status to answer with (default 503).
    #[serde(default = "default_abort_status")]
    #[schemars(range(min = 200, max = 599))]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub body: Option<String>,
}

fn default_abort_status() -> u16 {
    503
}

/// Limit each connection to `bytesPerSecond` in each direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthFault {
    #[schemars(range(min = 1))]
    pub bytes_per_second: u64,
}

/// The proxy's Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxySpec {
    /// Proxy pods (1 to 10, default 1).
    #[serde(default = "default_proxy_replicas")]
    #[schemars(range(min = 1, max = 10))]
    pub replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ProxySpec {
    fn default() -> Self {
        Self { replicas: default_proxy_replicas(), resources: None }
    }
}

fn default_proxy_replicas() -> i32 {
    1
}

/// Put network faults in front of a Service for a bounded time, through a proxy chaoslab runs,
/// and revert the Service exactly afterwards.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "ServiceFault",
    namespaced,
    status = "ServiceFaultStatus",
    shortname = "sf",
    category = "chaoslab",
    doc = "Network faults in front of a Service for a bounded time, through a proxy chaoslab runs; always reverted.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Requests", type_ = "integer", json_path = ".status.proxy.requests", description = "requests that crossed the proxy"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.faultsFor) || has(self.faultsStartAt)").message("faultsFor needs faultsStartAt: the faults' window starts at a given moment"))]
pub struct ServiceFaultSpec {
    #[serde(flatten)]
    pub injection: FaultInjection,
    /// How long the faults stay (required, 1s to 24h). The proxy itself stops injecting at that
    /// moment, whatever happens to the operator.
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("duration must be from 1s to 24h: every fault is time-bounded"))]
    pub duration: GoDuration,
    /// The faults begin at this moment (RFC 3339) instead of at injection: until then the
    /// proxy carries the traffic and counts it without faults (a judged run measures the calls
    /// before its fault this way). It must come before the fault's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults_start_at: Option<Time>,
    /// With `faultsStartAt`: the faults last this long (1s to 24h); after it the proxy carries
    /// and counts the traffic without faults until `duration` ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("faultsFor must be from 1s to 24h"))]
    pub faults_for: Option<GoDuration>,
    /// Check the Service and ports and record the plan without touching anything.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceFaultStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    /// What the operator did, in order: Claimed, ProxyCreated, ProxyReady, Switched, Injecting,
    /// Reverted, Cleaned (or DryRun). Each step is written before the next is taken, so a
    /// restarted operator resumes where it stood.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<FaultStep>,
    /// The Service's selector before the fault: what is restored at the end. (The Service itself
    /// carries it too, in the `chaoslab.dev/original-selector` annotation.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub original_selector: BTreeMap<String, String>,
    /// How the Service's ports are carried by the proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<ProxyRoute>,
    /// The proxy's own end of injection (its dead-man switch): it becomes a plain pass-through
    /// then, even if the operator is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_expires_at: Option<Time>,
    /// When the Service's endpoints pointed only at the proxy (injection really began).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected_at: Option<Time>,
    /// When the Service's original selector was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<Time>,
    /// What the proxy saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStats>,
}

/// One step of a ServiceFault, as it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultStep {
    /// Claimed, ProxyCreated, ProxyReady, Switched, Injecting, Reverted, Cleaned or DryRun.
    pub step: String,
    pub at: Time,
    /// What was done, with the names of the objects involved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A Service port and how the proxy carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyRoute {
    /// The Service port's name (or number, when unnamed).
    pub port: String,
    /// The port the proxy listens on (the Service's targetPort, which now reaches the proxy).
    pub listen: i32,
    /// Where the proxy forwards: the shadow Service that keeps the original selector.
    pub upstream: String,
    /// Whether faults apply on this port (false: forwarded untouched).
    pub faulted: bool,
}

/// A summary of the proxy's own statistics, summed over its pods.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStats {
    /// Requests (http) or connections (tcp) that crossed the proxy.
    pub requests: u64,
    /// Client connections the proxy accepted.
    #[serde(default)]
    pub connections: u64,
    /// Faults applied, by type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub faults_applied: BTreeMap<String, u64>,
    /// Upstream answers by status code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream_status: BTreeMap<String, u64>,
    /// Calls the proxy could not make to the upstream (connect failures, timeouts).
    #[serde(default)]
    pub upstream_errors: u64,
    /// Proxy pods whose statistics were read (of the Deployment's replicas).
    #[serde(default)]
    pub pods_read: u32,
}
