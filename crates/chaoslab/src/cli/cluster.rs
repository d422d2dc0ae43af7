//! What the command line reads and writes of chaoslab runs in a cluster, by kind and name: a
//! run's state, its stored report (or a summary of its status when none was stored), its load's
//! live figures from the runners' reports, and the abort annotation.

use std::{fmt, time::Duration};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};

use crate::{
    api::{
        ExperimentKind, LoadTest, Phase, RunStatus, Verdict,
        figures::{AbortRecord, ExpectationResult},
    },
    load::protocol::{self, MergedRun, RunnerReport},
    report::{Record, Report},
};

/// A run by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub kind: ExperimentKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for RunRef {
    /// `drill/tour`, as `kubectl` and `chaoslab report` take it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str().to_ascii_lowercase(), self.name)
    }
}

impl RunRef {
    pub fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.namespace, &self.kind.api_resource())
    }

    /// The LoadTest whose runners measure this run's load: the run itself, or its child.
    fn load_test(&self) -> Option<String> {
        match self.kind {
            ExperimentKind::LoadTest => Some(self.name.clone()),
            kind if kind.has_child_load() => Some(format!("{}-load", self.name)),
            _ => None,
        }
    }
}

/// What the command line shows of a run, read from its status whatever its kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunView {
    pub run: RunStatus,
    /// The time window a judged run is in (`inject`), from `status.phases`.
    pub stage: Option<String>,
    /// The judged expectations, or a LoadTest's thresholds.
    pub expectations: Vec<ExpectationResult>,
    pub aborted_by: Option<AbortRecord>,
}

impl RunView {
    pub fn of(object: &DynamicObject) -> RunView {
        let Some(status) = object.data.get("status") else { return RunView::default() };
        let field = |key: &str| status.get(key).cloned().unwrap_or(serde_json::Value::Null);
        let run: RunStatus = serde_json::from_value(status.clone()).unwrap_or_default();
        let stage = status
            .get("phases")
            .and_then(|p| p.as_array())
            .and_then(|phases| phases.last())
            .filter(|last| last.get("finishedAt").is_none())
            .and_then(|last| last.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned);
        let expectations = [field("expectations"), field("thresholds")]
            .into_iter()
            .find_map(|v| serde_json::from_value::<Vec<ExpectationResult>>(v).ok().filter(|e| !e.is_empty()))
            .unwrap_or_default();
        let aborted_by = serde_json::from_value(field("abortedBy")).ok();
        RunView { run, stage, expectations, aborted_by }
    }

    /// Ended, with a verdict.
    pub fn finished(&self) -> bool {
        self.run.phase.is_some_and(Phase::is_terminal)
    }
}

/// The run's current state; `None` when it does not exist (any more).
pub async fn view(client: &Client, run: &RunRef) -> Result<Option<RunView>, kube::Error> {
    Ok(run.api(client).get_opt(&run.name).await?.as_ref().map(RunView::of))
}

/// Asks the operator to stop `run`: it reverts every fault and ends the run Aborted.
pub async fn abort(client: &Client, run: &RunRef) -> Result<(), kube::Error> {
    let patch = serde_json::json!({ "metadata": { "annotations": { crate::controller::ABORT_ANNOTATION: "true" } } });
    run.api(client).patch(&run.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
}

/// The report the operator stored for `run` in the ConfigMap `config_map`.
pub async fn stored_report(client: &Client, run: &RunRef, config_map: &str) -> anyhow::Result<Report> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace);
    let ns = &run.namespace;
    let cm = api.get(config_map).await.with_context(|| format!("reading the report ConfigMap {ns}/{config_map}"))?;
    let json = cm
        .data
        .and_then(|mut d| d.remove(crate::controller::report::REPORT_JSON))
        .with_context(|| format!("{ns}/{config_map} holds no report.json"))?;
    super::report::parse(&json, &format!("{ns}/{config_map}"))
}

/// A report of what the status alone says, for a run whose report was not stored: its verdict,
/// message and expectations, no series.
pub fn summary_report(run: &RunRef, view: &RunView) -> Report {
    let record = Record {
        environment: "cluster".into(),
        chaoslab_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Record::default()
    };
    Report {
        namespace: Some(run.namespace.clone()),
        verdict: view.run.verdict,
        message: view.run.message.clone(),
        started_at: view.run.started_at.clone(),
        finished_at: view.run.finished_at.clone(),
        expectations: view.expectations.clone(),
        aborted_by: view.aborted_by.clone(),
        ..Report::empty(run.kind.as_str(), &run.name, record)
    }
}

/// The load's latest second every runner has reported.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveFigures {
    /// Seconds since the load's start.
    pub second: u64,
    /// Requests sent per second.
    pub rate: f64,
    pub p99: Duration,
    pub error_rate: f64,
}

/// The live figures of `run`'s load, from the reports its runners replace every few seconds;
/// `None` before the first report or when they cannot be read (the live line is a courtesy,
/// never a reason to stop following).
pub async fn live_figures(client: &Client, run: &RunRef) -> Option<LiveFigures> {
    let name = run.load_test()?;
    let load: LoadTest = Api::namespaced(client.clone(), &run.namespace).get_opt(&name).await.ok()??;
    let uid = load.metadata.uid?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &run.namespace);
    let list = config_maps.list(&ListParams::default().labels(&format!("{}={uid}", protocol::RUN_LABEL))).await.ok()?;
    let reports: Vec<RunnerReport> = list
        .items
        .iter()
        .filter_map(|cm| cm.binary_data.as_ref()?.get(protocol::REPORT_KEY))
        .filter_map(|bytes| RunnerReport::decode(&bytes.0).ok())
        .collect();
    latest(&MergedRun::merge(&reports).ok()?)
}

/// The last point every runner has sealed (the last point at all when they disagree).
fn latest(merged: &MergedRun) -> Option<LiveFigures> {
    let point = merged.points.iter().rev().find(|p| p.second() < merged.sealed).or(merged.points.last())?;
    let figures = point.figures(None);
    Some(LiveFigures {
        second: point.second(),
        rate: figures.achieved_rate,
        p99: figures.p99,
        error_rate: figures.error_rate,
    })
}

/// The verdict's word, or the phase while there is none.
pub fn state_word(view: &RunView) -> &'static str {
    match (view.run.verdict, view.run.phase) {
        (Some(v), _) => Verdict::as_str(v),
        (None, Some(p)) => p.as_str(),
        (None, None) => "Pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(status: serde_json::Value) -> DynamicObject {
        let mut object = DynamicObject::new("tour", &ExperimentKind::Drill.api_resource());
        object.data = serde_json::json!({ "status": status });
        object
    }

    #[test]
    fn the_view_reads_any_kinds_status() {
        let running = RunView::of(&object(serde_json::json!({
            "phase": "Running",
            "startedAt": "2026-12-05T09:00:00Z",
            "phases": [
                {"name": "baseline", "startedAt": "2026-12-05T09:00:00Z", "finishedAt": "2026-12-05T09:00:10Z"},
                {"name": "inject", "startedAt": "2026-12-05T09:00:10Z"}
            ]
        })));
        assert_eq!(running.stage.as_deref(), Some("inject"));
        assert!(!running.finished());
        assert_eq!(state_word(&running), "Running");
        let load_test = RunView::of(&object(serde_json::json!({
            "phase": "Succeeded", "verdict": "Fail", "message": "p99 broke",
            "thresholds": [{"expression": "p99 < 300ms", "observed": "412ms", "threshold": "300ms", "passed": false}]
        })));
        assert!(load_test.finished());
        assert_eq!(state_word(&load_test), "Fail");
        assert_eq!(load_test.expectations[0].expression, "p99 < 300ms");
        assert_eq!(RunView::of(&object(serde_json::Value::Null)).stage, None);
        let run = RunRef { kind: ExperimentKind::Drill, namespace: "shop".into(), name: "tour".into() };
        assert_eq!(run.to_string(), "drill/tour");
        assert_eq!(run.load_test().as_deref(), Some("tour-load"));
        let summary = summary_report(&run, &load_test);
        assert_eq!((summary.verdict, summary.expectations.len()), (Some(Verdict::Fail), 1));
    }
}
