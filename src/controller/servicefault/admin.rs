//! Reads what the proxy pods saw, from their admin port (`GET /stats`), directly by pod IP: the
//! operator runs in the cluster, and the proxy's figures need no API server round trip.
//! Best effort: a pod that cannot be read is named in the result, never an error of the
//! reconcile (its figures are kept from the last successful read).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};
use tokio::net::TcpStream;

use super::build::{ADMIN_PORT, PROXY_LABEL, sum_stats};
use crate::{
    api::fault::ProxyStats,
    controller::{Context, Error},
    proxy::StatsReport,
};

/// How long one pod may take to answer: a reconcile must not hang on a pod that went away.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest /stats answer read (3600 per-second points and a few maps fit many times over).
const MAX_BODY: usize = 4 << 20;

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

/// `GET http://<ip>:9901/stats`, within the timeout.
pub async fn get_stats(ip: &str) -> Result<StatsReport, String> {
    let host = if ip.contains(':') { format!("[{ip}]:{ADMIN_PORT}") } else { format!("{ip}:{ADMIN_PORT}") };
    let body = tokio::time::timeout(READ_TIMEOUT, get(&host, "/stats"))
        .await
        .map_err(|_| format!("no answer within {}s", READ_TIMEOUT.as_secs()))??;
    serde_json::from_slice(&body).map_err(|e| format!("/stats is not the proxy's statistics: {e}"))
}

async fn get(host: &str, path: &str) -> Result<Bytes, String> {
    let stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // The connection ends with the one request; its error is the request's error.
        let _ = connection.await;
    });
    let request = http::Request::get(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{path} answered {}", response.status()));
    }
    let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY);
    let collected = limited.collect().await.map_err(|e| e.to_string())?;
    Ok(collected.to_bytes())
}
