//! An AutoscalingCheck on loopback: the lab's Deployment is its ReplicaSet of pods, scaled by a
//! local HPA with the chart's settings ([`super::hpa`]) that starts with the check and stops
//! with it; the load is sent from this process. [`crate::trial::autoscale::watch`] conducts it
//! as the operator does in a cluster.

use std::{collections::BTreeMap, ops::Range, sync::Arc};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{LocalTargets, hpa::LocalHpa, load::LocalLoad, pods::ReplicaSet};
use crate::{
    api::trial::{AutoscalingCheckSpec, AutoscalingCheckStatus, ReplicaSample},
    demo::topology::Autoscaling,
    load::{Figures, stages::expand},
    trial::{
        autoscale::{ScalingTarget, ScalingWorld},
        drive::{WorldError, at},
        scaling::DEFAULT_SCALE_DOWN_STABILIZATION,
    },
};

/// The world of one AutoscalingCheck on loopback.
pub struct LocalScaling {
    spec: AutoscalingCheckSpec,
    set: Arc<ReplicaSet>,
    url: String,
    load: LocalLoad,
    /// Runs while the world lives.
    _hpa: LocalHpa,
    /// Told each new sample (a line on the terminal).
    tell: Box<dyn FnMut(&AutoscalingCheckStatus) + Send>,
}

impl LocalScaling {
    /// The HPA of the check's Deployment among `autoscaling` (by Deployment); an error names
    /// the field and what there is.
    pub fn hpa_of(
        autoscaling: &BTreeMap<String, Autoscaling>,
        spec: &AutoscalingCheckSpec,
    ) -> Result<Autoscaling, WorldError> {
        let deployment = &spec.target.deployment;
        let hpa = autoscaling.get(deployment).ok_or_else(|| {
            let there = autoscaling.keys().cloned().collect::<Vec<_>>().join(", ");
            WorldError(format!(
                "spec.target.deployment: no HorizontalPodAutoscaler scales {deployment:?} here (the lab's HPAs scale: {there})"
            ))
        })?;
        // The chart names each HPA after its Deployment.
        if let Some(name) = spec.target.hpa.as_ref().filter(|n| *n != deployment) {
            return Err(WorldError(format!(
                "spec.target.hpa: no HorizontalPodAutoscaler named {name:?} here; the lab's HPA of {deployment} is named {deployment:?}"
            )));
        }
        Ok(*hpa)
    }

    /// Finds the check's Deployment and its HPA among `targets`, starts the HPA, and returns the
    /// world and what the check knows of its target. An error names what is missing.
    pub fn new(
        targets: &LocalTargets,
        spec: &AutoscalingCheckSpec,
        tell: Box<dyn FnMut(&AutoscalingCheckStatus) + Send>,
    ) -> Result<(LocalScaling, ScalingTarget), WorldError> {
        let deployment = &spec.target.deployment;
        let hpa = Self::hpa_of(&targets.autoscaling, spec)?;
        let set = targets.pods.set(deployment).ok_or_else(|| {
            WorldError(format!("spec.target.deployment: {deployment:?} has no pods here (not the lab's topology?)"))
        })?;
        let url = targets.load_url(&spec.load)?;
        let plan = expand(&spec.load, None).map_err(|e| WorldError(format!("spec.{e}")))?;
        let target = ScalingTarget {
            plan,
            min_replicas: i32::try_from(hpa.min_replicas).unwrap_or(i32::MAX),
            stabilization: DEFAULT_SCALE_DOWN_STABILIZATION,
        };
        let world = LocalScaling {
            spec: spec.clone(),
            _hpa: LocalHpa::start(Arc::clone(&set), hpa),
            set,
            url,
            load: LocalLoad::new()?,
            tell,
        };
        Ok((world, target))
    }
}

impl ScalingWorld for LocalScaling {
    async fn sample(&mut self) -> Result<ReplicaSample, WorldError> {
        let (desired, ready) = self.set.counts();
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(ReplicaSample { at: Time(Timestamp::now()), desired: count(desired), ready: count(ready) })
    }

    async fn start_load(&mut self) -> Result<(Timestamp, Timestamp), WorldError> {
        let plan = expand(&self.spec.load, None).map_err(|e| WorldError(format!("spec.{e}")))?;
        let start = self.load.start(&self.spec.load, &plan, &self.url).await?;
        Ok((start, at(start, plan.total_duration())))
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        self.load.seconds()
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        self.load.stop().await;
        Ok(())
    }

    async fn measured(&mut self) -> Result<Vec<Option<Figures>>, WorldError> {
        match self.load.error() {
            Some(error) => Err(WorldError(error.to_owned())),
            None => Ok(self.load.seconds()),
        }
    }

    async fn figures_over(&mut self, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        let figures = self.load.figures(seconds)?;
        Ok((figures.total > 0).then_some(figures))
    }

    async fn stop_requested(&mut self) -> Option<String> {
        // Ctrl-C ends the lab's command itself, with its processes.
        None
    }

    async fn progressed(&mut self, st: &AutoscalingCheckStatus) {
        (self.tell)(st);
    }
}
