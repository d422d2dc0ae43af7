//! `/metrics`: the proxy's figures in Prometheus text, read from [`Stats`] at scrape time (the
//! request path counts once, in the stats' atomics, and nothing here can drift from `/stats`).

use std::{fmt, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
    registry::Registry,
};
use tokio::time::Instant;

use super::{state::FaultCell, stats::Stats};

/// Upper bounds of the upstream latency histogram, in seconds.
const BUCKETS: [f64; 15] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, f64::INFINITY];

#[derive(Debug)]
struct ProxyCollector {
    stats: Arc<Stats>,
    faults: Arc<FaultCell>,
}

/// The registry `/metrics` encodes.
pub fn registry(stats: Arc<Stats>, faults: Arc<FaultCell>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyCollector { stats, faults }));
    registry
}

/// The registry in Prometheus' text format.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    crate::serve::encode_registry(registry)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder.encode_descriptor(name, help, None, MetricType::Counter)?.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = &self.stats;
        counter(
            &mut encoder,
            "chaoslab_proxy_requests",
            "HTTP requests (http mode) or connections (tcp mode) on the faulted routes",
            stats.requests(),
        )?;
        counter(
            &mut encoder,
            "chaoslab_proxy_connections",
            "Client connections on the faulted routes",
            stats.connections(),
        )?;
        counter(
            &mut encoder,
            "chaoslab_proxy_pass_connections",
            "Client connections on the pass-through ports",
            stats.pass_connections(),
        )?;
        counter(
            &mut encoder,
            "chaoslab_proxy_upstream_errors",
            "Upstream connections that failed or timed out, and upstream requests that broke before a response",
            stats.upstream_errors(),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "chaoslab_proxy_faults_applied",
                "Faults applied, by type",
                None,
                MetricType::Counter,
            )?;
            for (kind, n) in stats.faults_applied() {
                let labels = [("type", kind)];
                family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "chaoslab_proxy_upstream_responses",
                "Upstream responses, by status",
                None,
                MetricType::Counter,
            )?;
            for (status, n) in stats.upstream_status() {
                let labels = [("status", status.to_string())];
                family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        {
            let latency = stats.latency();
            let mut buckets = Vec::with_capacity(BUCKETS.len());
            let mut below = 0u64;
            for bound in BUCKETS {
                let upto =
                    if bound.is_finite() { latency.count_between(0, (bound * 1e6) as u64) } else { latency.len() };
                buckets.push((bound, upto.saturating_sub(below)));
                below = upto.max(below);
            }
            let sum = latency.mean() * latency.len() as f64 / 1e6;
            encoder
                .encode_descriptor(
                    "chaoslab_proxy_upstream_latency_seconds",
                    "Time from sending a request upstream to its response head (http) or to connect upstream (tcp)",
                    None,
                    MetricType::Histogram,
                )?
                .encode_histogram::<NoLabelSet>(sum, latency.len(), &buckets, None)?;
        }
        let installed = self.faults.current();
        gauge(
            &mut encoder,
            "chaoslab_proxy_fault_set_active",
            "1 while a fault set applies, 0 otherwise",
            if installed.is_active(Instant::now()) { 1.0 } else { 0.0 },
        )?;
        if let Some(set) = &installed.set {
            gauge(
                &mut encoder,
                "chaoslab_proxy_fault_set_expiry_timestamp_seconds",
                "When the current fault set expires (Unix seconds)",
                set.expires_at.as_millisecond() as f64 / 1000.0,
            )?;
        }
        Ok(())
    }
}
