//! The load of a local run, sent from this process: the engine started on a whole Unix second,
//! its sealed seconds folded into a recorder as they come, and the figures of any window read
//! back from the recorder (exact percentiles over all its requests). A drill's world and an
//! autoscaling check's world both send their load through it.

use std::{
    ops::Range,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::load::{LoadModel, LoadProfile},
    engine::{self, EngineConfig, EngineError, RunOutcome, Tick},
    load::{Figures, LoadRecorder, RunnerShare, stages::Plan},
    trial::drive::WorldError,
};

/// The least time between deciding to start and the first second of load: the engine's tasks
/// are spawned and the caller is back on its clock before the first request is due.
const START_LEAD: Duration = Duration::from_millis(300);

/// What the load measured so far, shared with the task that folds the engine's seconds.
#[derive(Debug)]
struct Collected {
    recorder: LoadRecorder,
    /// Each sealed second's figures (index = second of the load).
    seconds: Vec<Option<Figures>>,
}

/// The load that is running: the engine and the task folding its seconds.
#[derive(Debug)]
struct Running {
    engine: JoinHandle<Result<RunOutcome, EngineError>>,
    collector: JoinHandle<()>,
    stop: CancellationToken,
    /// When the plan's load ends by itself.
    ends: Instant,
}

/// One load at a time, and what it measured.
#[derive(Debug)]
pub struct LocalLoad {
    collected: Arc<Mutex<Collected>>,
    running: Option<Running>,
    /// The model and levels of the load measured last: the target rate of its figures.
    model: LoadModel,
    plan: Option<Plan>,
    /// The engine's error, if it failed: the measurements are then incomplete.
    engine_error: Option<String>,
}

impl LocalLoad {
    pub fn new() -> Result<LocalLoad, WorldError> {
        Ok(LocalLoad {
            collected: Arc::new(Mutex::new(Collected { recorder: recorder()?, seconds: Vec::new() })),
            running: None,
            model: LoadModel::Open,
            plan: None,
            engine_error: None,
        })
    }

    /// Starts `profile`'s load at the levels of `plan` against `url`, and returns the moment
    /// its second 0 began (a whole Unix second, so second `s` is the proxies' slot `start + s`).
    pub async fn start(&mut self, profile: &LoadProfile, plan: &Plan, url: &str) -> Result<Timestamp, WorldError> {
        // One run at a time: what an earlier run measured is not this one's.
        *self.collected() = Collected { recorder: recorder()?, seconds: Vec::new() };
        self.engine_error = None;
        self.model = profile.model;
        self.plan = Some(plan.clone());
        // The next whole Unix second at least START_LEAD away.
        let now = Timestamp::now();
        let mut first = now.as_second() + 1;
        let until = |second: i64| {
            Timestamp::from_second(second)
                .ok()
                .and_then(|t| Duration::try_from(t.duration_since(now)).ok())
                .unwrap_or_default()
        };
        if until(first) < START_LEAD {
            first += 1;
        }
        let start = Instant::now() + until(first);
        let load_start =
            Timestamp::from_second(first).map_err(|e| WorldError(format!("cannot name the start: {e}")))?;
        let config = EngineConfig::from_profile(profile, url, plan.clone(), RunnerShare::SINGLE);
        let (ticks, tick_rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let rate = TargetRate { model: profile.model, plan: plan.clone() };
        let collector = tokio::spawn(collect(rate, tick_rx, Arc::clone(&self.collected)));
        let engine = tokio::spawn(engine::run(config, start, Some(ticks), stop.clone()));
        tracing::info!(url = %url, start = %load_start, "local load starts");
        self.running = Some(Running { engine, collector, stop, ends: start + plan.total_duration() });
        sleep_until(start).await;
        Ok(load_start)
    }

    /// Stops the load: at once when it is stopped early (an abort); at its plan's end it only
    /// waits for the engine's last second.
    pub async fn stop(&mut self) {
        let Some(running) = self.running.take() else { return };
        if Instant::now() + Duration::from_millis(500) < running.ends {
            running.stop.cancel();
        }
        match running.engine.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.engine_error = Some(format!("the load engine failed: {e}")),
            Err(e) => self.engine_error = Some(format!("the load engine stopped unexpectedly: {e}")),
        }
        // The engine dropped its sender: the collector ends once it has folded the last tick.
        if let Err(e) = running.collector.await {
            self.engine_error.get_or_insert(format!("folding the measurements failed: {e}"));
        }
    }

    /// The engine's failure, once stopped: the measurements are then incomplete.
    pub fn error(&self) -> Option<&str> {
        self.engine_error.as_deref()
    }

    /// Each second sealed so far (index = second of the load).
    pub fn seconds(&self) -> Vec<Option<Figures>> {
        self.collected().seconds.clone()
    }

    /// The figures of the seconds `seconds` as one window, against the rate the plan asked for.
    pub fn figures(&self, seconds: Range<u64>) -> Result<Figures, WorldError> {
        let rate = self.plan.as_ref().and_then(|p| p.target_rate(self.model, seconds.start, seconds.end));
        self.collected()
            .recorder
            .figures(seconds.clone(), rate)
            .map_err(|e| WorldError(format!("the figures of seconds {seconds:?}: {e}")))
    }

    fn collected(&self) -> MutexGuard<'_, Collected> {
        // A panic while folding leaves plain values behind; they are still the best we have.
        self.collected.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn recorder() -> Result<LoadRecorder, WorldError> {
    LoadRecorder::new().map_err(|e| WorldError(format!("cannot record: {e}")))
}

/// The rate a load asks for, second by second.
struct TargetRate {
    model: LoadModel,
    plan: Plan,
}

/// Folds the engine's sealed seconds into `collected` until the engine stops sending.
async fn collect(rate: TargetRate, mut ticks: mpsc::Receiver<Tick>, collected: Arc<Mutex<Collected>>) {
    while let Some(tick) = ticks.recv().await {
        let mut collected = collected.lock().unwrap_or_else(PoisonError::into_inner);
        for (second, bucket) in &tick.sealed {
            if let Err(error) = collected.recorder.add_second(*second, bucket) {
                tracing::warn!(second, %error, "a sealed second could not be recorded");
                continue;
            }
            let figures = bucket.figures(1.0, rate.plan.target_rate(rate.model, *second, second + 1)).figures;
            let index = usize::try_from(*second).unwrap_or(usize::MAX);
            if index >= collected.seconds.len() {
                collected.seconds.resize(index + 1, None);
            }
            collected.seconds[index] = Some(figures);
        }
    }
}
