//! Lessons 7, 8 and 14 and the tour, from their files as written, in the cluster with
//! `chaoslab run -f FILE --wait`, after the `helm upgrade` their headers give; each must reach
//! the verdict its header states (`# expect:`), and `chaoslab run` exits by it (0 Pass, 1 Fail).
//! Lessons 12 and 13 are in breaker.rs and autoscaling.rs.

use serde_json::Value;

use super::{Values, catalog_args, chaoslab_run, expected_verdict, ready};

fn judged(file: &str, limit: &str) -> Value {
    let expected = expected_verdict(file);
    let (code, report) = chaoslab_run(file, limit);
    for e in report["expectations"].as_array().into_iter().flatten() {
        eprintln!(
            "  {} observed {} threshold {} passed {}",
            e["expression"], e["observed"], e["threshold"], e["passed"]
        );
    }
    eprintln!(
        "figure: {file}: verdict {} (expected {expected}), exit {code}; phases {}",
        report["verdict"], report["phases"]
    );
    assert_eq!(report["verdict"].as_str(), Some(expected.as_str()), "{file}: {}", report["message"]);
    let exit = match expected.as_str() {
        "Pass" => 0,
        "Fail" => 1,
        _ => 2,
    };
    assert_eq!(code, exit, "chaoslab run exits by the verdict");
    report
}

/// Lessons 7 and 8's catalog: 100 ms of work per request, so pods have requests in flight.
fn slow_catalog() -> String {
    let args = catalog_args(&[("10ms", "100ms"), ("4ms", "20ms")]);
    format!("demo.services.catalog.args={args}")
}

#[tokio::test]
async fn lesson_07_graceful_pod_kills_lose_no_request() {
    ready().await;
    let _values = Values::set(&["--set-json", &slow_catalog()]);
    judged("examples/drills/07-pod-kill-graceful.yaml", "5m");
}

#[tokio::test]
async fn lesson_08_ungraceful_pod_kills_lose_requests() {
    ready().await;
    let _values = Values::set(&["--set", "demo.gracefulShutdown=false", "--set-json", &slow_catalog()]);
    judged("examples/drills/08-pod-kill-ungraceful.yaml", "5m");
}

#[tokio::test]
async fn lesson_14_game_day() {
    ready().await;
    judged("examples/drills/14-game-day.yaml", "5m");
}

#[tokio::test]
async fn the_tour() {
    ready().await;
    judged("examples/lab/tour.yaml", "3m");
}
