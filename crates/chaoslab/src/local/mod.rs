//! The local environment of judged runs: load sent from this process, service faults put into
//! chaoslab proxies on loopback, pod kills done on the lab's pods (`pods`), Services known by
//! their base URLs. The conductor of `trial::drive` runs
//! the same plan here as in a cluster, so a drill file is judged alike on a laptop.
//!
//! Time: the load starts on a whole Unix second, so second `s` of the load is the proxies'
//! per-second slot `start + s`, and the calls a dependency received are read second by second.

mod error;
mod hpa;
pub mod lab;
mod load;
mod podkill;
pub mod pods;
mod process;
pub mod scaling;

use std::{collections::BTreeMap, ops::Range, time::Duration};

use k8s_openapi::jiff::Timestamp;

use self::{load::LocalLoad, podkill::LocalPodKill, pods::LocalPods};

use crate::{
    api::{figures::PhaseName, load::LoadProfile, trial::FaultWindow},
    demo::topology::Autoscaling,
    load::{Figures, service_url},
    proxy::{FaultSet, StatsReport, admin_client},
    trial::{
        drive::{World, WorldError},
        judge::{Effect, Measured},
        plan::{FaultAction, PlannedFault, TrialPlan},
    },
};

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
    /// The HPA of each Deployment that has one, by the Deployment's (the Service's) name: what
    /// an AutoscalingCheck's local HPA does.
    pub autoscaling: BTreeMap<String, Autoscaling>,
}

impl LocalTargets {
    /// The URL `load` goes to: its `url`, or the base URL of its Service here.
    pub fn load_url(&self, load: &LoadProfile) -> Result<String, WorldError> {
        let target = &load.target;

        match (&target.url, &target.service) {
            (Some(url), _) => Ok(url.clone()),
            (None, Some(service)) => {
                let base = self.services.get(&service.name).ok_or_else(|| {
                    WorldError(format!(
                        "spec.load.target.service {:?} is not running here: no base URL for it (local services: {})",
                        service.name,
                        names(&self.services)
                    ))
                })?;
                Ok(service_url(base, service.path.as_deref()))
            }
            (None, None) => Err(WorldError("load.target names neither a url nor a service".into())),
        }
    }
}

/// Judged runs against processes on loopback.
#[derive(Debug)]
pub struct LocalWorld {
    targets: LocalTargets,
    load: LocalLoad,
    /// The pod kills injected, by fault name.
    kills: BTreeMap<String, LocalPodKill>,
}

impl LocalWorld {
    pub fn new(targets: LocalTargets) -> Result<LocalWorld, WorldError> {
        Ok(LocalWorld { targets, load: LocalLoad::new()?, kills: BTreeMap::new() })
    }

    pub fn targets(&self) -> &LocalTargets {
        &self.targets
    }

    /// The URL the plan's load goes to.
    fn load_url(&self, plan: &TrialPlan) -> Result<String, WorldError> {
        self.targets.load_url(&plan.load)
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
}

fn names(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() { "none".to_owned() } else { map.keys().cloned().collect::<Vec<_>>().join(", ") }
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
        self.load.start(&plan.load, &plan.load_plan, &url).await
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        self.load.stop().await;
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
        self.load.seconds()
    }

    async fn measured(&mut self, plan: &TrialPlan) -> Result<Measured, WorldError> {
        if let Some(error) = self.load.error() {
            return Err(WorldError(error.to_owned()));
        }
        let mut seconds = self.load.seconds();
        let mut phases = Vec::new();
        // A run stopped early (an abort) measured only the seconds up to the stop: a phase's
        // figures cover what was measured of it, and a phase never reached has none.
        let measured_to = seconds.len() as u64;
        for window in plan.timeline.windows.iter().filter(|w| w.name != PhaseName::Cooldown) {
            let end = window.end.min(measured_to);
            if end <= window.start {
                continue;
            }
            let figures = self
                .load
                .figures(window.start..end)
                .map_err(|e| WorldError(format!("the {:?} phase's figures: {e}", window.name)))?;
            phases.push((window.name, figures));
        }
        seconds.resize(usize::try_from(plan.timeline.load_seconds()).unwrap_or(usize::MAX).max(seconds.len()), None);
        Ok(Measured { phases, seconds })
    }

    async fn figures_over(&mut self, _plan: &TrialPlan, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        let figures = self.load.figures(seconds)?;
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
