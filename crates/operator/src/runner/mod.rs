//! `chaoslab runner`: one LoadTest runner pod. It waits for the start time the operator sets,
//! runs its share of the plan with the load engine, and keeps its report ConfigMap up to date;
//! after a restart it reads that report back and resumes where the schedule stands.

use std::time::Duration;

use k8s_openapi::{
    ByteString,
    api::core::v1::ConfigMap,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{PostParams, ResourceExt},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use chaoslab_dataplane::engine::{self, EngineConfig};

use crate::{
    api::{API_VERSION, LoadTest},
    load::{
        protocol::{
            ProtocolError, REPORT_KEY, RUN_LABEL, RUNNER_LABEL, ReportBuilder, RunnerConfig, RunnerReport, RunnerState,
            report_name,
        },
        schedule::RunnerShare,
    },
};

/// How often a runner waiting for its start looks at the LoadTest.
const START_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("CHAOSLAB_RUNNER is not a runner configuration: {0}")]
    Config(String),
    #[error("runner {index} of {of} does not exist (JOB_COMPLETION_INDEX must be below the runner count)")]
    Index { index: u32, of: u32 },
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("report: {0}")]
    Report(#[from] ProtocolError),
    #[error("the LoadTest {0} is gone (or was replaced by another of the same name)")]
    LoadTestGone(String),
    #[error(
        "stopped (SIGTERM) while LoadTest {0} still runs: the report so far is kept resumable, so the Job's replacement pod carries on"
    )]
    Interrupted(String),
}

/// What a runner is told: the configuration and its index.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub config: RunnerConfig,
    pub index: u32,
}

impl Assignment {
    /// Reads the configuration JSON and the index, checking they fit together.
    pub fn parse(config_json: &str, index: u32) -> Result<Assignment, RunnerError> {
        let config: RunnerConfig = serde_json::from_str(config_json).map_err(|e| RunnerError::Config(e.to_string()))?;
        if index >= config.runners {
            return Err(RunnerError::Index { index, of: config.runners });
        }
        Ok(Assignment { config, index })
    }
}

/// Runs the runner to its end: `Ok` once the final report is written, whatever the load did
/// (the verdict is the operator's). `stop` is cancelled on SIGTERM.
pub async fn run(client: Client, assignment: Assignment, stop: CancellationToken) -> Result<RunnerState, RunnerError> {
    let Assignment { config, index } = assignment;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &config.namespace);
    let tests: Api<LoadTest> = Api::namespaced(client, &config.namespace);
    let mut store = ReportStore::new(maps, &config, index);
    let previous = store.read().await?;
    if let Some(report) = &previous
        && report.state != RunnerState::Running
    {
        tracing::info!(runner = index, state = ?report.state, "this runner already finished; nothing to do");
        return Ok(report.state);
    }

    let Some(starts_at) = wait_for_start(&tests, &config, &stop).await? else {
        return Ok(RunnerState::Stopped);
    };
    // Offsets of the schedule count from `starts_at`, on this process's monotonic clock.
    let now = Timestamp::now();
    let ahead = Duration::try_from(starts_at.duration_since(now)).unwrap_or_default();
    let behind = Duration::try_from(now.duration_since(starts_at)).unwrap_or_default();
    let start = tokio::time::Instant::now() + ahead;
    let start = start.checked_sub(behind).unwrap_or(start);
    // A runner late to its start (or restarted) resumes at the next whole second.
    let resume_at = if behind.is_zero() { 0 } else { behind.as_secs() + 1 };

    let plan = config.plan();
    let mut builder = match &previous {
        Some(report) => ReportBuilder::resume(&plan, report, resume_at)?,
        None => {
            let mut fresh = ReportBuilder::new(index, &plan)?;
            fresh.skip_to(resume_at);
            fresh
        }
    };
    tracing::info!(
        runner = index,
        of = config.runners,
        attempt = builder.attempt(),
        starts_at = %starts_at,
        resume_at,
        target = %config.base_url,
        "runner starting"
    );

    let share = RunnerShare { index, of: config.runners };
    let mut engine_config = EngineConfig::from_profile(&config.profile, &config.base_url, plan.clone(), share);
    engine_config.skip_before = Duration::from_secs(builder.sealed());
    let (tx, mut rx) = mpsc::channel(16);
    let engine = tokio::spawn(engine::run(engine_config, start, Some(tx), stop.clone()));

    let every = Duration::from_secs(u64::from(config.report_every_secs.max(1)));
    let mut last_write = tokio::time::Instant::now();
    while let Some(tick) = rx.recv().await {
        for (second, bucket) in &tick.sealed {
            builder.fold(*second, bucket)?;
        }
        if last_write.elapsed() >= every {
            // A report that cannot be written now is written with the next tick.
            if let Err(error) = store.write(&builder.report(RunnerState::Running, None)?).await {
                tracing::warn!(runner = index, %error, "could not write the report; retrying");
            } else {
                last_write = tokio::time::Instant::now();
            }
        }
    }
    let (state, message) = match engine.await {
        // The pod was deleted or evicted while the run goes on (the operator stops runners only
        // once it has concluded): the report stays resumable and the runner fails, so the Job
        // starts a replacement that resumes at the current second, the seconds between a gap.
        Ok(Ok(outcome)) if outcome.stopped && still_running(&tests, &config).await => {
            let report = builder.report(RunnerState::Running, None)?;
            store.write(&report).await?;
            tracing::info!(
                runner = index,
                sent = report.total.counts.total,
                "interrupted; the report so far stays resumable"
            );
            return Err(RunnerError::Interrupted(config.load_test.clone()));
        }
        Ok(Ok(outcome)) if outcome.stopped => (RunnerState::Stopped, Some("stopped before the plan's end".to_owned())),
        Ok(Ok(_)) => {
            builder.seal_through(plan.total_duration().as_secs())?;
            (RunnerState::Done, None)
        }
        Ok(Err(e)) => (RunnerState::Failed, Some(e.to_string())),
        Err(e) => (RunnerState::Failed, Some(format!("the engine task failed: {e}"))),
    };
    let report = builder.report(state, message)?;
    store.write_final(&report).await?;
    tracing::info!(runner = index, state = ?state, sent = report.total.counts.total, "runner finished");
    Ok(state)
}

/// Whether this runner's LoadTest still runs: not finished, not being deleted, not replaced.
async fn still_running(tests: &Api<LoadTest>, config: &RunnerConfig) -> bool {
    match tests.get_opt(&config.load_test).await {
        Ok(Some(lt)) => {
            lt.uid().as_deref() == Some(config.uid.as_str())
                && lt.metadata.deletion_timestamp.is_none()
                && !lt.status.as_ref().and_then(|s| s.run.phase).is_some_and(|p| p.is_terminal())
        }
        _ => false,
    }
}

/// Waits until the operator has set the start time; `None` when stopped first.
async fn wait_for_start(
    tests: &Api<LoadTest>,
    config: &RunnerConfig,
    stop: &CancellationToken,
) -> Result<Option<Timestamp>, RunnerError> {
    loop {
        let lt = tests.get_opt(&config.load_test).await?;
        let Some(lt) = lt.filter(|lt| lt.uid().as_deref() == Some(config.uid.as_str())) else {
            return Err(RunnerError::LoadTestGone(config.load_test.clone()));
        };
        if let Some(at) = lt.status.and_then(|s| s.load_starts_at) {
            return Ok(Some(at.0));
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(None),
            () = tokio::time::sleep(START_POLL) => {}
        }
    }
}

/// This runner's report ConfigMap: read once at start, then replaced as the report grows.
struct ReportStore {
    api: Api<ConfigMap>,
    name: String,
    meta: ObjectMeta,
    /// The last version written, for the next replace.
    resource_version: Option<String>,
}

impl ReportStore {
    fn new(api: Api<ConfigMap>, config: &RunnerConfig, index: u32) -> ReportStore {
        let name = report_name(&config.load_test, &config.uid, index);
        let meta = ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(config.namespace.clone()),
            labels: Some(
                [
                    (RUN_LABEL.to_owned(), config.uid.clone()),
                    (RUNNER_LABEL.to_owned(), index.to_string()),
                    ("app.kubernetes.io/part-of".to_owned(), "chaoslab".to_owned()),
                ]
                .into(),
            ),
            // Owned by the LoadTest, so it goes with it. Not blocking its deletion: that would
            // need rights on the LoadTest's finalizers, which a runner has no use for.
            owner_references: Some(vec![OwnerReference {
                api_version: API_VERSION.to_owned(),
                kind: "LoadTest".to_owned(),
                name: config.load_test.clone(),
                uid: config.uid.clone(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        ReportStore { api, name, meta, resource_version: None }
    }

    async fn read(&mut self) -> Result<Option<RunnerReport>, RunnerError> {
        let Some(cm) = self.api.get_opt(&self.name).await? else { return Ok(None) };
        self.resource_version = cm.resource_version();
        match cm.binary_data.as_ref().and_then(|d| d.get(REPORT_KEY)) {
            Some(bytes) => Ok(Some(RunnerReport::decode(&bytes.0)?)),
            None => Ok(None),
        }
    }

    async fn write(&mut self, report: &RunnerReport) -> Result<(), RunnerError> {
        let mut cm = ConfigMap {
            metadata: self.meta.clone(),
            binary_data: Some([(REPORT_KEY.to_owned(), ByteString(report.encode()?))].into()),
            ..Default::default()
        };
        let written = match self.resource_version.clone() {
            None => match self.api.create(&PostParams::default(), &cm).await {
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Written by an earlier attempt of this runner: take its version and replace.
                    let current = self.api.get(&self.name).await?;
                    cm.metadata.resource_version = current.resource_version();
                    self.api.replace(&self.name, &PostParams::default(), &cm).await?
                }
                other => other?,
            },
            Some(version) => {
                cm.metadata.resource_version = Some(version);
                self.api.replace(&self.name, &PostParams::default(), &cm).await?
            }
        };
        self.resource_version = written.resource_version();
        Ok(())
    }

    /// The last report matters most: retried for a while, re-reading the version on conflict.
    async fn write_final(&mut self, report: &RunnerReport) -> Result<(), RunnerError> {
        let mut attempt = 0;
        loop {
            match self.write(report).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < 10 => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "could not write the final report; retrying");
                    if let Ok(Some(cm)) = self.api.get_opt(&self.name).await {
                        self.resource_version = cm.resource_version();
                    }
                    tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
