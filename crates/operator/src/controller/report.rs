//! The report ConfigMap of a finished run: `<run>-report`, owned by the run (so it goes with it),
//! holding report.json, report.md and the SVG charts, bounded below the API server's 1 MiB by
//! coarsening the per-second series. Referenced from `status.reportRef`; `chaoslab report
//! <kind>/<name>` reads it back.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams},
};

use crate::report::{Report, SecondFigures, charts, markdown};

/// The most a report's data may take (the API server refuses objects over 1 MiB; the rest is
/// left for metadata).
pub const MAX_BYTES: usize = 900 * 1024;
/// The key the report's JSON is kept under.
pub const REPORT_JSON: &str = "report.json";
/// The label every report ConfigMap carries, with the run's kind.
pub const REPORT_LABEL: &str = "chaoslab.dev/report-of";

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the run has no UID or namespace yet")]
    NotStored,
    #[error("rendering the report: {0}")]
    Render(String),
    #[error("writing the report ConfigMap: {0}")]
    Kube(#[from] kube::Error),
}

/// The name of `run`'s report ConfigMap.
pub fn name_of(run: &str) -> String {
    format!("{run}-report")
}

/// The report ConfigMap of `run`: every form of `report`, coarsened until it fits.
pub fn config_map<K: Resource<DynamicType = ()>>(run: &K, report: &Report) -> Result<ConfigMap, ReportError> {
    let owner = run.controller_owner_ref(&()).ok_or(ReportError::NotStored)?;
    let namespace = run.meta().namespace.clone().ok_or(ReportError::NotStored)?;
    let mut fitted = report.clone();
    let data = loop {
        let data = render(&fitted)?;
        let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size <= MAX_BYTES || fitted.seconds.len() < 2 {
            break data;
        }
        coarsen(&mut fitted);
    };
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name_of(&run.name_any())),
            namespace: Some(namespace),
            owner_references: Some(vec![owner]),
            labels: Some(BTreeMap::from([(REPORT_LABEL.to_owned(), K::kind(&()).into_owned())])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    })
}

fn render(report: &Report) -> Result<BTreeMap<String, String>, ReportError> {
    let charts = charts::render_all(report).map_err(|e| ReportError::Render(e.to_string()))?;
    let names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
    let mut data = BTreeMap::new();
    data.insert(REPORT_JSON.to_owned(), report.to_json().map_err(|e| ReportError::Render(e.to_string()))?);
    data.insert("report.md".to_owned(), markdown::render(report, &names));
    data.extend(charts.into_iter().map(|(name, svg)| (name.to_owned(), svg)));
    Ok(data)
}

/// Halves the per-second series: each pair of points becomes one (counts added, throughput
/// averaged, the worse p99 and the mean p50 kept), and the report says how many seconds a
/// point stands for.
fn coarsen(report: &mut Report) {
    let merged = report
        .seconds
        .chunks(2)
        .map(|pair| {
            let n = pair.len() as f64;
            SecondFigures {
                second: pair[0].second,
                requests: pair.iter().map(|s| s.requests).sum(),
                errors: pair.iter().map(|s| s.errors).sum(),
                throughput: pair.iter().map(|s| s.throughput).sum::<f64>() / n,
                p50_ms: pair.iter().map(|s| s.p50_ms).sum::<f64>() / n,
                p99_ms: pair.iter().map(|s| s.p99_ms).fold(0.0, f64::max),
            }
        })
        .collect();
    report.seconds = merged;
    report.seconds_per_point = Some(report.seconds_per_point.unwrap_or(1) * 2);
}

/// Writes (or replaces) `run`'s report ConfigMap; returns its name.
pub async fn store<K: Resource<DynamicType = ()>>(
    client: &Client,
    run: &K,
    report: &Report,
) -> Result<String, ReportError> {
    let cm = config_map(run, report)?;
    let name = cm.name_any();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), cm.metadata.namespace.as_deref().unwrap_or_default());
    api.patch(&name, &PatchParams::apply("chaoslab").force(), &Patch::Apply(&cm)).await?;
    Ok(name)
}

/// Writes `run`'s report and returns the reference its status keeps. A report that cannot be
/// written is told as a Warning Event `ReportNotWritten` and leaves no reference: the verdict is
/// written either way, never lost for want of a report.
pub async fn file<K: crate::api::Experiment>(
    ctx: &super::Context,
    run: &K,
    report: &Report,
) -> Option<crate::api::common::LocalObjectRef> {
    match store(&ctx.client, run, report).await {
        Ok(name) => Some(crate::api::common::LocalObjectRef { name }),
        Err(error) => {
            tracing::warn!(kind = K::KIND, name = %run.name_any(), %error, "the report was not written");
            let note = crate::domain::Note::warning("ReportNotWritten", error.to_string());
            super::publish(ctx, run, &[note]).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Drill;

    fn drill() -> Drill {
        let mut drill: Drill = serde_saphyr::from_str(
            r#"
apiVersion: chaoslab.dev/v1alpha1
kind: Drill
metadata: {name: tour, namespace: shop, uid: 0b0e5c3e-1111-2222-3333-444455556666}
spec:
  load: {target: {url: "http://frontend.shop/"}, rate: 20}
  phases: {inject: 10s}
  faults: [{name: slow, startAfter: 0s, duration: 5s, serviceFault: {service: inventory, faults: [{type: latency, latency: {delay: 100ms}}]}}]
"#,
        )
        .expect("a drill");
        drill.metadata.uid = Some("0b0e5c3e-1111-2222-3333-444455556666".into());
        drill
    }

    #[test]
    fn the_report_is_owned_labelled_and_holds_every_form() {
        let report = crate::report::fixture::drill();
        let cm = config_map(&drill(), &report).expect("a ConfigMap");
        assert_eq!(cm.metadata.name.as_deref(), Some("tour-report"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        let owner = &cm.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Drill", "tour"));
        let data = cm.data.expect("data");
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, ["latency.svg", "report.json", "report.md", "traffic.svg"]);
        let back: Report = serde_json::from_str(&data[REPORT_JSON]).expect("report.json");
        assert_eq!(back, report, "small enough to keep every second");
    }

    #[test]
    fn a_long_run_is_coarsened_to_fit_and_says_so() {
        let mut report = crate::report::fixture::drill();
        let one = report.seconds[12].clone();
        report.seconds = (0..20_000).map(|s| SecondFigures { second: s, ..one.clone() }).collect();
        let cm = config_map(&drill(), &report).expect("a ConfigMap");
        let data = cm.data.expect("data");
        let size: usize = data.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size <= MAX_BYTES, "{size} bytes");
        let back: Report = serde_json::from_str(&data[REPORT_JSON]).expect("report.json");
        let per = back.seconds_per_point.expect("coarsened");
        assert!(per >= 2 && back.seconds.len() as u64 * u64::from(per) >= 20_000, "{per} × {}", back.seconds.len());
        // Nothing counted is lost: the requests of all 20 000 seconds are still there.
        let requests: u64 = back.seconds.iter().map(|s| s.requests).sum();
        assert_eq!(requests, 20_000 * one.requests);
    }
}
