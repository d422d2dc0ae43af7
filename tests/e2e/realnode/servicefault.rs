//! ServiceFault on the real node: the proxy pods (the chaoslab image) carry inventory's traffic
//! for the fault's duration; the latency is measured from a client pod through the Service's
//! ClusterIP; the Service is given back exactly; a steady 20 req/s client across the switch-on
//! and the switch-off counts the connection errors the switches cost. Both clients open a new
//! connection per request (`connection: close`), so each request is routed by kube-proxy's
//! rules of its own moment: a kept-alive connection would stay on the pod it was opened to and
//! never cross a switch.

use std::time::Duration;

use chaoslab::api::{Phase, ServiceFault, Verdict};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{DEMO, load_pod_result, num, ready, seconds_between, start_load_pod};
use crate::harness::{create, finished, run, wait_for};

const URL: &str = "http://inventory.chaoslab-demo.svc:8080/";

#[tokio::test]
async fn latency_on_inventory_is_measured_from_a_pod_and_the_service_is_given_back_exactly() {
    let client = ready().await;
    let _ = run(
        "kubectl",
        &["-n", DEMO, "delete", "servicefault", "rn-slow", "--ignore-not-found", "--wait", "--timeout=90s"],
    );
    let services: Api<Service> = Api::namespaced(client.clone(), DEMO);
    let before = services.get("inventory").await.expect("Service inventory");
    // A known fault (docs/testing.md): the shadow Service keeps its name from one fault to the
    // next, and the cluster's DNS caches a Service's address for 30 s (CoreDNS `ttl 30`,
    // `cache 30`, as kubeadm's): a fault on inventory within 30 s of the last one ended sends
    // the proxy to the deleted shadow Service's address, and every request through it hangs.
    // So the test starts 31 s after any earlier fault on inventory ended.
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), DEMO);
    let last_end = faults
        .list(&Default::default())
        .await
        .expect("ServiceFaults")
        .items
        .iter()
        .filter(|f| f.spec.injection.service == "inventory")
        .filter_map(|f| f.status.as_ref()?.run.finished_at.as_ref().map(|t| t.0))
        .max();
    if let Some(end) = last_end {
        let ready_at = end + k8s_openapi::jiff::SignedDuration::from_secs(31);
        let wait = ready_at.duration_since(k8s_openapi::jiff::Timestamp::now());
        if let Ok(wait) = Duration::try_from(wait) {
            eprintln!("waiting {wait:?}: the last fault on inventory ended at {end}");
            tokio::time::sleep(wait).await;
        }
    }

    // The steady client: 20/s across the whole fault, before the switch-on to after the switch-off.
    start_load_pod(
        "rn-steady-client",
        URL,
        &["--rate", "20", "--duration", "45s", "--timeout", "5s", "--threads", "1", "-H", "connection: close"],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = create::<ServiceFault>(
        &client,
        DEMO,
        "rn-slow",
        json!({"service": "inventory", "faults": [{"type": "latency", "latency": {"delay": "200ms"}}], "duration": "15s"}),
    )
    .await;
    wait_for("the fault to inject", Duration::from_secs(60), || async {
        let sf = api.get("rn-slow").await.ok()?;
        sf.status?.steps.iter().any(|s| s.step == "Injecting").then_some(())
    })
    .await;
    // The latency client: 8 s at 20/s while the fault is on.
    start_load_pod(
        "rn-latency-client",
        URL,
        &["--rate", "20", "--duration", "8s", "--timeout", "5s", "--threads", "1", "-H", "connection: close"],
    )
    .await;

    let sf = finished(&api, "rn-slow", Duration::from_secs(90)).await;
    let st = sf.status.clone().expect("status");
    eprintln!("status: {}", serde_json::to_string_pretty(&st).unwrap_or_default());
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Succeeded), Some(Verdict::Pass)), "{:?}", st.run.message);

    let latency = load_pod_result("rn-latency-client", Duration::from_secs(60)).await;
    let p50 = num(&latency["latency"]["p50Ms"], "p50");
    let requests = &latency["requests"];
    eprintln!("figure: latency client p50 {p50:.1} ms, p99 {} ms, requests {requests}", latency["latency"]["p99Ms"]);
    assert!((180.0..=260.0).contains(&p50), "median {p50} ms under a 200 ms latency fault");
    assert_eq!(requests["ok"], requests["total"], "every request answered: {requests}");
    let crossed = st.proxy.as_ref().map(|p| p.requests).unwrap_or_default();
    assert!(crossed >= 160, "the proxy carried the clients' requests: {crossed}");

    // Given back exactly at expiry: the whole spec, the labels and annotations as before.
    let after = services.get("inventory").await.expect("Service inventory");
    assert_eq!(
        serde_json::to_value(&after.spec).expect("spec"),
        serde_json::to_value(&before.spec).expect("spec"),
        "the Service's spec is restored exactly"
    );
    assert_eq!(after.annotations(), before.annotations(), "no claim annotation is left");
    assert_eq!(after.labels(), before.labels());
    let step = |name: &str| st.steps.iter().find(|s| s.step == name).map(|s| s.at.0.to_string());
    let injected = st.injected_at.as_ref().map(|t| t.0.to_string()).expect("injectedAt");
    let reverted = st.reverted_at.as_ref().map(|t| t.0.to_string()).expect("revertedAt");
    let lasted = seconds_between(&injected, &reverted);
    eprintln!("figure: injected {injected}, reverted {reverted}: {lasted:.2} s for a 15 s fault; steps {:?}", st.steps);
    assert!((14.5..=17.0).contains(&lasted), "reverted {lasted} s after the injection, for a 15 s duration");
    assert!(step("Cleaned").is_some(), "the proxy and shadow Service are deleted");

    // The switches' cost to a steady client.
    let steady = load_pod_result("rn-steady-client", Duration::from_secs(90)).await;
    let counts = &steady["requests"];
    let errors = counts["total"].as_u64().unwrap_or_default() - counts["ok"].as_u64().unwrap_or_default();
    eprintln!("figure: steady 20/s client across switch-on and switch-off: {counts}; {errors} errors");
    assert_eq!(counts["total"].as_u64(), Some(900), "45 s at 20/s: {counts}");
    assert_eq!(errors, 0, "the switch-on and switch-off cost no request: {counts}");
}
