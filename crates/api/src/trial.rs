//! The judged kinds: CircuitBreakerTrial, AutoscalingCheck and Drill. Each runs load through
//! phases (warmup → baseline → inject → recover → cooldown), applies faults in `inject`, and
//! judges expectations against what it measured, including the measured baseline.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    IMMUTABLE_WHILE_RUNNING, IMMUTABLE_WHILE_RUNNING_MESSAGE,
    common::{GoDuration, RunStatus},
    fault::FaultInjection,
    figures::{AbortRecord, AbortRule, ExpectationResult, PhasePlan, PhaseResult, RecoveryFigures},
    load::{LOAD_LENGTH_MESSAGE, LOAD_LENGTH_RULE, LoadProfile},
    podkill::PodKillSpec,
};

/// The judgement part of the status of every judged kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Judgement {
    /// Each phase's window and figures, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseResult>,
    /// Each expectation with its observed value, threshold and result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<ExpectationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryFigures>,
    /// The abort rule that stopped the run, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<AbortRecord>,
}

/// Expression lists: `p99 < 300ms`, `p99 <= 2x baseline`, `errorRate <= baseline + 0.5%`.
/// Metrics and forms are listed in docs/api.md.
pub type Expressions = Vec<String>;

/// How recovery is judged: the SLO, checked on each second's figures from the moment the last
/// fault ends, must hold for `holdFor` seconds in a row; `within` makes it an expectation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySpec {
    /// The SLO, as expressions judged on each second (default: `expectations`). It also gives
    /// the time to detect: the first second of inject that breaks it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 3, max = 200)))]
    pub slo: Expressions,
    /// Seconds in a row the SLO must hold to count as recovered (default 3s, 1s to 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('10m')").message("recovery.holdFor must be from 1s to 10m"))]
    pub hold_for: Option<GoDuration>,
    /// The SLO holds again within this time of the last fault's end: judged as the expectation
    /// `recoveredWithin <within>` (at most 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("recovery.within must be at most 1h"))]
    pub within: Option<GoDuration>,
}

// ---------------------------------------------------------------------------------------------

/// Judge a caller's circuit breaker from outside: errors or latency in front of its dependency,
/// load on the caller, and expectations on how fast the breaker opens, how well the caller
/// fails fast, how much load the dependency is spared and how fast it closes after the heal.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "CircuitBreakerTrial",
    namespaced,
    status = "CircuitBreakerTrialStatus",
    shortname = "cbt",
    category = "chaoslab",
    doc = "Judge a caller's circuit breaker from outside: faults in front of its dependency, load on the caller, expectations on opening, fast failure and closing.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Opened", type_ = "string", json_path = ".status.breaker.opensAfter", description = "injection start to breaker open"),
    printcolumn(name = "Closed", type_ = "string", json_path = ".status.breaker.closesAfter", description = "heal to breaker closed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerTrialSpec {
    /// Load on the caller (`load.target` is the caller's Service or URL). It runs through
    /// warmup, baseline, inject and recover.
    pub load: LoadProfile,
    /// The faults in front of the caller's dependency, active during `phases.inject`.
    pub dependency: FaultInjection,
    pub phases: PhasePlan,
    /// What a working breaker does.
    #[serde(default)]
    pub expect: BreakerExpectations,
    /// Further expectations over the measured figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 200)))]
    pub expectations: Expressions,
    /// How recovery after the heal is judged (time to detect and to recover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub abort_when: Vec<AbortRule>,
}

/// Expectations on a breaker, judged from the caller's answers and the calls the proxy sees.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerExpectations {
    /// The breaker opens (calls to the dependency drop and the caller fails fast) within this
    /// time of the fault's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('10m')").message("expect.opensWithin must be at most 10m"))]
    pub opens_within: Option<GoDuration>,
    /// While open, the caller's p99 stays under this (fast failure or fallback; at most 1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1m')").message("expect.openP99Below must be at most 1m"))]
    pub open_p99_below: Option<GoDuration>,
    /// While open, calls reaching the dependency fall by at least this percentage of the
    /// baseline's (0 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub dependency_call_reduction_percent: Option<f64>,
    /// The breaker closes (calls reach the dependency again and succeed) within this time of
    /// the heal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('10m')").message("expect.closesWithin must be at most 10m"))]
    pub closes_within: Option<GoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerTrialStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    #[serde(flatten)]
    pub judgement: Judgement,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerFigures>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerFigures {
    /// Injection start to breaker open (`4.2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_after: Option<String>,
    /// Heal to breaker closed (`11.0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_after: Option<String>,
    /// Calls per second reaching the dependency: baseline and while open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_calls_baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency_calls_open: Option<f64>,
}

// ---------------------------------------------------------------------------------------------

/// Check that a Deployment's HorizontalPodAutoscaler really scales under load: how soon, how
/// far, whether the SLO holds while it does, and whether it scales back.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "AutoscalingCheck",
    namespaced,
    status = "AutoscalingCheckStatus",
    shortname = "asc",
    category = "chaoslab",
    doc = "Check that an HPA scales a Deployment under load: time to scale, peak replicas, the SLO while scaling, scale-down.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Peak", type_ = "integer", json_path = ".status.peakReplicas"),
    printcolumn(name = "ScaleUp", type_ = "string", json_path = ".status.timeToFirstScaleUp", description = "load start to first scale-up"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(LOAD_LENGTH_RULE).message(LOAD_LENGTH_MESSAGE))]
pub struct AutoscalingCheckSpec {
    /// The Deployment that should scale, and its HPA.
    pub target: ScaleTarget,
    /// The load that should make it scale.
    pub load: LoadProfile,
    #[serde(default)]
    pub expect: ScalingExpectations,
    /// How long to watch for scale-down after the load stops (default 6m: the HPA waits 5m by
    /// default before it scales down; at most 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("observeScaleDownFor must be at most 1h"))]
    pub observe_scale_down_for: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub abort_when: Vec<AbortRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTarget {
    /// The Deployment's name.
    #[schemars(length(min = 1, max = 253))]
    pub deployment: String,
    /// The HPA's name. Default: the HPA whose scaleTargetRef is the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub hpa: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingExpectations {
    /// The first scale-up happens within this time of the load's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("expect.scaleUpWithin must be at most 1h"))]
    pub scale_up_within: Option<GoDuration>,
    /// Ready replicas reach at least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub min_peak_replicas: Option<i32>,
    /// Expectations that must hold while scaling up, e.g. `p99 < 300ms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 3, max = 200)))]
    pub slo: Expressions,
    /// Replicas are back to the HPA's minimum within this time of the load's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("expect.scaleDownWithin must be at most 1h"))]
    pub scale_down_within: Option<GoDuration>,
    /// The most direction changes of the desired replica count while the load is steady.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub max_flaps: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingCheckStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// Desired and ready replicas over time (at most one sample per change, bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<ReplicaSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_replicas: Option<i32>,
    /// Load start to the first scale-up (`48.0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_scale_up: Option<String>,
    /// Load start to the peak (`1m52s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_peak: Option<String>,
    /// Load end to the HPA's minimum (`5m12s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_scale_down: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flaps: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSample {
    pub at: Time,
    pub desired: i32,
    pub ready: i32,
}

// ---------------------------------------------------------------------------------------------

/// A game day in one resource: one load, any number of faults at offsets within `inject`,
/// expectations and abort rules.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "Drill",
    namespaced,
    status = "DrillStatus",
    shortname = "dr",
    category = "chaoslab",
    doc = "A game day in one resource: load, faults at offsets, expectations against the measured baseline, abort rules.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Recovery", type_ = "string", json_path = ".status.recovery.timeToRecover", description = "fault end to SLO held again"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    pub load: LoadProfile,
    pub phases: PhasePlan,
    /// The faults, each starting at its offset within `phases.inject`.
    #[schemars(length(min = 1, max = 16))]
    pub faults: Vec<DrillFault>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 3, max = 200)))]
    pub expectations: Expressions,
    /// How recovery after the last fault is judged (time to detect and to recover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoverySpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub abort_when: Vec<AbortRule>,
    /// Resolve every target and record the plan without acting.
    #[serde(default)]
    pub dry_run: bool,
}

/// One fault of a drill: exactly one of `podKill` and `serviceFault`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.podKill) != has(self.serviceFault)").message("each faults[] entry needs exactly one of podKill and serviceFault"),
    validation = Rule::new("!has(self.serviceFault) || has(self.duration)").message("faults[].duration is required for a serviceFault: every fault is time-bounded"),
    validation = Rule::new("!has(self.podKill) || !has(self.duration)").message("faults[].duration is for a serviceFault; a podKill repeats by its own interval and duration"),
)]
pub struct DrillFault {
    /// A name for status and reports.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Offset from the start of `inject` (default 0s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("faults[].startAfter must be at most 1h"))]
    pub start_after: Option<GoDuration>,
    /// How long a serviceFault stays (1s to 1h; cut at the end of inject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("faults[].duration must be from 1s to 1h"))]
    pub duration: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_kill: Option<PodKillSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_fault: Option<FaultInjection>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    #[serde(flatten)]
    pub judgement: Judgement,
    /// When each fault started and ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultWindow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultWindow {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_at: Option<Time>,
    /// Whether the fault had an effect anyone could observe (requests faulted, pods killed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<bool>,
    /// The evidence: `412 requests crossed the proxy …, 120 faulted`, `1 pod(s) killed …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
}

impl FaultWindow {
    /// A fault not injected yet.
    pub fn pending(name: &str) -> FaultWindow {
        FaultWindow { name: name.to_owned(), started_at: None, reverted_at: None, observed: None, effect: None }
    }
}

/// The kinds whose status holds a judgement: what their figures are, for metrics and reports.
pub trait Judged {
    /// The judgement so far (empty before the first write).
    fn judgement(&self) -> Option<&Judgement>;
    /// The most replicas seen, for the kinds that watch scaling.
    fn peak_replicas(&self) -> Option<i32> {
        None
    }
}

impl Judged for Drill {
    fn judgement(&self) -> Option<&Judgement> {
        self.status.as_ref().map(|s| &s.judgement)
    }
}

impl Judged for CircuitBreakerTrial {
    fn judgement(&self) -> Option<&Judgement> {
        self.status.as_ref().map(|s| &s.judgement)
    }
}

impl Judged for AutoscalingCheck {
    fn judgement(&self) -> Option<&Judgement> {
        self.status.as_ref().map(|s| &s.judgement)
    }

    fn peak_replicas(&self) -> Option<i32> {
        self.status.as_ref().and_then(|s| s.peak_replicas)
    }
}
