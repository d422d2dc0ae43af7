//! The values of an AutoscalingCheck's run in the cluster, from what was read (no client): which
//! HPA scales the Deployment, its settings, and a replica sample. Unit-tested from YAML.

use std::time::Duration;

use k8s_openapi::{
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::ResourceExt;

use crate::{
    api::trial::{ReplicaSample, ScaleTarget},
    trial::scaling::DEFAULT_SCALE_DOWN_STABILIZATION,
};

/// The HPA that scales `target.deployment`: the one named, or the one whose scaleTargetRef is
/// the Deployment. An error says what is missing.
pub fn hpa_for<'a>(
    target: &ScaleTarget,
    hpas: &'a [HorizontalPodAutoscaler],
) -> Result<&'a HorizontalPodAutoscaler, String> {
    let scales = |h: &HorizontalPodAutoscaler| {
        h.spec
            .as_ref()
            .is_some_and(|s| s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == target.deployment)
    };
    match &target.hpa {
        Some(name) => {
            let hpa = hpas.iter().find(|h| &h.name_any() == name).ok_or_else(|| {
                format!("spec.target.hpa: no HorizontalPodAutoscaler named {name:?} in this namespace")
            })?;
            if scales(hpa) {
                Ok(hpa)
            } else {
                Err(format!("spec.target.hpa: the HPA {name:?} does not scale the Deployment {:?}", target.deployment))
            }
        }
        None => {
            let found: Vec<&HorizontalPodAutoscaler> = hpas.iter().filter(|h| scales(h)).collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(format!(
                    "spec.target: no HorizontalPodAutoscaler scales the Deployment {:?}; create one (or name it in spec.target.hpa)",
                    target.deployment
                )),
                _ => Err(format!(
                    "spec.target: {} HPAs scale the Deployment {:?}; name one in spec.target.hpa",
                    found.len(),
                    target.deployment
                )),
            }
        }
    }
}

/// Whether the HPA's metrics come from the resource metrics API (metrics.k8s.io).
pub fn needs_resource_metrics(hpa: &HorizontalPodAutoscaler) -> bool {
    let metrics = hpa.spec.as_ref().and_then(|s| s.metrics.as_ref());
    // No metrics means the default: 80 % CPU, a resource metric.
    metrics.is_none_or(|m| m.is_empty() || m.iter().any(|m| m.type_ == "Resource" || m.type_ == "ContainerResource"))
}

/// The HPA's `minReplicas` (1 when unset).
pub fn min_replicas(hpa: &HorizontalPodAutoscaler) -> i32 {
    hpa.spec.as_ref().and_then(|s| s.min_replicas).unwrap_or(1)
}

/// The HPA's scale-down stabilization window, or the default.
pub fn scale_down_stabilization(hpa: &HorizontalPodAutoscaler) -> Duration {
    hpa.spec
        .as_ref()
        .and_then(|s| s.behavior.as_ref())
        .and_then(|b| b.scale_down.as_ref())
        .and_then(|d| d.stabilization_window_seconds)
        .map_or(DEFAULT_SCALE_DOWN_STABILIZATION, |s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
}

/// The desired count (the HPA's) and the ready count (the Deployment's) at `now`. An HPA that
/// has not computed a count yet reports 0: the Deployment's own count stands for it then.
pub fn sample(hpa: &HorizontalPodAutoscaler, deployment: &Deployment, now: Timestamp) -> ReplicaSample {
    let desired = hpa.status.as_ref().map(|s| s.desired_replicas).filter(|d| *d > 0);
    let spec_replicas = deployment.spec.as_ref().and_then(|s| s.replicas);
    let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    ReplicaSample { at: Time(now), desired: desired.or(spec_replicas).unwrap_or(0), ready }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(yaml: &str) -> HorizontalPodAutoscaler {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const WEB: &str = "metadata: {name: web}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}, minReplicas: 2, maxReplicas: 5, behavior: {scaleDown: {stabilizationWindowSeconds: 10}}}\nstatus: {desiredReplicas: 3}\n";
    const API: &str = "metadata: {name: api}\nspec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: api}, maxReplicas: 3, metrics: [{type: External, external: {metric: {name: queue}, target: {type: Value, value: '10'}}}]}\n";

    fn target(yaml: &str) -> ScaleTarget {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn the_hpa_is_found_by_its_target_or_its_name_and_a_missing_one_is_named() {
        let hpas = vec![hpa(WEB), hpa(API)];
        assert_eq!(hpa_for(&target("{deployment: web}"), &hpas).unwrap().name_any(), "web");
        assert_eq!(hpa_for(&target("{deployment: api, hpa: api}"), &hpas).unwrap().name_any(), "api");
        let none = hpa_for(&target("{deployment: shop}"), &hpas).unwrap_err();
        assert!(none.contains("no HorizontalPodAutoscaler scales the Deployment \"shop\""), "{none}");
        let wrong = hpa_for(&target("{deployment: shop, hpa: web}"), &hpas).unwrap_err();
        assert!(wrong.starts_with("spec.target.hpa: the HPA \"web\" does not scale"), "{wrong}");
        let twice = hpa_for(&target("{deployment: web}"), &[hpa(WEB), hpa(WEB)]).unwrap_err();
        assert!(twice.contains("2 HPAs scale"), "{twice}");
    }

    #[test]
    fn the_hpas_own_settings_are_read_with_their_defaults() {
        let (web, api) = (hpa(WEB), hpa(API));
        assert_eq!((min_replicas(&web), min_replicas(&api)), (2, 1));
        assert_eq!(scale_down_stabilization(&web), Duration::from_secs(10));
        assert_eq!(scale_down_stabilization(&api), DEFAULT_SCALE_DOWN_STABILIZATION);
        assert!(needs_resource_metrics(&web), "no metrics is the default CPU metric");
        assert!(!needs_resource_metrics(&api));
    }

    #[test]
    fn a_sample_is_the_hpas_desired_count_and_the_deployments_ready_count() {
        let web = hpa(WEB);
        let deployment: Deployment =
            serde_saphyr::from_str("spec: {replicas: 2}\nstatus: {readyReplicas: 2}\n").unwrap();
        let first = sample(&web, &deployment, Timestamp::UNIX_EPOCH);
        assert_eq!((first.desired, first.ready), (3, 2));
        let unsynced = hpa(&WEB.replace("desiredReplicas: 3", "desiredReplicas: 0"));
        assert_eq!(sample(&unsynced, &deployment, Timestamp::UNIX_EPOCH).desired, 2, "the Deployment's count");
    }
}
