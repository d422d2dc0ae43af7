//! LoadTest on the real node: the operator's runner Job pods (the chaoslab image) load the
//! frontend by its Service name through CoreDNS and kube-proxy; their reports are merged into
//! status. A runner pod deleted mid-run is replaced by its Job and resumes; the seconds it did
//! not measure are the gap the status names.

use std::time::{Duration, Instant};

use chaoslab::{
    api::{LoadTest, Phase, Verdict},
    load::protocol::RUN_LABEL,
};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::json;

use super::{DEMO, image, node, ready};
use crate::harness::{create, finished, kubectl, run, wait_for};

const URL: &str = "http://frontend.chaoslab-demo.svc:8080/";

fn fresh(kind: &str, name: &str) {
    let _ = run("kubectl", &["-n", DEMO, "delete", kind, name, "--ignore-not-found", "--wait", "--timeout=90s"]);
}

/// The runner pods of the LoadTest `uid`: (name, completion index, node, image, phase).
async fn runner_pods(client: &kube::Client, uid: &str) -> Vec<(String, String, String, String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), DEMO);
    let list = pods.list(&ListParams::default().labels(&format!("{RUN_LABEL}={uid}"))).await.expect("runner pods");
    list.items
        .iter()
        .map(|p| {
            let spec = p.spec.clone().unwrap_or_default();
            (
                p.name_any(),
                p.annotations().get("batch.kubernetes.io/job-completion-index").cloned().unwrap_or_default(),
                spec.node_name.unwrap_or_default(),
                spec.containers.first().and_then(|c| c.image.clone()).unwrap_or_default(),
                p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn two_runner_pods_load_the_frontend_by_name_and_count_rate_times_duration() {
    let client = ready().await;
    let node = node();
    fresh("loadtest", "rn-steady");
    let api = create::<LoadTest>(
        &client,
        DEMO,
        "rn-steady",
        json!({
            "load": {"target": {"url": URL}, "rate": 40, "duration": "15s", "runners": {"parallelism": 2}},
            "thresholds": ["errorRate < 1%"],
        }),
    )
    .await;
    let uid = api.get("rn-steady").await.expect("get").uid().expect("uid");
    // Both runner pods run the chart's image on the real node before the load starts.
    let started = wait_for("the load's start", Duration::from_secs(90), || async {
        api.get("rn-steady").await.ok()?.status?.load_starts_at
    })
    .await;
    let pods = runner_pods(&client, &uid).await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    for (name, _, on, img, _) in &pods {
        assert_eq!(on, &node, "runner pod {name} on the real node");
        assert!(img.ends_with(&image()), "runner pod {name} runs {img}");
    }
    eprintln!("load starts at {}", started.0);

    let lt = finished(&api, "rn-steady", Duration::from_secs(120)).await;
    let st = lt.status.expect("status");
    eprintln!("status: {}", serde_json::to_string_pretty(&st).unwrap_or_default());
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Succeeded), Some(Verdict::Pass)), "{:?}", st.run.message);
    let requests = st.requests.clone().expect("requests");
    // 40/s for 15 s: 600 requests, within ±1 %.
    assert!((594..=606).contains(&requests.total), "{requests:?}");
    assert_eq!(requests.ok, requests.total, "every answer a 200: {requests:?}");
    assert_eq!(st.runners.len(), 2);
    for r in &st.runners {
        assert_eq!((r.state.as_str(), r.attempts), ("Done", Some(1)), "{r:?}");
        let sent = r.sent.expect("sent");
        assert!((297..=303).contains(&sent), "each runner sends half: {r:?}");
    }
    let achieved = st.achieved_rate.expect("achieved rate");
    assert!((39.6..=40.4).contains(&achieved), "{achieved}");
    let latency = st.latency.expect("latency");
    // The frontend works 80 ± 20 ms and calls catalog, which calls inventory.
    assert!(latency.p50_ms > 60.0 && latency.p50_ms < 200.0, "{latency:?}");
    eprintln!(
        "figure: loadtest total {} of 600, achieved {achieved:.2}/s, p50 {:.1} ms, p99 {:.1} ms",
        requests.total, latency.p50_ms, latency.p99_ms
    );
}

#[tokio::test]
async fn a_runner_pod_deleted_mid_run_is_replaced_by_its_job_and_the_gap_is_recorded() {
    let client = ready().await;
    fresh("loadtest", "rn-gap");
    let api = create::<LoadTest>(
        &client,
        DEMO,
        "rn-gap",
        json!({
            "load": {"target": {"url": URL}, "rate": 40, "duration": "30s", "runners": {"parallelism": 2}},
            "thresholds": ["errorRate < 1%"],
        }),
    )
    .await;
    let uid = api.get("rn-gap").await.expect("get").uid().expect("uid");
    let starts = wait_for("the load's start", Duration::from_secs(90), || async {
        api.get("rn-gap").await.ok()?.status?.load_starts_at
    })
    .await
    .0;
    // Six seconds into the load, delete runner 1's pod (SIGTERM, as a drain or an eviction).
    let at = starts + k8s_openapi::jiff::SignedDuration::from_secs(6);
    let wait = at.duration_since(k8s_openapi::jiff::Timestamp::now());
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    let pods = runner_pods(&client, &uid).await;
    let (victim, ..) = pods.iter().find(|p| p.1 == "1").cloned().expect("runner 1's pod");
    let deleted_at = k8s_openapi::jiff::Timestamp::now();
    let t = Instant::now();
    kubectl(&["-n", DEMO, "delete", "pod", &victim, "--wait=false"]);
    let into = deleted_at.duration_since(starts).as_secs_f64();
    eprintln!("deleted runner 1's pod {victim} {into:.1}s into the load");
    let replacement = wait_for("runner 1's replacement pod to run", Duration::from_secs(60), || async {
        let pods = runner_pods(&client, &uid).await;
        pods.into_iter().find(|p| p.1 == "1" && p.0 != victim && p.4 == "Running").map(|p| p.0)
    })
    .await;
    let replaced_in = t.elapsed().as_secs_f64();
    eprintln!("replacement {replacement} Running {replaced_in:.1}s after the deletion");

    let lt = finished(&api, "rn-gap", Duration::from_secs(120)).await;
    let st = lt.status.expect("status");
    eprintln!("status: {}", serde_json::to_string_pretty(&st).unwrap_or_default());
    let message = st.run.message.clone().unwrap_or_default();
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Succeeded), Some(Verdict::Pass)), "{message}");
    let r1 = &st.runners[1];
    assert_eq!((r1.state.as_str(), r1.attempts), ("Done", Some(2)), "runner 1 resumed once: {r1:?}");
    assert_eq!(r1.pod.as_deref(), Some(replacement.as_str()), "{r1:?}");
    // The gap, named next to the verdict: "not measured while restarting: runner 1 As–Bs".
    let gap = message
        .split("runner 1 ")
        .nth(1)
        .and_then(|g| {
            let (from, rest) = g.split_once("s–")?;
            let to = rest.split('s').next()?;
            Some((from.parse::<u64>().ok()?, to.parse::<u64>().ok()?))
        })
        .unwrap_or_else(|| panic!("no gap of runner 1 in {message:?}"));
    let seconds = gap.1 - gap.0;
    eprintln!(
        "figure: runner gap {}s–{}s = {seconds} s (pod deleted {into:.1} s in, replacement Running after {replaced_in:.1} s)",
        gap.0, gap.1
    );
    // The gap starts at the last second runner 1 sealed before its SIGTERM and ends at the
    // second its replacement resumed. Its length is the Job controller's back-off before it
    // replaces a failed pod (10 s for a first failure) plus the new pod's start.
    assert!((gap.0 as f64) <= into + 1.0 && (gap.0 as f64) >= into - 3.0, "gap {gap:?}, deleted {into:.1}s in");
    assert!((10..=16).contains(&seconds), "gap {gap:?}");
    assert!((seconds as f64 - replaced_in).abs() <= 2.5, "gap {gap:?}, replacement Running after {replaced_in:.1}s");
    // Counts: runner 0 sends its 600; runner 1 its 600 less 20/s over the gap, within ±1 %.
    let r0 = st.runners[0].sent.expect("sent");
    assert!((594..=606).contains(&r0), "{:?}", st.runners[0]);
    let expected1 = 600 - 20 * seconds;
    let sent1 = r1.sent.expect("sent");
    // Runner 1 sends 20/s in every second outside the gap; the second its SIGTERM cut may be
    // lost as well (measured: 362 where its seconds hold 380).
    assert!(sent1 <= expected1 + 4 && sent1 + 24 >= expected1, "runner 1 sent {sent1}, expected {expected1}: {r1:?}");
    let total = st.requests.expect("requests").total;
    assert_eq!(total, r0 + sent1, "the status counts what the runners sent");
    let expected = 1200 - 20 * seconds;
    assert!(total <= expected + 6 && total + 30 >= expected, "total {total}, expected {expected}");
    eprintln!("figure: total {total} (expected {expected} = 1200 - 20/s x {seconds} s)");
}
