//! The local environment of judged runs: load sent from this process, service faults put into
//! chaoslab proxies on loopback, pod kills done on the lab's pods (`pods`), Services known by
//! their base URLs. The conductor of `trial::drive` runs
//! the same plan here as in a cluster, so a drill file is judged alike on a laptop.
//!
//! Time: the load starts on a whole Unix second, so second `s` of the load is the proxies'
//! per-second slot `start + s`, and the calls a dependency received are read second by second.

pub mod lab;
mod podkill;
pub mod pods;
mod process;

use std::{
    collections::BTreeMap,
    ops::Range,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::jiff::Timestamp;
use tokio::{
    sync::mpsc,
    task::JoinHandle,
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;

use self::{podkill::LocalPodKill, pods::LocalPods};

use crate::{
    api::{figures::PhaseName, trial::FaultWindow},
    load::{
        Figures, Recorder, RunnerShare,
        engine::{self, EngineConfig, EngineError, RunOutcome, Tick},
        service_url,
    },
    proxy::{FaultSet, StatsReport, admin_client},
    trial::{
        drive::{World, WorldError},
        judge::{Effect, Measured},
        plan::{FaultAction, PlannedFault, TrialPlan},
    },
};

/// The least time between deciding to start and the first second of load: the engine's tasks
/// are spawned and the conductor is back on its clock before the first request is due.
const START_LEAD: Duration = Duration::from_millis(300);

/// Where a plan's names are on loopback.
#[derive(Clone, Debug, Default)]
pub struct LocalTargets {
    /// The base URL of each Service by name (`http://127.0.0.1:8081`): where load with a
    /// `service` target is sent (its `port` is ignored: a local service has one address).
    pub services: BTreeMap<String, String>,
    /// The admin address (`127.0.0.1:9901`) of the proxy in front of each Service, by the
    /// Service's name: where its faults go and its calls are counted.
    pub proxies: BTreeMap<String, String>,
    /// The seed of the proxies' dice and of the pod kills' choices (unless a kill names its
    /// own), kept in the record so a run can be repeated.
    pub seed: u64,
    /// The Services' pods, where pod kills go; none when the Services are not the lab's.
    pub pods: LocalPods,
}

/// What the load measured so far, shared with the task that folds the engine's seconds.
#[derive(Debug)]
struct Collected {
    recorder: Recorder,
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

/// Judged runs against processes on loopback.
#[derive(Debug)]
pub struct LocalWorld {
    targets: LocalTargets,
    collected: Arc<Mutex<Collected>>,
    running: Option<Running>,
    /// The engine's error, if it failed: the run's measurements are then incomplete.
    engine_error: Option<String>,
    /// The pod kills injected, by fault name.
    kills: BTreeMap<String, LocalPodKill>,
}

impl LocalWorld {
    pub fn new(targets: LocalTargets) -> Result<LocalWorld, WorldError> {
        let recorder = Recorder::new().map_err(|e| WorldError(format!("cannot record: {e}")))?;
        Ok(LocalWorld {
            targets,
            collected: Arc::new(Mutex::new(Collected { recorder, seconds: Vec::new() })),
            running: None,
            engine_error: None,
            kills: BTreeMap::new(),
        })
    }

    pub fn targets(&self) -> &LocalTargets {
        &self.targets
    }

    /// The URL the plan's load goes to.
    fn load_url(&self, plan: &TrialPlan) -> Result<String, WorldError> {
        let target = &plan.load.target;
        match (&target.url, &target.service) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(service)) => {
                let base = self.targets.services.get(&service.name).ok_or_else(|| {
                    WorldError(format!(
                        "load.target.service {:?} is not running here: no base URL for it (local services: {})",
                        service.name,
                        names(&self.targets.services)
                    ))
                })?;
                Ok(service_url(base, service.path.as_deref()))
            }
            (None, None) => Err(WorldError("load.target names neither a url nor a service".into())),
        }
    }

    /// The admin address of the proxy that carries `fault`.
    fn proxy_of(&self, fault: &PlannedFault) -> Result<&str, WorldError> {
        match &fault.action {
            FaultAction::Service(injection) => {
                self.targets.proxies.get(&injection.service).map(String::as_str).ok_or_else(|| {
                    WorldError(format!(
                        "fault {}: no proxy in front of the Service {:?} here (local proxies: {})",
                        fault.name(),
                        injection.service,
                        names(&self.targets.proxies)
                    ))
                })
            }
            FaultAction::PodKill(_) => {
                Err(WorldError(format!("fault {}: a pod kill has no proxy to read", fault.name())))
            }
        }
    }

    async fn stats(&self, fault: &PlannedFault) -> Result<StatsReport, WorldError> {
        let admin = self.proxy_of(fault)?;
        admin_client::get_stats(admin)
            .await
            .map_err(|e| WorldError(format!("fault {}: cannot read the proxy's stats: {e}", fault.name())))
    }

    fn collected(&self) -> std::sync::MutexGuard<'_, Collected> {
        // A panic while folding leaves plain values behind; they are still the best we have.
        self.collected.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn names(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() { "none".to_owned() } else { map.keys().cloned().collect::<Vec<_>>().join(", ") }
}

/// The rate the open model asks for at the middle of `[from, to)` seconds; `None` for the
/// closed model.
/// Folds the engine's sealed seconds into `collected` until the engine stops sending.
async fn collect(plan: TrialPlan, mut ticks: mpsc::Receiver<Tick>, collected: Arc<Mutex<Collected>>) {
    while let Some(tick) = ticks.recv().await {
        let mut collected = collected.lock().unwrap_or_else(PoisonError::into_inner);
        for (second, bucket) in &tick.sealed {
            if let Err(error) = collected.recorder.add_second(*second, bucket) {
                tracing::warn!(second, %error, "a sealed second could not be recorded");
                continue;
            }
            let figures = bucket.figures(1.0, plan.target_rate(*second, second + 1)).figures;
            let index = usize::try_from(*second).unwrap_or(usize::MAX);
            if index >= collected.seconds.len() {
                collected.seconds.resize(index + 1, None);
            }
            collected.seconds[index] = Some(figures);
        }
    }
}

impl World for LocalWorld {
    async fn prepare(&mut self, plan: &TrialPlan) -> Result<(), WorldError> {
        self.load_url(plan)?;
        for fault in &plan.faults {
            if let FaultAction::PodKill(kill) = &fault.action {
                if self.targets.pods.is_empty() {
                    return Err(WorldError(format!(
                        "fault {}: no pods run here, only Services at fixed addresses: a pod kill needs the lab's \
                         topology (`chaoslab lab`) or a cluster (--kube)",
                        fault.name()
                    )));
                }
                self.targets
                    .pods
                    .matching(&kill.selector)
                    .map_err(|e| WorldError(format!("fault {}: podKill.{e}", fault.name())))?;
                continue;
            }
            let admin = self.proxy_of(fault)?;
            let stats = admin_client::get_stats(admin).await;
            stats.map_err(|e| {
                WorldError(format!("fault {}: the proxy at {admin} does not answer: {e}", fault.name()))
            })?;
        }
        Ok(())
    }

    async fn start_load(&mut self, plan: &TrialPlan) -> Result<Timestamp, WorldError> {
        let url = self.load_url(plan)?;
        // A world serves one run at a time: what an earlier run measured is not this one's.
        let recorder = Recorder::new().map_err(|e| WorldError(format!("cannot record: {e}")))?;
        *self.collected() = Collected { recorder, seconds: Vec::new() };
        self.engine_error = None;
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
        let config = EngineConfig::from_profile(&plan.load, &url, plan.load_plan.clone(), RunnerShare::SINGLE);
        let (ticks, tick_rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let collector = tokio::spawn(collect(plan.clone(), tick_rx, Arc::clone(&self.collected)));
        let engine = tokio::spawn(engine::run(config, start, Some(ticks), stop.clone()));
        tracing::info!(url = %url, start = %load_start, "local load starts");
        self.running = Some(Running { engine, collector, stop, ends: start + plan.load_plan.total_duration() });
        sleep_until(start).await;
        Ok(load_start)
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        let Some(running) = self.running.take() else { return Ok(()) };
        // Stopped before the plan's end: an abort. At the end it stops by itself.
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
        Ok(())
    }

    async fn inject(&mut self, fault: &PlannedFault, expires_at: Timestamp) -> Result<(), WorldError> {
        if let FaultAction::PodKill(kill) = &fault.action {
            let left = Duration::try_from(expires_at.duration_since(Timestamp::now())).unwrap_or_default();
            let seed = kill.seed.map_or(self.targets.seed, i64::cast_unsigned);
            let started = LocalPodKill::start(&self.targets.pods, kill, seed, left)
                .map_err(|e| WorldError(format!("fault {}: {e}", fault.name())))?;
            self.kills.insert(fault.name().to_owned(), started);
            return Ok(());
        }
        let admin = self.proxy_of(fault)?;
        let Some(injection) = fault.service() else {
            return Err(WorldError(format!("fault {}: not a service fault", fault.name())));
        };
        let set =
            FaultSet { faults: injection.faults.clone(), expires_at, starts_at: None, seed: Some(self.targets.seed) };
        admin_client::put_faults(admin, &set)
            .await
            .map_err(|e| WorldError(format!("fault {}: the proxy refused the faults: {e}", fault.name())))
    }

    async fn revert(&mut self, fault: &PlannedFault) -> Result<(), WorldError> {
        if let FaultAction::PodKill(_) = &fault.action {
            // A kill cannot be undone; the rounds still due are not done.
            if let Some(kill) = self.kills.get_mut(fault.name()) {
                kill.stop();
            }
            return Ok(());
        }
        let admin = self.proxy_of(fault)?;
        admin_client::clear_faults(admin)
            .await
            .map_err(|e| WorldError(format!("fault {}: cannot clear the proxy's faults: {e}", fault.name())))
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        self.collected().seconds.clone()
    }

    async fn measured(&mut self, plan: &TrialPlan) -> Result<Measured, WorldError> {
        if let Some(error) = &self.engine_error {
            return Err(WorldError(error.clone()));
        }
        let collected = self.collected();
        let mut phases = Vec::new();
        // A run stopped early (an abort) measured only the seconds up to the stop: a phase's
        // figures cover what was measured of it, and a phase never reached has none.
        let measured_to = collected.seconds.len() as u64;
        for window in plan.timeline.windows.iter().filter(|w| w.name != PhaseName::Cooldown) {
            let end = window.end.min(measured_to);
            if end <= window.start {
                continue;
            }
            let figures = collected
                .recorder
                .figures(window.start..end, plan.target_rate(window.start, end))
                .map_err(|e| WorldError(format!("the {:?} phase's figures: {e}", window.name)))?;
            phases.push((window.name, figures));
        }
        let mut seconds = collected.seconds.clone();
        seconds.resize(usize::try_from(plan.timeline.load_seconds()).unwrap_or(usize::MAX).max(seconds.len()), None);
        Ok(Measured { phases, seconds })
    }

    async fn figures_over(&mut self, plan: &TrialPlan, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        let collected = self.collected();
        let rate = plan.target_rate(seconds.start, seconds.end);
        let figures = collected
            .recorder
            .figures(seconds.clone(), rate)
            .map_err(|e| WorldError(format!("the figures of seconds {seconds:?}: {e}")))?;
        Ok((figures.total > 0).then_some(figures))
    }

    async fn effect(&mut self, fault: &PlannedFault, window: &FaultWindow) -> Result<Effect, WorldError> {
        if let FaultAction::PodKill(_) = &fault.action {
            let (observed, evidence) = match self.kills.get(fault.name()) {
                Some(kill) => kill.evidence(),
                None => (false, "the pod kill never ran".to_owned()),
            };
            return Ok(Effect { fault: fault.name().to_owned(), observed, evidence });
        }
        let stats = self.stats(fault).await?;
        let from = window.started_at.as_ref().map_or(i64::MAX, |t| t.0.as_second());
        let to = window.reverted_at.as_ref().map_or(i64::MAX, |t| t.0.as_second());
        let (mut requests, mut faulted) = (0, 0);
        for second in &stats.per_second {
            let s = i64::try_from(second.second).unwrap_or(i64::MAX);
            if (from..=to).contains(&s) {
                requests += second.requests;
                faulted += second.faulted;
            }
        }
        let service = fault.service().map_or("", |i| i.service.as_str());
        let evidence = if requests == 0 {
            format!("no request crossed the proxy in front of {service} while the fault was on")
        } else {
            format!(
                "{requests} requests crossed the proxy in front of {service} while the fault was on, {faulted} faulted"
            )
        };
        Ok(Effect { fault: fault.name().to_owned(), observed: faulted > 0, evidence })
    }

    async fn dependency_calls(
        &mut self,
        fault: &PlannedFault,
        load_start: Timestamp,
        seconds: u64,
    ) -> Result<Vec<Option<u64>>, WorldError> {
        let stats = self.stats(fault).await?;
        // Calls that reached the proxy, faulted or not: what the caller sent its dependency.
        let by_second: BTreeMap<u64, u64> = stats.per_second.iter().map(|s| (s.second, s.requests)).collect();
        // The report lists every second from its first to now; one outside it was not seen.
        Ok(crate::trial::breaker::calls_per_load_second(&by_second, load_start, seconds))
    }
}
