//! The cluster environment of a Drill or a CircuitBreakerTrial: the [`World`] the operator
//! conducts it in. The load is a child LoadTest ([`ChildLoad`]), each fault a child ServiceFault
//! or PodKill. Each child ends by itself at its own expiry, so a conductor that is gone leaves no
//! fault behind. Reverting a fault is the child's abort annotation: its controller restores the
//! Service exactly and keeps the child's record of what it did.
//!
//! A breaker trial needs the calls that reach its dependency in every second, before and after
//! the fault too: its ServiceFault is created as soon as the load starts, with its faults only
//! in the inject window (`faultsStartAt`, `faultsFor`), and its proxy pods' per-second counts
//! are read before it ends.

use std::{collections::BTreeMap, marker::PhantomData, ops::Range, time::Duration};

use k8s_openapi::{
    api::core::v1::{Pod, Service},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, ResourceExt, api::ListParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    ConductedRun, build,
    children::{Children, ended, kube_error, message_of},
    load::ChildLoad,
};
use crate::{
    api::{PodKill, ServiceFault, figures::PhaseName, trial::FaultWindow},
    controller::{
        ABORT_ANNOTATION,
        servicefault::{admin::get_stats, build::PROXY_LABEL},
    },
    load::Figures,
    trial::{
        drive::{EXPIRY_MARGIN, World, WorldError, at},
        judge::{Effect, Measured},
        plan::{FaultAction, PlannedFault, TrialPlan},
    },
};

/// How often the Drill is read for a person's stop (the abort annotation, a deletion).
const ASK_EVERY: Duration = Duration::from_secs(1);
/// The longest wait for a ServiceFault to inject (its proxy pods must become Ready) or revert.
const CHILD_WAIT: Duration = Duration::from_secs(60);

/// The cluster world of one run of kind `K`.
pub struct ClusterWorld<K> {
    children: Children,
    /// A breaker trial's dependency: its calls per Unix second, read from its proxy pods before
    /// they go (or why they could not be read).
    dependency: Option<Result<BTreeMap<u64, u64>, String>>,
    kind: PhantomData<K>,
    /// Cancelled when the operator stops.
    stopping: CancellationToken,
    load: Option<(ChildLoad, TrialPlan)>,
    asked_at: Option<Instant>,
    /// The last status read of each ServiceFault child, by fault name: its figures stay readable
    /// after its proxy is gone.
    faults_seen: BTreeMap<String, ServiceFault>,
}

impl<K: ConductedRun> ClusterWorld<K> {
    pub fn new(children: Children, stopping: CancellationToken) -> ClusterWorld<K> {
        ClusterWorld {
            children,
            dependency: None,
            kind: PhantomData,
            stopping,
            load: None,
            asked_at: None,
            faults_seen: BTreeMap::new(),
        }
    }

    /// Whether this run is a breaker trial (its one fault is carried for the whole load).
    fn carried(plan: &TrialPlan) -> bool {
        plan.breaker.is_some()
    }

    /// Whether the run under way is a breaker trial.
    fn carrying(&self) -> bool {
        self.load.as_ref().is_some_and(|(_, plan)| Self::carried(plan))
    }

    /// The calls that crossed the proxy of `fault`'s ServiceFault, per Unix second, summed over
    /// its pods (read directly by pod IP, as the ServiceFault controller does).
    async fn read_dependency(&self, fault: &PlannedFault) -> Result<BTreeMap<u64, u64>, String> {
        let name = self.children.owner.fault_name(fault.name());
        let sf = self.children.api::<ServiceFault>().get_opt(&name).await.map_err(|e| e.to_string())?;
        let uid = sf.and_then(|sf| sf.uid()).ok_or_else(|| format!("the ServiceFault {name} is gone"))?;
        let pods: Api<Pod> = Api::namespaced(self.children.client().clone(), &self.children.owner.namespace);
        let selector = format!("{PROXY_LABEL}={uid}");
        let listed = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?;
        let mut calls: BTreeMap<u64, u64> = BTreeMap::new();
        let mut read = 0;
        let mut errors = Vec::new();
        for pod in &listed.items {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else { continue };
            match get_stats(&ip).await {
                Ok(stats) => {
                    read += 1;
                    for second in &stats.per_second {
                        *calls.entry(second.second).or_default() += second.requests;
                    }
                }
                Err(e) => errors.push(format!("{} ({ip}): {e}", pod.name_any())),
            }
        }
        if read == 0 {
            let why = if errors.is_empty() { "no proxy pod has an address".to_owned() } else { errors.join("; ") };
            return Err(format!("the proxy in front of the dependency ({name}) could not be read: {why}"));
        }
        Ok(calls)
    }

    fn rate(plan: &TrialPlan) -> impl Fn(u64, u64) -> Option<f64> + '_ {
        |from, to| plan.target_rate(from, to)
    }

    /// Whether `offset` seconds after the load's start is still more than half a second away.
    fn before(&self, offset: u64) -> bool {
        self.load.as_ref().is_some_and(|(l, _)| {
            Timestamp::now() + SignedDuration::from_millis(500) < at(l.starts_at, Duration::from_secs(offset))
        })
    }
}

impl<K: ConductedRun> World for ClusterWorld<K> {
    async fn prepare(&mut self, plan: &TrialPlan) -> Result<(), WorldError> {
        let ns = &self.children.owner.namespace;
        let services: Api<Service> = Api::namespaced(self.children.client().clone(), ns);
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
                return Err(WorldError(format!("{what}: the Service {name:?} does not exist in namespace {ns}")));
            }
        }
        Ok(())
    }

    async fn start_load(&mut self, plan: &TrialPlan) -> Result<Timestamp, WorldError> {
        let load = ChildLoad::start(&self.children, build::drill_load(plan), plan.timeline.load_seconds()).await?;
        let starts_at = load.starts_at;
        let ends_at = load.ends_at;
        self.load = Some((load, plan.clone()));
        if Self::carried(plan)
            && let Some(fault) = plan.faults.first()
            && let Some(injection) = fault.service()
        {
            // In front of the dependency from now until the load's end, faults in the slot only.
            let slot_start = at(starts_at, Duration::from_secs(fault.slot.start));
            let window = (slot_start, Duration::from_secs(fault.slot.end - fault.slot.start));
            let until = at(ends_at, EXPIRY_MARGIN);
            let owner = &self.children.owner;
            let child = build::service_fault(owner, fault.name(), injection, Timestamp::now(), until, Some(window));
            self.children.create(&child).await?;
        }
        Ok(starts_at)
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        let breaker_fault =
            self.load.as_ref().filter(|(_, plan)| Self::carried(plan)).and_then(|(_, p)| p.faults.first().cloned());
        if let Some(fault) = breaker_fault {
            // The proxy's counts go with its pods: read them before the ServiceFault ends.
            self.dependency = Some(self.read_dependency(&fault).await);
            let name = self.children.owner.fault_name(fault.name());
            self.children.abort::<ServiceFault>(&name).await?;
        }
        match &self.load {
            Some((load, _)) => load.stop().await,
            None => Ok(()),
        }
    }

    async fn inject(&mut self, fault: &PlannedFault, expires_at: Timestamp) -> Result<(), WorldError> {
        let owner = &self.children.owner;
        let name = owner.fault_name(fault.name());
        match &fault.action {
            FaultAction::Service(injection) => {
                // A breaker trial's ServiceFault exists since the load's start; otherwise now.
                if !self.carrying() {
                    let child =
                        build::service_fault(owner, fault.name(), injection, Timestamp::now(), expires_at, None);
                    self.children.create(&child).await?;
                }
                // At most until the slot's end: a fault that is not on by then is a failed one,
                // and the other faults' reverts are due.
                let slot_end = expires_at - SignedDuration::try_from(EXPIRY_MARGIN).unwrap_or_default();
                let limit = Duration::try_from(slot_end.duration_since(Timestamp::now())).unwrap_or_default();
                let seen = self
                    .children
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
                // Repeats end with the slot, counted from now (the PodKill's own start).
                let left = self.load.as_ref().map_or(fault.slot.end - fault.slot.start, |(l, _)| {
                    let end = at(l.starts_at, Duration::from_secs(fault.slot.end));
                    Duration::try_from(end.duration_since(Timestamp::now())).unwrap_or_default().as_secs().max(1)
                });
                let child = build::pod_kill(owner, fault.name(), kill, left);
                self.children.create(&child).await?;
                let seen = self
                    .children
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
        let name = self.children.owner.fault_name(fault.name());
        match &fault.action {
            // A breaker trial's proxy stays in front (its faults end with their window) to count
            // the calls after the heal; only an early end (an abort) ends it now.
            FaultAction::Service(_) if self.carrying() && !self.before(fault.slot.end) => Ok(()),
            FaultAction::Service(_) => {
                self.children.abort::<ServiceFault>(&name).await?;
                let reverted = self
                    .children
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
            FaultAction::PodKill(_) if self.before(fault.slot.end) => self.children.abort::<PodKill>(&name).await,
            FaultAction::PodKill(_) => Ok(()),
        }
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        let Some((load, plan)) = &mut self.load else { return Vec::new() };
        if let Err(error) = load.read(false).await {
            // The abort rules look again on the next tick; the judgement reads afresh.
            tracing::warn!(run = %self.children.owner.name, %error, "runner reports not read");
        }
        load.per_second(&Self::rate(plan))
    }

    async fn stop_requested(&mut self) -> Option<String> {
        if self.stopping.is_cancelled() {
            return Some("the operator stopped (shutdown or lost leadership)".into());
        }
        if self.asked_at.is_some_and(|t| t.elapsed() < ASK_EVERY) {
            return None;
        }
        self.asked_at = Some(Instant::now());
        let deleted = || Some(format!("the {} was deleted", K::KIND));
        match self.children.api::<K>().get_opt(&self.children.owner.name).await {
            Ok(None) => deleted(),
            Ok(Some(d))
                if d.meta().deletion_timestamp.is_some()
                    || d.meta().uid.as_deref() != Some(&self.children.owner.uid) =>
            {
                deleted()
            }
            Ok(Some(d)) if K::stop_asked(&d) => Some(format!("the {ABORT_ANNOTATION} annotation")),
            Ok(Some(_)) => None,
            Err(error) => {
                tracing::warn!(run = %self.children.owner.name, %error, "cannot read the run");
                None
            }
        }
    }

    async fn measured(&mut self, plan: &TrialPlan) -> Result<Measured, WorldError> {
        let Some((load, _)) = &mut self.load else { return Ok(Measured::default()) };
        load.read(true).await?;
        let rate = Self::rate(plan);
        let mut phases = Vec::new();
        for window in plan.timeline.windows.iter().filter(|w| w.name != PhaseName::Cooldown) {
            if let Some(figures) = load.figures_over(window.start..window.end, &rate)? {
                phases.push((window.name, figures));
            }
        }
        let mut seconds = load.per_second(&rate);
        seconds.resize(usize::try_from(plan.timeline.load_seconds()).unwrap_or(usize::MAX).max(seconds.len()), None);
        Ok(Measured { phases, seconds })
    }

    async fn figures_over(&mut self, plan: &TrialPlan, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        match &self.load {
            Some((load, _)) => load.figures_over(seconds, &Self::rate(plan)),
            None => Ok(None),
        }
    }

    async fn effect(&mut self, fault: &PlannedFault, _: &FaultWindow) -> Result<Effect, WorldError> {
        let name = self.children.owner.fault_name(fault.name());
        let (observed, evidence) = match &fault.action {
            FaultAction::Service(injection) => {
                let seen = match self.children.api::<ServiceFault>().get_opt(&name).await.map_err(kube_error(&name))? {
                    Some(sf) => Some(sf),
                    None => self.faults_seen.get(fault.name()).cloned(),
                };
                match seen.as_ref().and_then(|sf| sf.status.as_ref()).and_then(|s| s.proxy.clone()) {
                    Some(s) => {
                        let faulted: u64 = s.faults_applied.values().sum();
                        let service = &injection.service;
                        let evidence = format!(
                            "{} requests crossed the proxy in front of {service} ({name}), {faulted} faulted",
                            s.requests
                        );
                        (faulted > 0, evidence)
                    }
                    None => {
                        let why = seen.as_ref().map_or_else(|| "the ServiceFault is gone".to_owned(), message_of);
                        (false, format!("the proxy in front of {} ({name}) was never read: {why}", injection.service))
                    }
                }
            }
            FaultAction::PodKill(_) => {
                let pk = self.children.api::<PodKill>().get_opt(&name).await.map_err(kube_error(&name))?;
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
        load_start: Timestamp,
        seconds: u64,
    ) -> Result<Vec<Option<u64>>, WorldError> {
        let calls = match &self.dependency {
            Some(Ok(calls)) => calls,
            Some(Err(why)) => return Err(WorldError(why.clone())),
            None => return Err(WorldError(format!("fault {}: its dependency's calls were never read", fault.name()))),
        };
        Ok(crate::trial::breaker::calls_per_load_second(calls, load_start, seconds))
    }
}
