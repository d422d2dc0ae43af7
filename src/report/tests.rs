use super::{Report, charts, fixture, html, json_schema, markdown};

#[test]
fn markdown_leads_with_the_verdict_and_the_expectations() {
    let report = fixture::drill();
    let md = markdown::render(&report, &["traffic.svg", "latency.svg"]);
    assert!(md.starts_with("# Drill tour: Fail\n\n> 1 of 3 expectations failed"), "{md}");
    let expectations = md.find("## Expectations").expect("an expectations section");
    for later in ["## Recovery", "## Phases", "## Faults", "## Little's law", "## Record", "## Charts"] {
        assert!(md.find(later).is_some_and(|at| at > expectations), "{later} after the expectations:\n{md}");
    }
    assert!(md.contains("| `p99 <= 2x baseline` | 518ms | 42ms | FAIL |"), "{md}");
    // Little's law: 19.7 req/s × 308 ms mean = 6.07 requests in flight.
    assert!(md.contains("| inject | 19.7 req/s × 308 ms | 6.07 | 10000 |"), "{md}");
    insta::assert_snapshot!("drill_markdown", md);
}

#[test]
fn report_json_keeps_everything_and_matches_its_checked_in_schema() {
    let report = fixture::drill();
    let json = report.to_json().expect("json");
    let back: Report = serde_json::from_str(&json).expect("read back");
    assert_eq!(back, report);

    let generated = json_schema().expect("the schema");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report.schema.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/report.schema.json is not the schema of Report: run `cargo run -- report --schema > docs/report.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&generated).expect("the schema is JSON");
    let value: serde_json::Value = serde_json::from_str(&json).expect("the report is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // A report without its verdict's type is refused by the schema.
    let mut broken = value.clone();
    broken["verdict"] = serde_json::json!("Maybe");
    assert!(!validator.is_valid(&broken));
}

/// The texts of an SVG's `<text>` elements.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>').and_then(|(_, rest)| rest.split_once("</text>")).map(|(text, _)| text.trim().to_owned())
        })
        .collect()
}

#[test]
fn charts_are_well_formed_and_show_the_series_and_the_shaded_windows() {
    let report = fixture::drill();
    let charts = charts::render_all(&report).expect("charts");
    let names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["traffic.svg", "latency.svg"], "no replicas chart without samples");
    for (name, svg) in &charts {
        assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{name}");
        assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "{name}: balanced tags");
        let opened = svg.matches("<text").count();
        assert_eq!(opened, svg.matches("</text>").count(), "{name}: every text closed");
        let labels = texts(svg);
        for phase in ["warmup", "baseline", "inject", "recover", "fault: slow-inventory"] {
            assert!(labels.iter().any(|l| l == phase), "{name}: no {phase} label in {labels:?}");
        }
        // Four phase bands and one fault band, translucent.
        assert!(svg.matches("opacity=\"0.18\"").count() >= 4, "{name}: phase shading");
        assert!(svg.matches("opacity=\"0.12\"").count() >= 1, "{name}: fault shading");
        assert!(svg.matches("<polyline").count() >= 2, "{name}: two series");
    }
    let (_, latency) = &charts[1];
    assert!(texts(latency).iter().any(|l| l == "p99") && texts(latency).iter().any(|l| l == "p50"));
    // The p99 line reaches the fault's 520 ms: the axis goes above it.
    assert!(texts(latency).iter().any(|l| l.parse::<f64>().is_ok_and(|v| v >= 500.0)), "{:?}", texts(latency));
}

#[test]
fn the_replicas_chart_draws_desired_and_ready_as_steps() {
    use crate::api::trial::ReplicaSample;
    let mut report = fixture::drill();
    let start = report.started_at.clone().expect("a start");
    let at = |s: i64| {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            start.0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s)).expect("in range"),
        )
    };
    report.replicas = vec![
        ReplicaSample { at: at(0), desired: 1, ready: 1 },
        ReplicaSample { at: at(12), desired: 4, ready: 1 },
        ReplicaSample { at: at(15), desired: 4, ready: 4 },
    ];
    let svg = charts::replicas(&report).expect("a chart");
    let labels = texts(&svg);
    assert!(labels.iter().any(|l| l == "desired") && labels.iter().any(|l| l == "ready"), "{labels:?}");
    assert!(svg.matches("<polyline").count() >= 2);
}

#[test]
fn html_is_one_file_with_the_tables_and_the_charts_inline() {
    let report = fixture::drill();
    let charts = charts::render_all(&report).expect("charts");
    let page = html::render(&report, &charts);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("<h1 class=\"verdict-Fail\">Drill tour: Fail</h1>"), "{page}");
    assert!(page.contains("<td><code>p99 &lt;= 2x baseline</code></td><td>518ms</td>"), "{page}");
    assert_eq!(page.matches("<svg").count(), 2, "both charts inline");
    assert!(!page.contains("<?xml") && !page.contains("src=\""), "nothing outside the file");
}

#[test]
fn a_settled_report_prints_as_its_stored_json_does() {
    let mut report = fixture::drill();
    let start = report.started_at.clone().expect("a start");
    let injected = start.0.checked_add(k8s_openapi::jiff::SignedDuration::from_millis(10_600)).expect("in range");
    report.faults[0].started_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(injected));
    let settled = report.clone().settled();
    let stored: Report = serde_json::from_str(&settled.to_json().expect("json")).expect("read back");
    assert_eq!(markdown::render(&stored, &[]), markdown::render(&settled, &[]));
    // Kubernetes' Time keeps whole seconds: 10.6 s is stored as 10 s.
    assert!(markdown::render(&settled, &[]).contains("| slow-inventory | 10.0s–21.0s |"));
}
