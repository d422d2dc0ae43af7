//! Types every chaoslab kind shares: the run lifecycle, verdicts, durations and references.

use std::{fmt, str::FromStr, time::Duration as StdDuration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a run is in its lifecycle. Terminal phases never change again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted and waiting to start (or waiting for an operator that implements the kind).
    #[default]
    Pending,
    /// Acting on targets or generating load.
    Running,
    /// Finished and judged (see `verdict`).
    Succeeded,
    /// Could not run to the end: invalid spec, refused target, internal error.
    Failed,
    /// Stopped early by a person (the abort annotation) or an abort rule; every fault reverted.
    Aborted,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Aborted => "Aborted",
        }
    }
}

/// The judgement of a finished run, from figures chaoslab measured itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// At least one expectation failed; `message` and the per-kind results say which.
    Fail,
    /// The run had no observable effect (no target matched, no traffic), so nothing was proven.
    Inconclusive,
    /// Stopped early; faults were reverted.
    Aborted,
    /// The run could not be judged: invalid spec or an error chaoslab could not get past.
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "Pass",
            Verdict::Fail => "Fail",
            Verdict::Inconclusive => "Inconclusive",
            Verdict::Aborted => "Aborted",
            Verdict::Error => "Error",
        }
    }
}

/// The status fields every kind has. Each kind's status embeds it and adds its measured figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Lifecycle phase: Pending, Running, Succeeded, Failed or Aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Pass, Fail, Inconclusive, Aborted or Error; absent until decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// One sentence a person can act on: why this phase or verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Standard conditions: `Accepted` (spec valid, namespace opted in, kind implemented) and
    /// `Finished` (terminal, with the verdict as reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the run left Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The ConfigMap holding this run's report, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_ref: Option<LocalObjectRef>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// The object's name.
    pub name: String,
}

/// A duration in Go's format (`300ms`, `30s`, `5m`, `1h30m`), as `kubectl` and every
/// Kubernetes API use. Bounds are enforced per field with CEL rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(pub StdDuration);

/// The pattern of a non-negative Go duration, for the schema. The apiserver rejects anything else
/// before CEL or the operator ever sees it.
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    pub fn as_std(self) -> StdDuration {
        self.0
    }
}

/// A duration string that is not in Go's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration: use a number and a unit (ns, us, ms, s, m, h), such as 30s or 1h30m")]
pub struct DurationParseError {
    pub input: String,
}

impl FromStr for GoDuration {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationParseError { input: s.to_owned() };
        // Go's time.ParseDuration refuses the empty string; kube's parser reads it as zero.
        if s.trim().is_empty() {
            return Err(err());
        }
        let parsed: kube::core::Duration = s.parse().map_err(|_| err())?;
        if parsed.is_negative() {
            return Err(err());
        }
        Ok(Self(parsed.into()))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&kube::core::Duration::from(self.0), f)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": GO_DURATION_PATTERN,
        })
    }
}

/// Seconds with millisecond precision, as status reports them (`3.217`).
pub fn seconds(d: StdDuration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

/// A human figure for printer columns and messages: `850ms`, `3.2s`, `2m5s`.
pub fn human_duration(d: StdDuration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        let s = d.as_secs();
        format!("{}m{}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go_and_round_trip() {
        let d: GoDuration = "1h30m".parse().unwrap();
        assert_eq!(d.as_std(), StdDuration::from_secs(5400));
        assert_eq!("250ms".parse::<GoDuration>().unwrap().as_std(), StdDuration::from_millis(250));
        let back: GoDuration = d.to_string().parse().unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn bad_durations_are_refused_with_the_allowed_form() {
        for bad in ["", "30", "5 minutes", "-5s", "1d"] {
            let err = bad.parse::<GoDuration>().unwrap_err();
            assert!(err.to_string().contains("30s or 1h30m"), "{bad}: {err}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(StdDuration::from_millis(850)), "850ms");
        assert_eq!(human_duration(StdDuration::from_millis(3217)), "3.2s");
        assert_eq!(human_duration(StdDuration::from_secs(125)), "2m5s");
        assert_eq!(seconds(StdDuration::from_millis(3217)), 3.217);
    }
}
