//! Autoscaling on the local cluster: kwok serves per-pod CPU usage from an annotation,
//! metrics-server scrapes it, and the HPA really scales. The AutoscalingCheck runs its load
//! (runner processes started here) while the harness turns the rate measured at the server into
//! the pods' usage, and judges the scale-up and the scale-down it sampled.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chaoslab::api::{AutoscalingCheck, LoadTest, Phase, Verdict};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

use crate::harness::{
    Operator, Runner, apply, create, finished, kubectl, lab, runner_job, server, stored_report, token_kubeconfig,
    wait_for,
};

#[tokio::test]
async fn an_hpa_scales_a_kwok_deployment_up_when_cpu_usage_rises() {
    let ns = "e2e-hpa";
    let client = lab(ns, true, "busy", 1).await;
    apply(&format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: busy, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: busy}}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n"
    ));
    // 300m of a 100m request is 300 % utilisation: the HPA should want more replicas.
    kubectl(&[
        "-n",
        ns,
        "patch",
        "deploy",
        "busy",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"kwok.x-k8s.io/usage-cpu":"300m"}}}}}"#,
    ]);
    kubectl(&["-n", ns, "rollout", "status", "deploy/busy", "--timeout=120s"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replicas = wait_for("the HPA to scale busy up", Duration::from_secs(180), || async {
        let d = deployments.get("busy").await.ok()?;
        let r = d.spec?.replicas?;
        (r > 1).then_some(r)
    })
    .await;
    assert!(replicas > 1);
    let metrics = kubectl(&["-n", ns, "get", "--raw", &format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods")]);
    assert!(metrics.contains("\"cpu\""), "pod metrics are served: {metrics}");
    let hpa = kubectl(&[
        "-n",
        ns,
        "get",
        "hpa",
        "busy",
        "-o",
        "jsonpath={.status.currentMetrics[0].resource.current.averageUtilization}",
    ]);
    assert!(hpa.trim().parse::<u32>().is_ok_and(|u| u > 50), "HPA sees utilisation {hpa}");
}

/// Until dropped: every 2 s, the pods of `app` are given the CPU usage the load measured at the
/// server makes (`millicores_per_request` × requests per second, shared by the pods), through
/// kwok's usage annotation. The HPA then sees what real pods under that load would use.
struct UsageFromLoad(tokio::task::JoinHandle<()>);

impl UsageFromLoad {
    fn start(client: &Client, ns: &str, app: &str, answered: Arc<AtomicU64>, millicores_per_request: u64) -> Self {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let selector = format!("app={app}");
        UsageFromLoad(tokio::spawn(async move {
            let mut last = (answered.load(Ordering::Relaxed), std::time::Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let now = (answered.load(Ordering::Relaxed), std::time::Instant::now());
                let rate = (now.0 - last.0) as f64 / now.1.duration_since(last.1).as_secs_f64();
                last = now;
                let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else { continue };
                let running: Vec<_> = list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
                let each = (rate * millicores_per_request as f64 / running.len().max(1) as f64).round() as u64;
                let patch =
                    json!({"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": format!("{}m", each.max(1))}}});
                for pod in running {
                    let _ = pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
                }
            }
        }))
    }
}

impl Drop for UsageFromLoad {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A status time as `human_duration` writes it (`850ms`, `3.2s`, `2m5s`), in seconds.
fn seconds(text: &str) -> f64 {
    let parsed = if let Some(ms) = text.strip_suffix("ms") {
        ms.parse::<f64>().ok().map(|ms| ms / 1000.0)
    } else if let Some((m, s)) = text.strip_suffix('s').and_then(|t| t.split_once('m')) {
        m.parse::<f64>().ok().zip(s.parse::<f64>().ok()).map(|(m, s)| m * 60.0 + s)
    } else {
        text.strip_suffix('s').and_then(|s| s.parse().ok())
    };
    parsed.unwrap_or_else(|| panic!("{text:?} is not a status time"))
}

/// Bounds of the AutoscalingCheck's times (seconds), from the runs measured here: the first
/// scale-up came 23–33 s after the load's start, the way back to one replica 12–13 s after its
/// end (docs/testing.md).
const UP_WITHIN: f64 = 45.0;
const DOWN_WITHIN: f64 = 25.0;

#[tokio::test]
async fn an_autoscaling_check_sees_the_hpa_scale_up_under_load_and_back_down_after_it() {
    let ns = "e2e-asc";
    let client = lab(ns, true, "busy", 1).await;
    apply(&format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: busy, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: busy}}\n  minReplicas: 1\n  maxReplicas: 4\n  metrics:\n  - type: Resource\n    resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}\n  behavior:\n    scaleDown: {{stabilizationWindowSeconds: 5}}\n"
    ));
    let (url, answered) = server(Duration::from_millis(2)).await;
    // 50 req/s × 4m = 200m: 200 % of one pod's 100m request, so the HPA wants 4 pods at 50 %.
    let _usage = UsageFromLoad::start(&client, ns, "busy", answered.clone(), 4);
    let _operator = Operator::start("asc", &[ns]);
    let api = create::<AutoscalingCheck>(
        &client,
        ns,
        "scales",
        json!({
            "target": {"deployment": "busy"},
            "load": {"target": {"url": url}, "rate": 50, "duration": "60s"},
            "expect": {"scaleUpWithin": "50s", "minPeakReplicas": 3, "slo": ["p99 < 500ms"], "scaleDownWithin": "90s", "maxFlaps": 2},
            "observeScaleDownFor": "2m",
        }),
    )
    .await;
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    let lt = wait_for("the check's LoadTest", Duration::from_secs(60), || async {
        loads.get_opt("scales-load").await.ok()?
    })
    .await;
    let job = runner_job(&client, ns, &lt.uid().expect("uid")).await;
    let _runner = Runner::start(&job, 0, &token_kubeconfig(ns, "chaoslab-runner"), "scales");

    let done = finished(&api, "scales", Duration::from_secs(300)).await;
    let st = done.status.clone().expect("status");
    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    assert_eq!(st.run.phase, Some(Phase::Succeeded), "{:?}", st.run.message);
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?} {:?}", st.run.message, st.judgement.expectations);
    let names: Vec<&str> = st.judgement.expectations.iter().map(|e| e.expression.as_str()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(st.peak_replicas.is_some_and(|p| (3..=4).contains(&p)), "{:?}", st.peak_replicas);
    // The times: the first scale-up takes the usage updater (every 2 s), metrics-server's 10 s
    // scrapes and the HPA's 5 s sync; the way back the same and the 5 s stabilization window.
    let up = seconds(st.time_to_first_scale_up.as_deref().expect("timeToFirstScaleUp"));
    let down = seconds(st.time_to_scale_down.as_deref().expect("timeToScaleDown"));
    eprintln!(
        "AutoscalingCheck: first scale-up {up:.1}s after the load's start, peak {:?} after {:?}, back to 1 {down:.1}s after its end",
        st.peak_replicas, st.time_to_peak
    );
    assert!(up <= UP_WITHIN, "first scale-up {up}s after the load's start");
    assert!(down <= DOWN_WITHIN, "back to one replica {down}s after the load's end");
    // The timeline: from one replica, up, and back to one.
    let desired: Vec<i32> = st.timeline.iter().map(|s| s.desired).collect();
    assert_eq!(desired.first(), Some(&1), "{desired:?}");
    assert!(desired.iter().any(|d| *d >= 3), "{desired:?}");
    assert_eq!(desired.last(), Some(&1), "{desired:?}");
    // The report carries the replica timeline and the load's seconds.
    let report = stored_report(&client, &done).await;
    assert_eq!(report["verdict"], "Pass");
    assert_eq!(report["replicas"].as_array().map(Vec::len), Some(st.timeline.len()));
    assert!(report["seconds"].as_array().is_some_and(|s| s.len() >= 50), "{}", report["seconds"]);
}

#[tokio::test]
async fn an_autoscaling_check_without_an_hpa_is_refused_with_the_reason() {
    let ns = "e2e-asc-none";
    let client = lab(ns, true, "lonely", 1).await;
    let _operator = Operator::start("asc-none", &[ns]);
    let api = create::<AutoscalingCheck>(
        &client,
        ns,
        "nohpa",
        json!({"target": {"deployment": "lonely"}, "load": {"target": {"url": "http://127.0.0.1:9/"}, "rate": 5, "duration": "10s"}}),
    )
    .await;
    let done = finished(&api, "nohpa", Duration::from_secs(30)).await;
    let st = done.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    let message = st.run.message.unwrap_or_default();
    assert!(message.contains("no HorizontalPodAutoscaler scales the Deployment \"lonely\""), "{message}");
    let accepted = st.run.conditions.iter().find(|c| c.type_ == "Accepted").expect("Accepted");
    assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "NoAutoscaler"));
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    assert!(loads.list(&ListParams::default()).await.expect("list").items.is_empty(), "no load was started");
}
