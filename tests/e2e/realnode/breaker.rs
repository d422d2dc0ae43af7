//! CircuitBreakerTrial on the real node: catalog's breaker judged from outside, with the
//! dependency (inventory) answering 503 through the proxy. Lesson 12 from its file passes with
//! the chart's catalog (breaker on); the same trial, shortened, fails with the breaker switched
//! off by `helm upgrade` (lesson 11's way of switching it).

use std::time::Duration;

use chaoslab::api::{CircuitBreakerTrial, Phase, Verdict};
use kube::Api;
use serde_json::json;

use super::{DEMO, Values, catalog_args, chaoslab_run, expected_verdict, ready};
use crate::harness::{create, finished, run};

const LESSON: &str = "examples/drills/12-circuit-breaker.yaml";

fn show(st: &chaoslab::api::trial::CircuitBreakerTrialStatus) {
    eprintln!("breaker: {:?}", st.breaker);
    for e in &st.judgement.expectations {
        eprintln!(
            "  {} observed {:?} threshold {:?} passed {} {:?}",
            e.expression, e.observed, e.threshold, e.passed, e.message
        );
    }
}

#[tokio::test]
async fn lesson_12_passes_with_the_charts_breaker() {
    let client = ready().await;
    assert_eq!(expected_verdict(LESSON), "Pass");
    let (code, report) = chaoslab_run(LESSON, "6m");
    assert_eq!(report["verdict"], "Pass", "{report}");
    assert_eq!(code, 0);
    let api: Api<CircuitBreakerTrial> = Api::namespaced(client, DEMO);
    let st = api.get("drill-12-circuit-breaker").await.expect("the trial").status.expect("status");
    show(&st);
    assert_eq!(st.run.phase, Some(Phase::Succeeded));
    let names: Vec<&str> = st.judgement.expectations.iter().map(|e| e.expression.as_str()).collect();
    for wanted in ["opensWithin", "openP99Below", "dependencyCallReductionPercent", "closesWithin"] {
        assert!(names.iter().any(|n| n.contains(wanted)), "{wanted} judged: {names:?}");
    }
    assert!(st.judgement.expectations.iter().all(|e| e.passed), "{:?}", st.judgement.expectations);
    let breaker = st.breaker.expect("breaker figures");
    let (base, open) = (
        breaker.dependency_calls_baseline.expect("baseline calls"),
        breaker.dependency_calls_open.expect("calls while open"),
    );
    // 20/s on catalog, each a call to inventory; open, only the trial calls (3 every 5 s).
    assert!(base > 15.0, "inventory got {base}/s at baseline");
    assert!(open <= base * 0.2, "inventory got {open}/s while open, {base}/s at baseline");
    eprintln!(
        "figure: lesson 12 opensAfter {:?}, closesAfter {:?}, inventory calls {base:.1}/s baseline, {open:.2}/s open ({:.0} % fewer)",
        breaker.opens_after,
        breaker.closes_after,
        100.0 * (1.0 - open / base)
    );
}

#[tokio::test]
async fn the_same_trial_fails_without_the_breaker() {
    let client = ready().await;
    let _ = run(
        "kubectl",
        &[
            "-n",
            DEMO,
            "delete",
            "circuitbreakertrial",
            "rn-no-breaker",
            "--ignore-not-found",
            "--wait",
            "--timeout=90s",
        ],
    );
    let args = catalog_args(&[("--circuit-breaker=true", "--circuit-breaker=false")]);
    let _values = Values::set(&["--set-json", &format!("demo.services.catalog.args={args}")]);
    let api = create::<CircuitBreakerTrial>(
        &client,
        DEMO,
        "rn-no-breaker",
        json!({
            "load": {"target": {"service": {"name": "catalog", "port": "http"}}, "model": "open", "rate": 20, "timeout": "5s"},
            "dependency": {"service": "inventory", "faults": [{"type": "abort", "percent": 100, "abort": {"status": 503}}]},
            "phases": {"warmup": "5s", "baseline": "10s", "inject": "20s", "recover": "10s"},
            "expect": {"opensWithin": "10s", "openP99Below": "100ms", "dependencyCallReductionPercent": 80, "closesWithin": "30s"},
            "expectations": ["errorRate <= baseline + 1%"],
        }),
    )
    .await;
    let trial = finished(&api, "rn-no-breaker", Duration::from_secs(180)).await;
    let st = trial.status.expect("status");
    show(&st);
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Succeeded), Some(Verdict::Fail)), "{:?}", st.run.message);
    let opens = st.judgement.expectations.iter().find(|e| e.expression.contains("opensWithin")).expect("opensWithin");
    assert!(!opens.passed, "no breaker, so it never opens: {opens:?}");
    let breaker = st.breaker.expect("breaker figures");
    assert!(breaker.opens_after.is_none(), "{breaker:?}");
    let reduction = st
        .judgement
        .expectations
        .iter()
        .find(|e| e.expression.contains("dependencyCallReductionPercent"))
        .expect("the reduction");
    assert!(!reduction.passed, "inventory keeps getting every call (and a retry): {reduction:?}");
    eprintln!(
        "figure: without the breaker: {:?}; opensWithin {:?}, reduction {:?}",
        breaker, opens.observed, reduction.observed
    );
}
