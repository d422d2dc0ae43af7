//! The operator's Prometheus metrics: reconciles, errors by kind and reason, reconcile time,
//! and experiments by kind, phase and verdict (counted from the controllers' caches at scrape
//! time, so the figure is never stale or double-counted), plus the figures the experiments
//! measured ([`figures`]).

pub mod figures;

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Instant,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExperimentLabels {
    pub kind: String,
    pub phase: String,
    pub verdict: String,
}

/// A source of (phase, verdict) pairs of one kind's experiments, read at scrape time.
pub type ExperimentSource = Box<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

/// Counts experiments by kind, phase and verdict on each scrape.
#[derive(Default)]
pub struct ExperimentCollector {
    sources: Mutex<Vec<(String, ExperimentSource)>>,
}

impl fmt::Debug for ExperimentCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExperimentCollector")
    }
}

impl Collector for ExperimentCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let family = Family::<ExperimentLabels, Gauge>::default();
        let sources = self.sources.lock().map_err(|_| fmt::Error)?;
        for (kind, source) in sources.iter() {
            for (phase, verdict) in source() {
                family.get_or_create(&ExperimentLabels { kind: kind.clone(), phase, verdict }).inc();
            }
        }
        let metric = encoder.encode_descriptor(
            "experiments",
            "Experiments by kind, phase and verdict (verdict is empty until decided)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

/// Every metric the operator exports, registered once.
pub struct Metrics {
    pub registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
    experiments: Arc<ExperimentCollector>,
    figures: Arc<figures::FiguresCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chaoslab");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("reconciliations", "Reconciliations by kind", reconciles.clone());
        registry.register("reconcile_errors", "Reconcile errors by kind and reason", errors.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", duration.clone());
        let experiments = Arc::new(ExperimentCollector::default());
        registry.register_collector(Box::new(experiments.clone()));
        let figures = Arc::new(figures::FiguresCollector::default());
        registry.register_collector(Box::new(figures.clone()));
        Self { registry, reconciles, errors, duration, experiments, figures }
    }
}

impl Metrics {
    /// Count a reconcile; the returned guard records its duration when dropped.
    pub fn reconcile_started(&self, kind: &str) -> ReconcileTimer {
        self.reconciles.get_or_create(&KindLabels { kind: kind.into() }).inc();
        ReconcileTimer {
            histogram: self.duration.get_or_create(&KindLabels { kind: kind.into() }).clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, kind: &str, reason: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.into(), reason: reason.into() }).inc();
    }

    /// Add a source of experiments for the `chaoslab_experiments` gauge.
    pub fn add_experiment_source(&self, kind: &str, source: ExperimentSource) {
        if let Ok(mut sources) = self.experiments.sources.lock() {
            sources.push((kind.into(), source));
        }
    }

    /// Add a source of experiments' figures (verdicts, phases, recovery, replicas).
    pub fn add_figures_source(&self, source: figures::FiguresSource) {
        if let Ok(mut sources) = self.figures.sources.lock() {
            sources.push(source);
        }
    }

    /// The registry in Prometheus' text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        chaoslab_dataplane::serve::encode_registry(&self.registry)
    }
}

pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_reconciles_errors_and_experiments() {
        let m = Metrics::default();
        drop(m.reconcile_started("PodKill"));
        m.reconcile_failed("PodKill", "kube");
        m.add_experiment_source(
            "PodKill",
            Box::new(|| {
                vec![
                    ("Succeeded".into(), "Pass".into()),
                    ("Succeeded".into(), "Pass".into()),
                    ("Running".into(), "".into()),
                ]
            }),
        );
        let text = m.encode().unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(r#"chaoslab_reconciliations_total{kind="PodKill"} 1"#), "{text}");
        assert!(has(r#"chaoslab_reconcile_errors_total{kind="PodKill",reason="kube"} 1"#), "{text}");
        assert!(has(r#"chaoslab_experiments{kind="PodKill",phase="Succeeded",verdict="Pass"} 2"#), "{text}");
        assert!(has(r#"chaoslab_experiments{kind="PodKill",phase="Running",verdict=""} 1"#), "{text}");
        assert!(has("chaoslab_reconcile_duration_seconds_count{kind=\"PodKill\"} 1"), "{text}");
    }
}
