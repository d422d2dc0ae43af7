//! The PodKill kind: delete or evict pods chosen by label and measure how fast their owners
//! bring replacements to Ready.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, MicroTime};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    IMMUTABLE_WHILE_RUNNING, IMMUTABLE_WHILE_RUNNING_MESSAGE,
    common::{GoDuration, RunStatus},
};

/// Kill pods by label in this namespace, once or every `interval` for `duration`, and judge
/// whether their owners replaced them within `recoveryDeadline`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "chaoslab.dev",
    version = "v1alpha1",
    kind = "PodKill",
    namespaced,
    status = "PodKillStatus",
    shortname = "pk",
    category = "chaoslab",
    doc = "Kill pods by label, once or repeatedly, and measure how fast their owners bring replacements to Ready.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".status.verdict"),
    printcolumn(name = "Killed", type_ = "integer", json_path = ".status.killed"),
    printcolumn(name = "Recovery", type_ = "string", json_path = ".status.maxRecovery", description = "slowest kill-to-Ready of a replacement"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(IMMUTABLE_WHILE_RUNNING).message(IMMUTABLE_WHILE_RUNNING_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.selector.matchLabels) && size(self.selector.matchLabels) > 0) || (has(self.selector.matchExpressions) && size(self.selector.matchExpressions) > 0)").message("selector needs at least one matchLabels or matchExpressions entry: an empty selector would match every pod in the namespace"),
    validation = Rule::new("(self.mode == 'fixed' || self.mode == 'percent') == has(self.value)").message("value is required when mode is fixed or percent, and not allowed when mode is one or all"),
    validation = Rule::new("self.mode != 'percent' || !has(self.value) || self.value <= 100").message("value must be from 1 to 100 when mode is percent"),
    validation = Rule::new("has(self.interval) == has(self.duration)").message("interval and duration go together: set both for repeated kills, neither for a single kill"),
    validation = Rule::new("!has(self.interval) || !has(self.duration) || duration(self.interval) <= duration(self.duration)").message("interval must not be longer than duration"),
)]
pub struct PodKillSpec {
    /// Which pods, by label, among the Running pods of this resource's namespace. Only pods in
    /// the PodKill's own namespace are ever targeted, so whoever may create a PodKill in a
    /// namespace can only break that namespace.
    pub selector: LabelSelector,
    /// How many of the matching pods each round kills: `one` (default), `all`, `fixed` (`value`
    /// pods) or `percent` (`value` % of them, rounded up, so at least one).
    #[serde(default)]
    pub mode: SelectionMode,
    /// The count for `fixed` (at least 1) or the percentage for `percent` (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub value: Option<u32>,
    /// `delete` (default) deletes the pod. `evict` uses the Eviction API, so
    /// PodDisruptionBudgets are respected: a refused eviction is recorded, not retried.
    #[serde(default)]
    pub method: KillMethod,
    /// The grace period given to the pod (default: the pod's own
    /// terminationGracePeriodSeconds). `0s` kills at once, as a crash would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("gracePeriod must be at most 1h"))]
    pub grace_period: Option<GoDuration>,
    /// Repeated kills: one round every `interval` (at least 1s) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s')").message("interval must be at least 1s"))]
    pub interval: Option<GoDuration>,
    /// … for `duration` (at most 24h). Without both, a single round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')").message("duration must be from 1s to 24h: every fault is time-bounded"))]
    pub duration: Option<GoDuration>,
    /// How long each killed pod's owner has to bring a replacement to Ready (default 2m, at
    /// most 1h). The verdict is Pass when every replacement made it in time.
    #[serde(default = "default_recovery_deadline")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')").message("recoveryDeadline must be from 1s to 1h"))]
    pub recovery_deadline: GoDuration,
    /// Resolve the targets and record them without killing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Seed of the random choice of targets, to repeat a run exactly. Default: a fresh seed,
    /// recorded in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seed: Option<i64>,
}

fn default_recovery_deadline() -> GoDuration {
    GoDuration::from_secs(120)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelectionMode {
    #[default]
    One,
    All,
    Fixed,
    Percent,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KillMethod {
    #[default]
    Delete,
    Evict,
}

/// What happened, round by round, and how fast the workload came back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodKillStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    /// The seed the targets were chosen with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Rounds started so far. A restarted operator resumes after the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    /// Pods killed (not counting refused evictions, gone targets and dry runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<u32>,
    /// Every target of every round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<KillTarget>,
    /// The slowest kill-to-Ready of a replacement (`3.2s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recovery: Option<String>,
    /// The same, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recovery_seconds: Option<f64>,
}

/// One pod chosen in one round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KillTarget {
    /// The round (0-based) that chose this pod.
    pub round: u32,
    pub pod: String,
    /// The pod's UID, so a pod re-created under the same name is told apart.
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The pod's controller (`ReplicaSet/web-7d9c`), which should replace it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub action: KillAction,
    /// When the delete or eviction was accepted (microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed_at: Option<MicroTime>,
    /// The API server's answer when it refused (a PodDisruptionBudget, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pods of the same owner created in the same second as the kill was planned. Creation times
    /// are kept to the second, so these cannot be told from a replacement by time; they are never
    /// taken as this target's replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub recent_siblings: Vec<String>,
    /// The pod that replaced this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// When the replacement became Ready: when the operator saw it Ready (its watch reacts in
    /// milliseconds), or Kubernetes' own Ready transition time (to the second) when the
    /// operator saw it late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement_ready_at: Option<MicroTime>,
    /// Seconds from the kill to the replacement's Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<f64>,
    pub recovery: Recovery,
}

/// What was done to a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum KillAction {
    /// Chosen and written down; the kill follows. A restarted operator finishes planned kills
    /// instead of choosing new targets, so no round kills more than its mode allows.
    #[default]
    Planned,
    /// Deleted or evicted.
    Killed,
    /// The eviction was refused (PodDisruptionBudget) or the delete was forbidden.
    Refused,
    /// The pod was gone before it could be killed.
    Gone,
    /// `dryRun`: would have been killed.
    DryRun,
    /// Planned, then the run was aborted or deleted before the kill.
    Cancelled,
}

/// How far a killed target's workload has come back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Recovery {
    /// Not killed (refused, gone, dry run), so there is nothing to recover.
    #[default]
    NotApplicable,
    /// Waiting for a replacement to become Ready.
    Waiting,
    /// A replacement became Ready within `recoveryDeadline`.
    Recovered,
    /// No replacement was Ready within `recoveryDeadline`.
    TimedOut,
    /// The pod had no controller, so nothing will replace it.
    NoOwner,
    /// The owner was deleted during the run; recovery could not be judged.
    OwnerGone,
}
