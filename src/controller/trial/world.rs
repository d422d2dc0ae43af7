//! The cluster environment of a Drill: the [`World`] the operator conducts it in. The load is a
//! child LoadTest ([`ChildLoad`]), each fault a child ServiceFault or PodKill. Each child ends
//! by itself at its own expiry, so a conductor that is gone leaves no fault behind. Reverting a
//! fault is the child's abort annotation: its controller restores the Service exactly and keeps
//! the child's record of what it did.

use std::{collections::BTreeMap, ops::Range, time::Duration};

use k8s_openapi::{
    api::core::v1::Service,
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Resource};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    build,
    children::{Children, ended, kube_error, message_of},
    load::ChildLoad,
};
use crate::{
    api::{Drill, PodKill, ServiceFault, figures::PhaseName, trial::FaultWindow},
    controller::{ABORT_ANNOTATION, abort_requested},
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

/// The cluster world of one Drill.
pub struct ClusterWorld {
    children: Children,
    /// Cancelled when the operator stops.
    stopping: CancellationToken,
    load: Option<(ChildLoad, TrialPlan)>,
    asked_at: Option<Instant>,
    /// The last status read of each ServiceFault child, by fault name: its figures stay readable
    /// after its proxy is gone.
    faults_seen: BTreeMap<String, ServiceFault>,
}

impl ClusterWorld {
    pub fn new(children: Children, stopping: CancellationToken) -> ClusterWorld {
        ClusterWorld { children, stopping, load: None, asked_at: None, faults_seen: BTreeMap::new() }
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

impl World for ClusterWorld {
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
        self.load = Some((load, plan.clone()));
        Ok(starts_at)
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
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
                let child = build::service_fault(owner, fault.name(), injection, Timestamp::now(), expires_at);
                self.children.create(&child).await?;
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
        match self.children.api::<Drill>().get_opt(&self.children.owner.name).await {
            Ok(None) => Some("the Drill was deleted".into()),
            Ok(Some(d))
                if d.meta().deletion_timestamp.is_some()
                    || d.meta().uid.as_deref() != Some(&self.children.owner.uid) =>
            {
                Some("the Drill was deleted".into())
            }
            Ok(Some(d)) if abort_requested(&d) => Some(format!("the {ABORT_ANNOTATION} annotation")),
            Ok(Some(_)) => None,
            Err(error) => {
                tracing::warn!(run = %self.children.owner.name, %error, "cannot read the Drill");
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
        _: Timestamp,
        _: u64,
    ) -> Result<Vec<Option<u64>>, WorldError> {
        Err(WorldError(format!(
            "fault {}: the calls reaching a dependency are read on loopback only (a CircuitBreakerTrial runs locally)",
            fault.name()
        )))
    }
}
