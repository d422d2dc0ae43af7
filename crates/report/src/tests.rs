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
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/report.schema.json");
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

#[test]
fn a_load_test_report_holds_its_thresholds_figures_stages_and_seconds() {
    let report = fixture::load_test();
    assert_eq!((report.kind.as_str(), report.namespace.as_deref()), ("LoadTest", Some("shop")));
    assert_eq!(report.verdict, Some(crate::api::Verdict::Fail));
    assert_eq!(report.expectations.len(), 2, "the thresholds are the expectations");
    assert!(!report.expectations[0].passed && report.expectations[1].passed);
    assert_eq!(report.started_at.as_ref().map(super::clock).as_deref(), Some("2026-12-05 10:00:00Z"));
    assert_eq!(report.record.target, "http://web.shop.svc:80/", "the URL the runners sent to");
    assert_eq!(report.record.concurrency_limit, Some(50));
    // The stages tile the time axis from the load's second 0, labelled with their levels.
    let stages: Vec<(&str, f64, f64)> =
        report.stages.iter().map(|s| (s.label.as_str(), s.from_second, s.to_second)).collect();
    assert_eq!(stages, [("10→40 req/s", 0.0, 4.0), ("40 req/s", 4.0, 10.0)]);
    // Nine measured seconds of ten; the unmeasured one is absent, not zero.
    assert_eq!(report.seconds.len(), 9);
    assert!(report.seconds.iter().all(|s| s.second != 7));
    assert_eq!(report.seconds[8].second, 9);
    assert_eq!(report.seconds[5].p99_ms, 30.0);
    assert_eq!(report.seconds[6].p99_ms, 140.0);
    let load = report.load_test.as_ref().expect("the load's figures");
    assert_eq!(load.requests.as_ref().map(|r| (r.total, r.timeout)), Some((310, 1)));
    assert_eq!(load.steps.len(), 1);
    assert_eq!(load.runners.len(), 2);
    assert!(report.pod_kill.is_none() && report.service_fault.is_none());
}

#[test]
fn load_test_markdown() {
    let md = markdown::render(&fixture::load_test(), &["traffic.svg", "latency.svg"]);
    assert!(md.starts_with("# LoadTest shop/steady: Fail\n"), "{md}");
    assert!(md.contains("| `p99 < 100ms` | 130.0ms | 100ms | FAIL |"), "{md}");
    assert!(md.contains("| 310 | 309 | 0 | 1 | 0 | 0 | 0 | 0 | 0 |"), "requests by outcome:\n{md}");
    // Little's law over the run: 0.62 in flight = 31 req/s × 20 ms, far below the limit of 50.
    assert!(md.contains("| whole run | 31.0 req/s × 20.0 ms | 0.62 | 50 |"), "{md}");
    insta::assert_snapshot!("load_test_markdown", md);
}

#[test]
fn load_test_charts_shade_and_label_each_stage() {
    let report = fixture::load_test();
    let charts = charts::render_all(&report).expect("charts");
    let names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["traffic.svg", "latency.svg"]);
    for (name, svg) in &charts {
        let labels = texts(svg);
        for stage in ["10→40 req/s", "40 req/s"] {
            assert!(labels.iter().any(|l| l == stage), "{name}: no {stage} label in {labels:?}");
        }
        assert!(svg.matches("opacity=\"0.18\"").count() >= 2, "{name}: stage shading");
        assert!(labels.iter().any(|l| l == "seconds since the load started"), "{name}: {labels:?}");
    }
}

#[test]
fn a_pod_kill_report_holds_every_target_and_the_deadline() {
    let report = fixture::pod_kill();
    assert_eq!((report.kind.as_str(), report.verdict_word()), ("PodKill", "Fail"));
    assert_eq!(report.record.target, "pods matching app=web");
    assert_eq!(report.record.seed, Some(42));
    let kills = report.pod_kill.as_ref().expect("the kills");
    assert_eq!(kills.targets.len(), 3);
    assert_eq!((kills.killed, kills.max_recovery_seconds), (Some(2), Some(1.5)));
    assert_eq!(kills.recovery_deadline, "30s");
    let e = &report.expectations[0];
    assert_eq!(
        (e.expression.as_str(), e.observed.as_deref(), e.threshold.as_deref(), e.passed),
        ("every replacement Ready within 30s", Some("slowest 1.5s"), Some("30s"), false)
    );
    assert!(report.seconds.is_empty() && report.load_test.is_none());
    // An aborted run was not decided by the deadline: its expectation says so instead of failing.
    let mut pk = fixture::pod_kill_object();
    let mut st = pk.status.take().expect("status");
    st.run.verdict = Some(crate::api::Verdict::Aborted);
    let aborted = Report::of_pod_kill(&pk, &st);
    assert_eq!(aborted.expectations[0].message.as_deref(), Some("not judged: the run ended Aborted"));
    // The axis runs from the run's start to its end at 45 s, where an unrecovered bar stops.
    assert_eq!(report.span(), 45.0);
}

#[test]
fn pod_kill_markdown() {
    let md = markdown::render(&fixture::pod_kill(), &["kills.svg"]);
    assert!(md.starts_with("# PodKill shop/web-kill: Fail\n"), "{md}");
    assert!(
        md.contains("| 0 | web-7c9d-aaaaa | kwok-node-0 | ReplicaSet/web-7c9d | Killed | 10:00:00.250Z | web-7c9d-bbbbb | 10:00:01.750Z | 1.500 s |"),
        "{md}"
    );
    assert!(md.contains("| Killed | 10:00:10.100Z | - | - | TimedOut |"), "{md}");
    assert!(md.contains("![Kill to replacement Ready](kills.svg)"), "{md}");
    assert!(!md.contains("- Load:"), "a PodKill has no load: {md}");
    insta::assert_snapshot!("pod_kill_markdown", md);
}

#[test]
fn kills_chart_draws_one_bar_per_killed_target_and_marks_the_unrecovered() {
    let report = fixture::pod_kill();
    let charts = charts::render_all(&report).expect("charts");
    let names: Vec<&str> = charts.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["kills.svg"], "no traffic without a load");
    let svg = &charts[0].1;
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "balanced tags");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "every text closed");
    // Two killed targets (the refused eviction is no bar): one filled, one hollow.
    assert_eq!(svg.matches("fill=\"#C8501E\"").count(), 1, "one recovered bar:\n{svg}");
    assert_eq!(svg.matches("stroke=\"#AA1414\"").count(), 1, "one open-ended bar:\n{svg}");
    let labels = texts(svg);
    assert!(labels.iter().any(|l| l == "web-7c9d-aaaaa (1.50s)"), "{labels:?}");
    assert!(labels.iter().any(|l| l == "web-7c9d-ccccc (no Ready replacement)"), "{labels:?}");
    assert!(!labels.iter().any(|l| l.starts_with("web-7c9d-ddddd")), "{labels:?}");
    assert!(labels.iter().any(|l| l == "seconds since the run started"), "{labels:?}");
}

#[test]
fn a_service_fault_report_holds_the_fault_window_steps_routes_and_proxy() {
    let report = fixture::service_fault();
    assert_eq!((report.kind.as_str(), report.verdict_word()), ("ServiceFault", "Pass"));
    assert_eq!(report.faults.len(), 1);
    let fault = &report.faults[0];
    assert_eq!(fault.name, "latency on inventory");
    assert_eq!(fault.started_at.as_ref().and_then(|t| report.offset(t)), Some(3.0));
    assert_eq!(fault.reverted_at.as_ref().and_then(|t| report.offset(t)), Some(23.0));
    assert_eq!(fault.observed, Some(true));
    let sf = report.service_fault.as_ref().expect("the fault's figures");
    assert_eq!((sf.steps.len(), sf.routes.len()), (6, 2));
    assert_eq!(sf.proxy.as_ref().map(|p| p.requests), Some(400));
    assert!(charts::render_all(&report).expect("charts").is_empty(), "nothing per second to draw");
}

#[test]
fn service_fault_markdown() {
    let md = markdown::render(&fixture::service_fault(), &[]);
    assert!(md.starts_with("# ServiceFault shop/slow-inventory: Pass\n"), "{md}");
    assert!(md.contains("| latency on inventory | 3.0s–23.0s | 400 request(s) crossed the proxy in front of inventory, 198 faulted |"), "{md}");
    assert!(md.contains("| Faults applied | latency: 198 |"), "{md}");
    assert!(md.contains("| Upstream status | 200: 400 |"), "{md}");
    assert!(md.contains("| admin | 9090 | chaoslab-shadow-inventory:9090 | no |"), "{md}");
    insta::assert_snapshot!("service_fault_markdown", md);
}

#[test]
fn every_kind_s_report_json_is_valid_against_the_schema_and_reads_back() {
    let schema: serde_json::Value = serde_json::from_str(&json_schema().expect("schema")).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    for report in [fixture::load_test(), fixture::pod_kill(), fixture::service_fault()] {
        let json = report.to_json().expect("json");
        let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:?}", report.kind);
        let back: Report = serde_json::from_str(&json).expect("read back");
        assert_eq!(back, report, "{}", report.kind);
    }
    // The judged kinds' reports are unchanged: none of the new fields is written for them.
    let drill = fixture::drill().to_json().expect("json");
    for field in ["stages", "loadTest", "podKill", "serviceFault"] {
        assert!(!drill.contains(&format!("\"{field}\"")), "{field} in a Drill's report");
    }
}

#[test]
fn a_record_without_a_target_or_load_prints_no_empty_lines() {
    let mut report = fixture::drill();
    report.record.target.clear();
    report.record.load.clear();
    let md = markdown::render(&report, &[]);
    let record = &md[md.find("## Record").expect("a record section")..];
    assert!(!record.contains("- Target:") && !record.contains("- Load:"), "{record}");
    assert!(record.contains("- Environment: ") && record.contains("- Run started "), "{record}");
}
