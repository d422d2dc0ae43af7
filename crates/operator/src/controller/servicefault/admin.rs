//! Reads what the proxy pods saw, from their admin port (`GET /stats`), directly by pod IP: the
//! operator runs in the cluster, and the proxy's figures need no API server round trip.
//! Best effort: a pod that cannot be read is named in the result, never an error of the
//! reconcile (its figures are kept from the last successful read).

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};

use super::build::{ADMIN_PORT, PROXY_LABEL, sum_stats};
use crate::{
    api::fault::ProxyStats,
    controller::{Context, Error},
    proxy::{StatsReport, admin_client},
};

/// The proxy pods' figures: summed over the pods that answered, and why the others did not.
#[derive(Debug, Default)]
pub struct StatsReading {
    pub summed: Option<ProxyStats>,
    pub error: Option<String>,
}

pub async fn read_stats(ctx: &Context, ns: &str, uid: &str) -> Result<StatsReading, Error> {
    let selector = format!("{PROXY_LABEL}={uid}");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns).list(&ListParams::default().labels(&selector)).await?;
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for pod in &pods.items {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            errors.push(format!("{} has no IP yet", pod.name_any()));
            continue;
        };
        match get_stats(&ip).await {
            Ok(stats) => read.push(stats),
            Err(e) => errors.push(format!("{} ({ip}): {e}", pod.name_any())),
        }
    }
    if !errors.is_empty() {
        tracing::debug!(namespace = ns, errors = ?errors, "proxy pods not read");
    }
    let error = if pods.items.is_empty() { Some("no proxy pod exists".to_owned()) } else { errors.first().cloned() };
    Ok(StatsReading { summed: (!read.is_empty()).then(|| sum_stats(&read)), error })
}

/// `GET http://<ip>:9901/stats`, within the admin client's timeout.
pub async fn get_stats(ip: &str) -> Result<StatsReport, String> {
    let host = if ip.contains(':') { format!("[{ip}]:{ADMIN_PORT}") } else { format!("{ip}:{ADMIN_PORT}") };
    admin_client::get_stats(&host).await
}
