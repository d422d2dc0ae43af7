//! The figures of the systems under test as Prometheus metrics: each experiment's latest
//! verdict and, for the judged kinds, each phase's length, latency, error ratio and throughput,
//! the recovery times and the peak replicas. Read from the controllers' caches at scrape time,
//! so a deleted experiment's series go with it: the label sets are bounded by the objects that
//! exist (kind, namespace, name, and one of five phases and two quantiles).

use std::fmt;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{family::Family, gauge::Gauge},
};

use crate::api::{Experiment, trial::Judged};

/// What one experiment shows in the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExperimentFigures {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The verdict, once decided.
    pub verdict: Option<String>,
    pub phases: Vec<PhaseFigures>,
    pub time_to_detect_seconds: Option<f64>,
    pub time_to_recover_seconds: Option<f64>,
    pub peak_replicas: Option<i32>,
}

/// One phase's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseFigures {
    pub phase: String,
    pub seconds: Option<f64>,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub error_ratio: Option<f64>,
    pub throughput: Option<f64>,
}

impl ExperimentFigures {
    /// The lifecycle figures of any experiment: who it is and its verdict.
    pub fn of<K: Experiment>(experiment: &K) -> ExperimentFigures {
        ExperimentFigures {
            kind: K::KIND.to_owned(),
            namespace: experiment.meta().namespace.clone().unwrap_or_default(),
            name: experiment.meta().name.clone().unwrap_or_default(),
            verdict: experiment.run_status().and_then(|r| r.verdict).map(|v| v.as_str().to_owned()),
            ..ExperimentFigures::default()
        }
    }

    /// The figures of a judged experiment: its lifecycle and its judgement.
    pub fn judged<K: Experiment + Judged>(experiment: &K) -> ExperimentFigures {
        let mut figures = ExperimentFigures::of(experiment);
        figures.peak_replicas = experiment.peak_replicas();
        let Some(judgement) = experiment.judgement() else { return figures };
        figures.time_to_detect_seconds = judgement.recovery.as_ref().and_then(|r| r.time_to_detect_seconds);
        figures.time_to_recover_seconds = judgement.recovery.as_ref().and_then(|r| r.time_to_recover_seconds);
        figures.phases = judgement
            .phases
            .iter()
            .map(|p| PhaseFigures {
                phase: p.name.as_str().to_owned(),
                seconds: p.finished_at.as_ref().map(|end| end.0.duration_since(p.started_at.0).as_secs_f64()),
                p50_seconds: p.latency.as_ref().map(|l| l.p50_ms / 1000.0),
                p99_seconds: p.latency.as_ref().map(|l| l.p99_ms / 1000.0),
                error_ratio: p.error_rate,
                throughput: p.throughput,
            })
            .collect();
        figures
    }
}

/// A source of experiments' figures (one kind's cache), read at scrape time.
pub type FiguresSource = Box<dyn Fn() -> Vec<ExperimentFigures> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    kind: String,
    namespace: String,
    name: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExperimentLabels {
    kind: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: String,
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuantileLabels {
    kind: String,
    namespace: String,
    name: String,
    phase: String,
    quantile: String,
}

/// Float gauges of one family, with their name (the registry adds `chaoslab_`) and help.
struct Gauges<L> {
    name: &'static str,
    help: &'static str,
    family: Family<L, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl<L: Clone + std::hash::Hash + Eq + EncodeLabelSet + fmt::Debug + Send + Sync + 'static> Gauges<L> {
    fn new(name: &'static str, help: &'static str) -> Gauges<L> {
        Gauges { name, help, family: Family::default() }
    }

    fn set(&self, labels: L, value: Option<f64>) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.family.get_or_create(&labels).set(value);
        }
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), fmt::Error> {
        let metric = encoder.encode_descriptor(self.name, self.help, None, self.family.metric_type())?;
        self.family.encode(metric)
    }
}

/// Exports every source's experiments on each scrape.
#[derive(Default)]
pub struct FiguresCollector {
    pub(super) sources: std::sync::Mutex<Vec<FiguresSource>>,
}

impl fmt::Debug for FiguresCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FiguresCollector")
    }
}

impl Collector for FiguresCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let verdicts: Gauges<VerdictLabels> =
            Gauges::new("experiment_verdict", "1 for each decided experiment, labelled with its latest verdict");
        let seconds: Gauges<PhaseLabels> = Gauges::new("phase_seconds", "How long each phase of a judged run lasted");
        let latency: Gauges<QuantileLabels> =
            Gauges::new("phase_latency_seconds", "Latency of the load in each phase, at the 0.5 and 0.99 quantiles");
        let errors: Gauges<PhaseLabels> =
            Gauges::new("phase_error_ratio", "Failed requests / sent requests in each phase");
        let throughput: Gauges<PhaseLabels> =
            Gauges::new("phase_throughput", "Requests per second achieved in each phase");
        let detect: Gauges<ExperimentLabels> =
            Gauges::new("time_to_detect_seconds", "From the start of injection to the first second that broke the SLO");
        let recover: Gauges<ExperimentLabels> =
            Gauges::new("time_to_recover_seconds", "From the end of the faults until the SLO held again");
        let replicas: Gauges<ExperimentLabels> =
            Gauges::new("peak_replicas", "The most replicas an AutoscalingCheck saw");

        let sources = self.sources.lock().map_err(|_| fmt::Error)?;
        for figures in sources.iter().flat_map(|source| source()) {
            let who = ExperimentLabels {
                kind: figures.kind.clone(),
                namespace: figures.namespace.clone(),
                name: figures.name.clone(),
            };
            if let Some(verdict) = &figures.verdict {
                verdicts.set(
                    VerdictLabels {
                        kind: who.kind.clone(),
                        namespace: who.namespace.clone(),
                        name: who.name.clone(),
                        verdict: verdict.clone(),
                    },
                    Some(1.0),
                );
            }
            for p in &figures.phases {
                let at = PhaseLabels {
                    kind: who.kind.clone(),
                    namespace: who.namespace.clone(),
                    name: who.name.clone(),
                    phase: p.phase.clone(),
                };
                for (quantile, value) in [("0.5", p.p50_seconds), ("0.99", p.p99_seconds)] {
                    let labels = QuantileLabels {
                        kind: at.kind.clone(),
                        namespace: at.namespace.clone(),
                        name: at.name.clone(),
                        phase: at.phase.clone(),
                        quantile: quantile.to_owned(),
                    };
                    latency.set(labels, value);
                }
                seconds.set(at.clone(), p.seconds);
                errors.set(at.clone(), p.error_ratio);
                throughput.set(at, p.throughput);
            }
            detect.set(who.clone(), figures.time_to_detect_seconds);
            recover.set(who.clone(), figures.time_to_recover_seconds);
            replicas.set(who, figures.peak_replicas.map(f64::from));
        }
        verdicts.encode(&mut encoder)?;
        seconds.encode(&mut encoder)?;
        latency.encode(&mut encoder)?;
        errors.encode(&mut encoder)?;
        throughput.encode(&mut encoder)?;
        detect.encode(&mut encoder)?;
        recover.encode(&mut encoder)?;
        replicas.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        api::{Drill, trial::DrillStatus},
        metrics::Metrics,
    };

    use super::ExperimentFigures;

    const DRILL: &str = r#"
apiVersion: chaoslab.dev/v1alpha1
kind: Drill
metadata: {name: game-day, namespace: shop}
spec:
  load: {target: {url: "http://frontend.shop/"}, model: open, rate: 50}
  phases: {baseline: 10s, inject: 20s}
  faults: [{name: slow, startAfter: 0s, duration: 10s, serviceFault: {service: inventory, faults: [{type: latency, latency: {delay: 100ms}}]}}]
status:
  phase: Succeeded
  verdict: Fail
  phases:
  - {name: baseline, startedAt: "2026-12-05T10:00:00Z", finishedAt: "2026-12-05T10:00:10Z", throughput: 50.0, errorRate: 0.0,
     latency: {p50Ms: 4.0, p90Ms: 5.0, p95Ms: 6.0, p99Ms: 8.0, p999Ms: 9.0, maxMs: 10.0, meanMs: 4.5}}
  - {name: inject, startedAt: "2026-12-05T10:00:10Z", finishedAt: "2026-12-05T10:00:30Z", throughput: 49.5, errorRate: 0.25,
     latency: {p50Ms: 104.0, p90Ms: 120.0, p95Ms: 130.0, p99Ms: 250.0, p999Ms: 300.0, maxMs: 310.0, meanMs: 110.0}}
  recovery: {timeToDetectSeconds: 1.0, timeToRecoverSeconds: 3.5}
"#;

    #[test]
    fn exports_verdicts_phase_figures_and_recovery_of_judged_runs() {
        let drill: Drill = serde_saphyr::from_str(DRILL).expect("a drill");
        let status: &DrillStatus = drill.status.as_ref().expect("a status");
        assert_eq!(status.judgement.phases.len(), 2);
        let figures = ExperimentFigures::judged(&drill);
        let metrics = Metrics::default();
        metrics.add_figures_source(Box::new(move || vec![figures.clone()]));
        let text = metrics.encode().expect("encoded");
        let who = r#"kind="Drill",namespace="shop",name="game-day""#;
        for line in [
            format!(r#"chaoslab_experiment_verdict{{{who},verdict="Fail"}} 1.0"#),
            format!(r#"chaoslab_phase_seconds{{{who},phase="inject"}} 20.0"#),
            format!(r#"chaoslab_phase_latency_seconds{{{who},phase="inject",quantile="0.99"}} 0.25"#),
            format!(r#"chaoslab_phase_latency_seconds{{{who},phase="baseline",quantile="0.5"}} 0.004"#),
            format!(r#"chaoslab_phase_error_ratio{{{who},phase="inject"}} 0.25"#),
            format!(r#"chaoslab_phase_throughput{{{who},phase="inject"}} 49.5"#),
            format!(r#"chaoslab_time_to_detect_seconds{{{who}}} 1.0"#),
            format!(r#"chaoslab_time_to_recover_seconds{{{who}}} 3.5"#),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        // Nothing is made up for what was not measured.
        assert!(!text.contains("chaoslab_peak_replicas{"), "{text}");
    }
}
