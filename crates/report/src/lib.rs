//! The report of a finished run: the versioned machine-readable summary (`report.json`, schema
//! [`SCHEMA`]), the Markdown a person reads ([`markdown`]), SVG charts ([`charts`]) and one
//! self-contained HTML page ([`html`]). A report is built from what the run recorded (its
//! judgement, fault windows, per-second figures), never from anything measured again.

// The floors below, named as modules so that paths read the same in every crate.
use chaoslab_api as api;
use chaoslab_core::{load, trial};

pub mod charts;
pub mod html;
mod loadtest;
pub mod markdown;
mod podkill;
mod servicefault;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    api::{
        Verdict,
        fault::{FaultStep, ProxyRoute, ProxyStats},
        figures::{AbortRecord, ExpectationResult, LatencySummary, PhaseResult, RecoveryFigures, RequestCounts},
        load::{CapacityResult, LoadModel, LoadProfile, RunnerRecord, StepResult},
        podkill::KillTarget,
        trial::{BreakerFigures, FaultWindow, ReplicaSample},
    },
    load::Figures,
    trial::drive::TrialOutcome,
};

/// The schema of `report.json`; it changes name when a field changes meaning or goes away
/// (adding a field keeps it). Documented in docs/reports.md.
pub const SCHEMA: &str = "chaoslab.dev/report/v1";

/// Everything a report shows, as `report.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Always [`SCHEMA`] for this shape.
    pub schema: String,
    /// The experiment's kind (`Drill`, `CircuitBreakerTrial`, ...).
    pub kind: String,
    pub name: String,
    /// The namespace in a cluster; absent for a local run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// Why the verdict, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the load's second 0 began: the origin of every chart's time axis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default)]
    pub expectations: Vec<ExpectationResult>,
    #[serde(default)]
    pub phases: Vec<PhaseResult>,
    /// The stages of a LoadTest's plan, as windows of the time axis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<AbortRecord>,
    /// When each fault was active, with the evidence of its effect.
    #[serde(default)]
    pub faults: Vec<FaultWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerFigures>,
    /// Desired and ready replicas over time (AutoscalingCheck).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaSample>,
    /// The load's figures second by second, from second 0; a second nothing was measured in
    /// is absent.
    #[serde(default)]
    pub seconds: Vec<SecondFigures>,
    /// How many seconds each entry of `seconds` stands for, when a long run's series was
    /// coarsened to fit (counts added, throughput and p50 averaged, the worse p99 kept); absent
    /// means one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_per_point: Option<u32>,
    /// What a LoadTest measured over the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_test: Option<LoadTestFigures>,
    /// What a PodKill did and how fast its targets came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_kill: Option<PodKillFigures>,
    /// What a ServiceFault did and what its proxy saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_fault: Option<ServiceFaultFigures>,
    pub record: Record,
}

/// A labelled window of the time axis that is not a judged phase: one stage of a LoadTest's
/// plan, in seconds since the load's start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageWindow {
    /// What the load did in the window (`20→40 req/s`, `40 req/s`).
    pub label: String,
    pub from_second: f64,
    pub to_second: f64,
}

/// A LoadTest's figures over the whole run, as its status holds them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestFigures {
    /// The rate the schedule asked for, on average (open model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// Requests sent per second over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_rate: Option<f64>,
    /// Failed / sent, as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySummary>,
    /// Requests by outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<RequestCounts>,
    /// Little's law: throughput × mean latency, the requests in flight on average.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub littles_law_concurrency: Option<f64>,
    /// Capacity preset: the knee and the level that broke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityResult>,
    /// Each level the plan held, over its settled seconds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// The runner pods and how they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<RunnerRecord>,
}

/// A PodKill's targets and recovery, as its status holds them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodKillFigures {
    /// Every target of every round.
    #[serde(default)]
    pub targets: Vec<KillTarget>,
    /// Pods killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub killed: Option<u32>,
    /// The time each killed pod's owner had to bring a replacement to Ready (`2m0s`).
    pub recovery_deadline: String,
    /// The slowest kill-to-Ready of a replacement, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recovery_seconds: Option<f64>,
}

/// A ServiceFault's steps, routes and its proxy's figures, as its status holds them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceFaultFigures {
    /// What the operator did, in order.
    #[serde(default)]
    pub steps: Vec<FaultStep>,
    /// How the Service's ports were carried by the proxy.
    #[serde(default)]
    pub routes: Vec<ProxyRoute>,
    /// What the proxy saw, summed over its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStats>,
}

/// What the load measured in one second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecondFigures {
    /// Seconds since the load's start.
    pub second: u64,
    /// Requests sent in the second.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Requests answered per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// What was done, so the run can be understood and repeated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Where the run happened: `local` (processes on loopback) or `cluster`.
    pub environment: String,
    /// Where the load went.
    pub target: String,
    /// The load as asked: model and level (`open, 20 req/s`).
    pub load: String,
    /// The most requests in flight the load allowed (open: `maxInFlight`; closed: the VUs),
    /// for the Little's-law check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
    /// The seed of the faults' dice, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The chaoslab that ran it.
    pub chaoslab_version: String,
}

impl Record {
    /// The record of a load profile run in a cluster: the target as the spec names it.
    pub fn in_cluster(load: &LoadProfile) -> Record {
        let target = match (&load.target.url, &load.target.service) {
            (Some(url), _) => url.clone(),
            (None, Some(service)) => format!("Service {}", service.name),
            (None, None) => String::new(),
        };
        Record::of_load("cluster", load, target, None)
    }

    /// The record of a load profile run in `environment`.
    pub fn of_load(environment: &str, load: &LoadProfile, target: String, seed: Option<u64>) -> Record {
        let (level, limit) = match load.model {
            LoadModel::Open => (
                load.rate.map(|r| format!("open, {r} req/s")).unwrap_or_else(|| "open, staged".into()),
                Some(load.max_in_flight.unwrap_or(10_000)),
            ),
            LoadModel::Closed => {
                (load.vus.map(|v| format!("closed, {v} VUs")).unwrap_or_else(|| "closed, staged".into()), load.vus)
            }
        };
        Record {
            environment: environment.to_owned(),
            target,
            load: level,
            concurrency_limit: limit,
            seed,
            chaoslab_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

impl SecondFigures {
    /// One second's figures as the load engine measured them.
    pub fn of(second: u64, figures: &Figures) -> SecondFigures {
        SecondFigures {
            second,
            requests: figures.total,
            errors: (figures.error_rate * figures.total as f64).round() as u64,
            throughput: figures.rps,
            p50_ms: figures.p50.as_secs_f64() * 1000.0,
            p99_ms: figures.p99.as_secs_f64() * 1000.0,
        }
    }

    /// The seconds of a load (index = second), those measured.
    pub fn series(seconds: &[Option<Figures>]) -> Vec<SecondFigures> {
        seconds.iter().enumerate().filter_map(|(i, f)| f.as_ref().map(|f| SecondFigures::of(i as u64, f))).collect()
    }
}

impl Report {
    /// The report of a run conducted by [`crate::trial::drive::conduct`].
    pub fn of_trial(
        kind: &str,
        name: &str,
        outcome: &TrialOutcome,
        seconds: &[Option<Figures>],
        record: Record,
    ) -> Report {
        Report {
            verdict: Some(outcome.verdict),
            message: Some(outcome.message.clone()),
            started_at: Some(Time(outcome.started_at)),
            finished_at: Some(Time(outcome.finished_at)),
            expectations: outcome.judgement.expectations.clone(),
            phases: outcome.judgement.phases.clone(),
            recovery: outcome.judgement.recovery.clone(),
            aborted_by: outcome.judgement.aborted_by.clone(),
            faults: outcome.faults.clone(),
            breaker: outcome.breaker.clone(),
            seconds: SecondFigures::series(seconds),
            ..Report::empty(kind, name, record)
        }
        .settled()
    }

    /// A report of `kind`/`name` with nothing measured yet; the builders fill in what their
    /// kind has.
    pub fn empty(kind: &str, name: &str, record: Record) -> Report {
        Report {
            schema: SCHEMA.to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            namespace: None,
            verdict: None,
            message: None,
            started_at: None,
            finished_at: None,
            expectations: Vec::new(),
            phases: Vec::new(),
            stages: Vec::new(),
            recovery: None,
            aborted_by: None,
            faults: Vec::new(),
            breaker: None,
            replicas: Vec::new(),
            seconds: Vec::new(),
            seconds_per_point: None,
            load_test: None,
            pod_kill: None,
            service_fault: None,
            record,
        }
    }

    /// The report of a run in the cluster as its status tells it: the verdict, its reason and
    /// when it finished; `started_at` is the origin of the time axis.
    fn of_run<K: crate::api::Experiment>(
        run: &K,
        status: &crate::api::RunStatus,
        started_at: Option<Time>,
        record: Record,
    ) -> Report {
        Report {
            namespace: run.meta().namespace.clone(),
            verdict: status.verdict,
            message: status.message.clone(),
            started_at,
            finished_at: status.finished_at.clone(),
            ..Report::empty(K::KIND, run.meta().name.as_deref().unwrap_or_default(), record)
        }
    }

    /// The report as `report.json` keeps it: Kubernetes' `Time` keeps whole seconds, so a fault
    /// injected 10.06 s into the load is stored at 10 s. What is printed at the end of a run
    /// must be what `chaoslab report` prints from the stored file later.
    pub fn settled(self) -> Report {
        match serde_json::to_value(&self).and_then(serde_json::from_value) {
            Ok(stored) => stored,
            Err(_) => self,
        }
    }

    /// The report of a run whose outcome is in its status (the cluster's kinds).
    pub fn of_judged<K: crate::api::Experiment>(
        run: &K,
        status: &crate::api::RunStatus,
        judgement: &crate::api::trial::Judgement,
        load_start: k8s_openapi::jiff::Timestamp,
        seconds: &[Option<Figures>],
        record: Record,
    ) -> Report {
        Report {
            expectations: judgement.expectations.clone(),
            phases: judgement.phases.clone(),
            recovery: judgement.recovery.clone(),
            aborted_by: judgement.aborted_by.clone(),
            seconds: SecondFigures::series(seconds),
            ..Report::of_run(run, status, Some(Time(load_start)), record)
        }
        .settled()
    }

    /// Seconds from the load's start to `at` (negative before it); `None` without a start.
    pub fn offset(&self, at: &Time) -> Option<f64> {
        self.since_start(at.0)
    }

    /// Seconds from the load's (or run's) start to `at`; `None` without a start.
    pub fn since_start(&self, at: k8s_openapi::jiff::Timestamp) -> Option<f64> {
        let start = self.started_at.as_ref()?;
        Some(at.duration_since(start.0).as_secs_f64())
    }

    /// The length of the run's time axis in seconds: to its last second, phase, stage, fault,
    /// replica sample, kill, replacement Ready or step, whichever is latest.
    pub fn span(&self) -> f64 {
        let per_point = f64::from(self.seconds_per_point.unwrap_or(1));
        let last_second = self.seconds.last().map(|s| s.second as f64 + per_point).unwrap_or(0.0);
        // A PodKill's axis runs to its end, so a replacement never Ready shows as a bar open to it.
        let run_end = self.pod_kill.as_ref().and(self.finished_at.as_ref()).map(|t| t.0);
        let targets = self.pod_kill.iter().flat_map(|k| &k.targets);
        let instants = targets
            .flat_map(|t| [&t.killed_at, &t.replacement_ready_at])
            .flatten()
            .map(|t| t.0)
            .chain(self.service_fault.iter().flat_map(|f| &f.steps).map(|s| s.at.0))
            .chain(run_end);
        let ends = self
            .phases
            .iter()
            .filter_map(|p| p.finished_at.as_ref())
            .chain(self.faults.iter().filter_map(|f| f.reverted_at.as_ref()))
            .chain(self.replicas.iter().map(|r| &r.at))
            .map(|t| t.0)
            .chain(instants)
            .filter_map(|t| self.since_start(t))
            .chain(self.stages.iter().map(|s| s.to_second));
        ends.fold(last_second, f64::max).max(1.0)
    }

    /// What the time axis counts from: the load's start, or the run's when there was no load.
    pub fn axis_origin(&self) -> &'static str {
        if self.record.load.is_empty() { "the run started" } else { "the load started" }
    }

    /// The verdict as a word (`Pass`), or `Undecided`.
    pub fn verdict_word(&self) -> &'static str {
        self.verdict.map(Verdict::as_str).unwrap_or("Undecided")
    }

    /// `report.json`: the report as pretty JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// A time-stamp as reports print it: to the second, in UTC.
pub fn clock(at: &Time) -> String {
    at.0.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// The JSON Schema of `report.json` (checked in as docs/report.schema.json).
pub fn json_schema() -> Result<String, serde_json::Error> {
    let mut schema = serde_json::to_value(schemars::schema_for!(Report))?;
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), serde_json::Value::String(format!("https://{SCHEMA}")));
    }
    serde_json::to_string_pretty(&schema).map(|s| s + "\n")
}

/// Recorded runs of every kind, for the tests of this crate and of the crates above it (the
/// `fixture` feature).
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;

#[cfg(test)]
mod tests;
