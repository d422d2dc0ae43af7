//! The cluster environment of a judged run: the [`World`] the operator conducts a Drill in. The
//! load is a child LoadTest (its runner pods measure and report), each fault a child
//! ServiceFault or PodKill. Every child is owned by the Drill and labelled with its UID, and each
//! ends by itself at its own expiry, so a conductor that is gone leaves no fault behind.
//! Reverting a fault is the child's abort annotation: its controller restores the Service
//! exactly and keeps the child's record of what it did.

use std::{collections::BTreeMap, ops::Range, time::Duration};

use k8s_openapi::{
    api::core::v1::Service,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, sleep};

use super::build::{self, TRIAL_LABEL};
use crate::{
    api::{Drill, Experiment, LoadTest, PodKill, ServiceFault, figures::PhaseName, trial::FaultWindow},
    controller::{
        ABORT_ANNOTATION, abort_requested,
        loadtest::{
            build::{REPORT_GRACE, START_TIMEOUT},
            read_reports,
        },
    },
    load::{
        Figures,
        protocol::{MergedRun, Point, RUN_LABEL, window_figures},
    },
    trial::{
        drive::{World, WorldError, at},
        judge::{Effect, Measured},
        plan::{FaultAction, PlannedFault, TrialPlan},
    },
};

/// Runner reports are replaced every few seconds: reading them more often only costs the API
/// server.
const READ_EVERY: Duration = Duration::from_secs(1);
/// How often a child's status is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(500);
/// The longest wait for a ServiceFault to inject (its proxy pods must become Ready) or revert.
const CHILD_WAIT: Duration = Duration::from_secs(60);

/// The load as it runs: its LoadTest (with its UID, for the reports) and its window.
#[derive(Debug)]
struct LoadRun {
    load_test: LoadTest,
    plan: TrialPlan,
    starts_at: Timestamp,
    ends_at: Timestamp,
}

/// The cluster world of one Drill.
pub struct ClusterWorld {
    client: Client,
    ns: String,
    drill: Drill,
    load: Option<LoadRun>,
    points: Vec<Point>,
    sealed: u64,
    read_at: Option<Instant>,
    asked_at: Option<Instant>,
    /// The last status read of each ServiceFault child, by fault name: its figures stay readable
    /// after its proxy is gone.
    faults_seen: BTreeMap<String, ServiceFault>,
}

fn kube_error(what: &str) -> impl Fn(kube::Error) -> WorldError + '_ {
    move |e| WorldError(format!("{what}: {e}"))
}

impl ClusterWorld {
    pub fn new(client: Client, drill: Drill) -> Result<ClusterWorld, WorldError> {
        let ns = drill.namespace().ok_or_else(|| WorldError("the Drill has no namespace".into()))?;
        Ok(ClusterWorld {
            client,
            ns,
            drill,
            load: None,
            points: Vec::new(),
            sealed: 0,
            read_at: None,
            asked_at: None,
            faults_seen: BTreeMap::new(),
        })
    }

    fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates `child`, or finds it already there from this run (an answer lost on the way back).
    async fn create<K: Experiment>(&self, child: &K) -> Result<K, WorldError> {
        let api = self.api::<K>();
        let name = child.name_any();
        match api.create(&PostParams::default(), child).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let found = api.get(&name).await.map_err(kube_error(&name))?;
                if found.labels().get(TRIAL_LABEL) == child.labels().get(TRIAL_LABEL) {
                    Ok(found)
                } else {
                    Err(WorldError(format!("a {} named {name} already exists and is not this Drill's", K::KIND)))
                }
            }
            Err(e) => Err(WorldError(format!("cannot create the {} {name}: {e}", K::KIND))),
        }
    }

    /// Reads the runner reports again if the last reading is older than [`READ_EVERY`]
    /// (`fresh`: whatever its age).
    async fn read(&mut self, fresh: bool) -> Result<(), WorldError> {
        if !fresh && self.read_at.is_some_and(|t| t.elapsed() < READ_EVERY) {
            return Ok(());
        }
        let Some(load) = &self.load else { return Ok(()) };
        let uid = load.load_test.uid().unwrap_or_default();
        let reports = read_reports(&self.client, &self.ns, &format!("{RUN_LABEL}={uid}"), &load.load_test)
            .await
            .map_err(|e| WorldError(format!("the load's runner reports: {e}")))?;
        let merged =
            MergedRun::merge(reports.values()).map_err(|e| WorldError(format!("the load's runner reports: {e}")))?;
        self.points = merged.points;
        self.sealed = merged.sealed;
        self.read_at = Some(Instant::now());
        Ok(())
    }

    fn per_second(&self, plan: &TrialPlan) -> Vec<Option<Figures>> {
        let mut seconds = Vec::new();
        for point in self.points.iter().filter(|p| p.second() < self.sealed) {
            let (from, to) = (point.second(), point.second() + u64::from(point.seconds().max(1)));
            let figures = point.figures(plan.target_rate(from, to));
            for s in from..to.min(self.sealed) {
                let i = usize::try_from(s).unwrap_or(usize::MAX);
                if i >= seconds.len() {
                    seconds.resize(i + 1, None);
                }
                seconds[i] = Some(figures.clone());
            }
        }
        seconds
    }

    /// Asks a child to end now (its abort annotation) unless it has ended.
    async fn abort_child<K: Experiment>(&self, name: &str) -> Result<(), WorldError> {
        let api = self.api::<K>();
        let Some(child) = api.get_opt(name).await.map_err(kube_error(name))? else { return Ok(()) };
        if child.run_status().and_then(|r| r.phase).is_some_and(|p| p.is_terminal()) || abort_requested(&child) {
            return Ok(());
        }
        let patch = serde_json::json!({ "metadata": { "annotations": { ABORT_ANNOTATION: "true" } } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(kube_error(name))?;
        Ok(())
    }

    /// Waits until `done` holds for the child `name` (or it is gone: `None`), at most `limit`.
    async fn wait_for<K: Experiment + DeserializeOwned>(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&K) -> bool,
    ) -> Result<Option<K>, WorldError> {
        let api = self.api::<K>();
        let deadline = Instant::now() + limit;
        loop {
            let child = api.get_opt(name).await.map_err(kube_error(name))?;
            match child {
                None => return Ok(None),
                Some(c) if done(&c) => return Ok(Some(c)),
                Some(_) if Instant::now() >= deadline => {
                    return Err(WorldError(format!(
                        "the {} {name} did not {what} within {}s",
                        K::KIND,
                        limit.as_secs()
                    )));
                }
                Some(_) => sleep(POLL).await,
            }
        }
    }

    /// Ends every child of this run that is still going: what a run that stops without its
    /// conductor (an error, a deleted Drill, an operator restart) does.
    pub async fn end_children(&self) -> Result<(), WorldError> {
        let uid = self.drill.uid().unwrap_or_default();
        let params = ListParams::default().labels(&format!("{TRIAL_LABEL}={uid}"));
        let faults = self.api::<ServiceFault>().list(&params).await.map_err(kube_error("ServiceFaults"))?;
        for name in faults.items.iter().map(ResourceExt::name_any) {
            self.abort_child::<ServiceFault>(&name).await?;
        }
        let kills = self.api::<PodKill>().list(&params).await.map_err(kube_error("PodKills"))?;
        for name in kills.items.iter().map(ResourceExt::name_any) {
            self.abort_child::<PodKill>(&name).await?;
        }
        let loads = self.api::<LoadTest>().list(&params).await.map_err(kube_error("LoadTests"))?;
        for name in loads.items.iter().map(ResourceExt::name_any) {
            self.abort_child::<LoadTest>(&name).await?;
        }
        Ok(())
    }

    fn now_is_before(&self, offset: u64) -> bool {
        self.load.as_ref().is_some_and(|l| {
            Timestamp::now() + SignedDuration::from_millis(500) < at(l.starts_at, Duration::from_secs(offset))
        })
    }
}

fn ended<K: Experiment>(child: &K) -> bool {
    child.run_status().and_then(|r| r.phase).is_some_and(|p| p.is_terminal())
}

fn message_of<K: Experiment>(child: &K) -> String {
    child.run_status().and_then(|r| r.message.clone()).unwrap_or_else(|| "no message".into())
}

impl World for ClusterWorld {
    async fn prepare(&mut self, plan: &TrialPlan) -> Result<(), WorldError> {
        let services = self.api::<Service>();
        let mut needed: Vec<(String, String)> = Vec::new();
        if let Some(target) = &plan.load.target.service {
            needed.push(("load.target.service".into(), target.name.clone()));
        }
        for fault in &plan.faults {
            if let Some(injection) = fault.service() {
                needed.push((format!("fault {}", fault.name()), injection.service.clone()));
            }
        }
        for (what, name) in needed {
            if services.get_opt(&name).await.map_err(kube_error(&name))?.is_none() {
                return Err(WorldError(format!(
                    "{what}: the Service {name:?} does not exist in namespace {}",
                    self.ns
                )));
            }
        }
        Ok(())
    }

    async fn start_load(&mut self, plan: &TrialPlan) -> Result<Timestamp, WorldError> {
        let wanted = build::load_test(&self.drill, plan).map_err(WorldError)?;
        let name = wanted.name_any();
        let created = self.create(&wanted).await?;
        // The runners start together once every runner pod runs (the LoadTest's `loadStartsAt`).
        let started = self
            .wait_for::<LoadTest>(&name, START_TIMEOUT + Duration::from_secs(30), "start its runners", |lt| {
                ended(lt) || lt.status.as_ref().is_some_and(|s| s.load_starts_at.is_some())
            })
            .await?
            .ok_or_else(|| WorldError(format!("the load's LoadTest {name} was deleted before it started")))?;
        let Some(starts_at) = started.status.as_ref().and_then(|s| s.load_starts_at.as_ref()).map(|t| t.0) else {
            return Err(WorldError(format!(
                "the load's LoadTest {name} ended before it started: {}",
                message_of(&started)
            )));
        };
        let ends_at = at(starts_at, Duration::from_secs(plan.timeline.load_seconds()));
        tracing::info!(drill = %self.drill.name_any(), load_test = %name, start = %starts_at, "the drill's load starts");
        let load_test = if created.uid().is_some() { created } else { started };
        self.load = Some(LoadRun { load_test, plan: plan.clone(), starts_at, ends_at });
        if let Ok(wait) = Duration::try_from(starts_at.duration_since(Timestamp::now())) {
            sleep(wait).await;
        }
        Ok(starts_at)
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        let Some(load) = &self.load else { return Ok(()) };
        let name = load.load_test.name_any();
        if Timestamp::now() + SignedDuration::from_millis(500) < load.ends_at {
            self.abort_child::<LoadTest>(&name).await?;
        }
        let Some(lt) = self.wait_for::<LoadTest>(&name, REPORT_GRACE + Duration::from_secs(30), "end", ended).await?
        else {
            return Err(WorldError(format!("the load's LoadTest {name} was deleted: its reports are gone")));
        };
        if lt.status.as_ref().and_then(|s| s.run.phase) == Some(crate::api::Phase::Failed) {
            return Err(WorldError(format!("the load's LoadTest {name} failed: {}", message_of(&lt))));
        }
        Ok(())
    }

    async fn inject(&mut self, fault: &PlannedFault, expires_at: Timestamp) -> Result<(), WorldError> {
        let name = build::fault_name(&self.drill, fault.name());
        match &fault.action {
            FaultAction::Service(injection) => {
                let child = build::service_fault(&self.drill, fault.name(), injection, Timestamp::now(), expires_at)
                    .map_err(WorldError)?;
                self.create(&child).await?;
                let limit = Duration::try_from(expires_at.duration_since(Timestamp::now())).unwrap_or_default();
                let seen = self
                    .wait_for::<ServiceFault>(&name, limit.min(CHILD_WAIT), "inject", |sf| {
                        ended(sf) || sf.status.as_ref().is_some_and(|s| s.injected_at.is_some())
                    })
                    .await?
                    .ok_or_else(|| WorldError(format!("the ServiceFault {name} was deleted before it injected")))?;
                let injected = seen.status.as_ref().is_some_and(|s| s.injected_at.is_some());
                let message = message_of(&seen);
                self.faults_seen.insert(fault.name().to_owned(), seen);
                if !injected {
                    return Err(WorldError(format!("the ServiceFault {name} ended without injecting: {message}")));
                }
                Ok(())
            }
            FaultAction::PodKill(kill) => {
                let child = build::pod_kill(&self.drill, fault.name(), kill, fault.slot.end - fault.slot.start)
                    .map_err(WorldError)?;
                self.create(&child).await?;
                let seen = self
                    .wait_for::<PodKill>(&name, CHILD_WAIT, "start", |pk| {
                        pk.status.as_ref().and_then(|s| s.run.phase).is_some_and(|p| p != crate::api::Phase::Pending)
                    })
                    .await?
                    .ok_or_else(|| WorldError(format!("the PodKill {name} was deleted before it started")))?;
                if seen.status.as_ref().and_then(|s| s.run.phase) == Some(crate::api::Phase::Failed) {
                    return Err(WorldError(format!("the PodKill {name} was refused: {}", message_of(&seen))));
                }
                Ok(())
            }
        }
    }

    async fn revert(&mut self, fault: &PlannedFault) -> Result<(), WorldError> {
        let name = build::fault_name(&self.drill, fault.name());
        match &fault.action {
            FaultAction::Service(_) => {
                self.abort_child::<ServiceFault>(&name).await?;
                let reverted = self
                    .wait_for::<ServiceFault>(&name, CHILD_WAIT, "revert", |sf| {
                        ended(sf) || sf.status.as_ref().is_some_and(|s| s.reverted_at.is_some())
                    })
                    .await?;
                if let Some(sf) = reverted {
                    self.faults_seen.insert(fault.name().to_owned(), sf);
                }
                Ok(())
            }
            // A kill cannot be undone; repeats stop at the slot's end by themselves, and an
            // early end (an abort) stops them now.
            FaultAction::PodKill(_) if self.now_is_before(fault.slot.end) => self.abort_child::<PodKill>(&name).await,
            FaultAction::PodKill(_) => Ok(()),
        }
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        if let Err(error) = self.read(false).await {
            // The abort rules look again on the next tick; the judgement reads afresh.
            tracing::warn!(drill = %self.drill.name_any(), %error, "runner reports not read");
        }
        match &self.load {
            Some(load) => self.per_second(&load.plan),
            None => Vec::new(),
        }
    }

    async fn stop_requested(&mut self) -> Option<String> {
        if self.asked_at.is_some_and(|t| t.elapsed() < READ_EVERY) {
            return None;
        }
        self.asked_at = Some(Instant::now());
        match self.api::<Drill>().get_opt(&self.drill.name_any()).await {
            Ok(None) => Some("the Drill was deleted".into()),
            Ok(Some(d)) if d.meta().deletion_timestamp.is_some() => Some("the Drill was deleted".into()),
            Ok(Some(d)) if abort_requested(&d) => Some(format!("the {ABORT_ANNOTATION} annotation")),
            Ok(Some(_)) => None,
            Err(error) => {
                tracing::warn!(drill = %self.drill.name_any(), %error, "cannot read the Drill");
                None
            }
        }
    }

    async fn measured(&mut self, plan: &TrialPlan) -> Result<Measured, WorldError> {
        self.read(true).await?;
        let mut phases = Vec::new();
        for window in plan.timeline.windows.iter().filter(|w| w.name != PhaseName::Cooldown) {
            let end = window.end.min(self.sealed);
            if end <= window.start {
                continue;
            }
            let figures = window_figures(&self.points, window.start..end, plan.target_rate(window.start, end))
                .map_err(|e| WorldError(format!("the {:?} phase's figures: {e}", window.name)))?;
            if let Some(figures) = figures {
                phases.push((window.name, figures));
            }
        }
        let mut seconds = self.per_second(plan);
        seconds.resize(usize::try_from(plan.timeline.load_seconds()).unwrap_or(usize::MAX).max(seconds.len()), None);
        Ok(Measured { phases, seconds })
    }

    async fn figures_over(&mut self, plan: &TrialPlan, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        window_figures(&self.points, seconds.clone(), plan.target_rate(seconds.start, seconds.end))
            .map_err(|e| WorldError(format!("the figures of seconds {seconds:?}: {e}")))
    }

    async fn effect(&mut self, fault: &PlannedFault, _: &FaultWindow) -> Result<Effect, WorldError> {
        let name = build::fault_name(&self.drill, fault.name());
        let (observed, evidence) = match &fault.action {
            FaultAction::Service(injection) => {
                let seen = match self.api::<ServiceFault>().get_opt(&name).await.map_err(kube_error(&name))? {
                    Some(sf) => Some(sf),
                    None => self.faults_seen.get(fault.name()).cloned(),
                };
                let stats = seen.as_ref().and_then(|sf| sf.status.as_ref()).and_then(|s| s.proxy.clone());
                match stats {
                    Some(s) => {
                        let faulted: u64 = s.faults_applied.values().sum();
                        (
                            faulted > 0,
                            format!(
                                "{} requests crossed the proxy in front of {} ({name}), {faulted} faulted",
                                s.requests, injection.service
                            ),
                        )
                    }
                    None => (
                        false,
                        format!(
                            "the proxy in front of {} ({name}) was never read: {}",
                            injection.service,
                            seen.as_ref().map_or_else(|| "the ServiceFault is gone".to_owned(), message_of)
                        ),
                    ),
                }
            }
            FaultAction::PodKill(_) => {
                let pk = self.api::<PodKill>().get_opt(&name).await.map_err(kube_error(&name))?;
                let killed = pk.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.killed).unwrap_or(0);
                let evidence = match &pk {
                    Some(p) if killed > 0 => {
                        let pods: Vec<&str> =
                            p.status.iter().flat_map(|s| &s.targets).map(|t| t.pod.as_str()).collect();
                        format!("{killed} pod(s) killed by {name}: {}", pods.join(", "))
                    }
                    Some(p) => format!("no pod was killed by {name}: {}", message_of(p)),
                    None => format!("the PodKill {name} is gone"),
                };
                (killed > 0, evidence)
            }
        };
        Ok(Effect { fault: fault.name().to_owned(), observed, evidence })
    }

    async fn dependency_calls(
        &mut self,
        fault: &PlannedFault,
        _: Timestamp,
        _: u64,
    ) -> Result<Vec<Option<u64>>, WorldError> {
        Err(WorldError(format!(
            "fault {}: the calls reaching a dependency are read on loopback only (a CircuitBreakerTrial runs locally)",
            fault.name()
        )))
    }
}
