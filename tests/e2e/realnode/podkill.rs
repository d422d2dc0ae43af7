//! PodKill on the real node: a catalog pod of the demo deleted; its replacement is a real
//! container that starts and passes its readiness probe (seconds, not kwok's milliseconds); the
//! killed pod shuts down gracefully (the chart's default) and its container exits 0.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chaoslab::api::{PodKill, Verdict};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{WatchEvent, WatchParams},
};
use serde_json::json;

use super::{DEMO, node, ready, seconds_between};
use crate::harness::{create, finished, run, wait_for};

/// What a watch saw of a pod's container ending: (exit code, reason, finishedAt).
type Endings = Arc<Mutex<BTreeMap<String, (i32, String, String)>>>;

fn watch_endings(api: Api<Pod>, labels: &str) -> (Endings, tokio::task::JoinHandle<()>) {
    let endings: Endings = Arc::default();
    let seen = endings.clone();
    let params = WatchParams::default().labels(labels).timeout(120);
    let task = tokio::spawn(async move {
        let Ok(stream) = api.watch(&params, "0").await else { return };
        let mut stream = stream.boxed();
        while let Some(Ok(event)) = stream.next().await {
            let pod = match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => p,
                _ => continue,
            };
            let terminated = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.first())
                .and_then(|c| c.state.as_ref()?.terminated.clone());
            if let Some(t) = terminated {
                let finished = t.finished_at.map(|f| f.0.to_string()).unwrap_or_default();
                seen.lock()
                    .expect("lock")
                    .insert(pod.name_any(), (t.exit_code, t.reason.unwrap_or_default(), finished));
            }
        }
    });
    (endings, task)
}

#[tokio::test]
async fn a_killed_demo_pod_exits_0_and_its_replacement_is_a_real_start() {
    let client = ready().await;
    let _ =
        run("kubectl", &["-n", DEMO, "delete", "podkill", "rn-kill", "--ignore-not-found", "--wait", "--timeout=90s"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), DEMO);
    let (endings, watch) = watch_endings(pods.clone(), "app=catalog");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let api = create::<PodKill>(
        &client,
        DEMO,
        "rn-kill",
        json!({"selector": {"matchLabels": {"app": "catalog"}}, "mode": "one", "method": "delete", "recoveryDeadline": "1m"}),
    )
    .await;
    let pk = finished(&api, "rn-kill", Duration::from_secs(120)).await;
    let st = pk.status.clone().expect("status");
    eprintln!("status: {}", serde_json::to_string_pretty(&st).unwrap_or_default());
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?}", st.run.message);
    assert_eq!(st.targets.len(), 1);
    let target = &st.targets[0];
    assert_eq!(target.node.as_deref(), Some(node().as_str()));
    let recovery = target.recovery_seconds.expect("recoverySeconds");
    // A real container: image already there, start, a readiness probe; not kwok's milliseconds.
    assert!(recovery > 0.1 && recovery < 60.0, "recovery {recovery} s");
    let killed_at = target.killed_at.as_ref().expect("killedAt").0.to_string();

    // The replacement's own record agrees: its container started after the kill, and its Ready
    // condition (kept to the second) turned True when the operator says.
    let replacement = pods.get(target.replacement.as_deref().expect("a replacement")).await.expect("the replacement");
    let status = replacement.status.clone().expect("status");
    let started =
        status.container_statuses.as_ref().and_then(|c| c[0].state.as_ref()?.running.as_ref()?.started_at.clone());
    let started = started.expect("the replacement's container runs").0.to_string();
    let ready_at = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.clone())
        .expect("a Ready condition")
        .0
        .to_string();
    let to_start = seconds_between(&killed_at, &started);
    let to_ready = seconds_between(&killed_at, &ready_at);
    eprintln!(
        "figure: podkill recovery {recovery:.3} s (container started {to_start:.1} s, Ready {to_ready:.1} s after the kill, to the second)"
    );
    assert!(to_start > -1.0 && to_start <= recovery + 1.0, "started {to_start} s after the kill");
    assert!((to_ready - recovery).abs() <= 1.5, "Ready {to_ready} s (to the second) vs recovery {recovery} s");

    // The killed pod's container ended by itself, gracefully: exit 0, after serving on for the
    // shutdown delay (5 s) with readiness failing.
    let ended = wait_for("the killed pod's last state", Duration::from_secs(60), || {
        let endings = endings.clone();
        let pod = target.pod.clone();
        async move { endings.lock().expect("lock").get(&pod).cloned() }
    })
    .await;
    watch.abort();
    let (code, reason, finished_at) = ended;
    let shutdown = seconds_between(&killed_at, &finished_at);
    eprintln!(
        "figure: killed pod {} exit {code} ({reason}) {shutdown:.1} s after its deletion (to the second)",
        target.pod
    );
    assert_eq!((code, reason.as_str()), (0, "Completed"), "graceful shutdown exits 0");
    assert!((4.0..=9.0).contains(&shutdown), "exited {shutdown} s after the kill; the shutdown delay is 5 s");
}
