//! PodKill on the real API server: kills, refusals, crash recovery and deletion.

use std::time::Duration;

use chaoslab::api::{
    Phase, PodKill, Verdict,
    podkill::{KillAction, Recovery},
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::json;

use crate::harness::{Operator, apply, client, create, finished, lab, lease_holder, namespace, wait_for};

#[tokio::test]
async fn a_podkill_deletes_a_pod_and_passes_with_recovery_times() {
    let ns = "e2e-podkill";
    let client = lab(ns, true, "web", 3).await;
    let operator = Operator::start("podkill", &[ns]);
    let api = create::<PodKill>(&client, ns, "kill-two", json!({"selector": {"matchLabels": {"app": "web"}}, "mode": "fixed", "value": 2, "recoveryDeadline": "60s", "seed": 11})).await;
    let pk = finished(&api, "kill-two", Duration::from_secs(90)).await;
    let st = pk.status.clone().expect("status");
    assert_eq!(st.run.phase, Some(Phase::Succeeded), "{:?}\n{}", st.run.message, operator.log());
    // It acted as the leader on the chart's Lease: the API server names it the holder.
    assert_eq!(lease_holder(&client).await.as_deref(), Some(operator.identity.as_str()), "the Lease's holder");
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?}", st.run.message);
    assert_eq!(st.killed, Some(2));
    assert_eq!(st.seed, Some(11));
    for t in &st.targets {
        assert_eq!(t.action, KillAction::Killed);
        assert_eq!(t.recovery, Recovery::Recovered);
        assert!(t.owner.as_deref().is_some_and(|o| o.starts_with("ReplicaSet/web-")), "{t:?}");
        assert!(t.replacement.is_some() && t.replacement_ready_at.is_some(), "{t:?}");
        let secs = t.recovery_seconds.expect("recovery time");
        assert!((0.0..60.0).contains(&secs), "recovery {secs}s");
    }
    assert!(st.max_recovery.is_some() && st.max_recovery_seconds.is_some());
    let replacements: std::collections::BTreeSet<_> = st.targets.iter().filter_map(|t| t.replacement.clone()).collect();
    assert_eq!(replacements.len(), 2, "each target has its own replacement");
    // The report: owned by the PodKill, every target with its kill and Ready, one bar each.
    let report = crate::harness::stored_report(&client, &pk).await;
    assert_eq!(report["verdict"], "Pass");
    let targets = report["podKill"]["targets"].as_array().expect("the targets");
    assert_eq!(targets.len(), 2);
    for (t, stored) in st.targets.iter().zip(targets) {
        assert_eq!(stored["pod"], t.pod.as_str());
        assert_eq!(stored["replacement"].as_str(), t.replacement.as_deref());
        assert_eq!(stored["recoverySeconds"].as_f64(), t.recovery_seconds);
    }
    assert_eq!(report["podKill"]["maxRecoverySeconds"].as_f64(), st.max_recovery_seconds);
    assert_eq!(report["expectations"][0]["passed"], true);
    let cm = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), ns)
        .get("kill-two-report")
        .await
        .expect("the report ConfigMap");
    let kills = cm.data.unwrap_or_default().remove("kills.svg").expect("kills.svg");
    assert_eq!(kills.matches("fill=\"#C8501E\"").count(), 2, "one bar per killed target");
    eprintln!("PodKill report: max recovery {:?} s, targets {targets:?}", st.max_recovery_seconds);
    // The killed pods are gone and the Deployment is whole again.
    let pods = crate::harness::kubectl(&["-n", ns, "get", "pods", "-l", "app=web", "-o", "name"]);
    for t in &st.targets {
        assert!(!pods.contains(&format!("pod/{}\n", t.pod)), "{} still exists", t.pod);
    }
    let conditions: Vec<_> =
        st.run.conditions.iter().map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str())).collect();
    assert!(
        conditions.contains(&("Finished", "True", "Pass")) && conditions.contains(&("Accepted", "True", "Accepted")),
        "{conditions:?}"
    );
    // Events were written for the run.
    let events =
        crate::harness::kubectl(&["-n", ns, "get", "events.events.k8s.io", "-o", "jsonpath={.items[*].reason}"]);
    for reason in ["Started", "RoundStarted", "Killed", "Recovered", "Finished"] {
        assert!(events.contains(reason), "no {reason} Event in {events}");
    }
    // The operator exports the run's outcome.
    let metrics = wait_for("the experiment gauge", Duration::from_secs(10), || async {
        let m = operator.metrics();
        let counted = r#"chaoslab_experiments{kind="PodKill",phase="Succeeded",verdict="Pass"} 1"#;
        m.lines().any(|l| l == counted).then_some(m)
    })
    .await;
    assert!(metrics.lines().any(|l| l.starts_with(r#"chaoslab_reconciliations_total{kind="PodKill"} "#)), "{metrics}");
    let verdict =
        r#"chaoslab_experiment_verdict{kind="PodKill",namespace="e2e-podkill",name="kill-two",verdict="Pass"} 1.0"#;
    assert!(metrics.lines().any(|l| l == verdict), "{metrics}");
    // The finalizer was there while it ran, and deleting the finished PodKill is immediate.
    assert!(pk.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == "chaoslab.dev/cleanup")));
    api.delete("kill-two", &Default::default()).await.expect("delete");
    wait_for("the finished PodKill to be deleted", Duration::from_secs(15), || async {
        api.get_opt("kill-two").await.ok()?.is_none().then_some(())
    })
    .await;
    // SIGTERM: the operator releases the Lease before it exits, so a successor leads at once.
    drop(operator);
    assert_eq!(lease_holder(&client).await, None, "the Lease is released on shutdown");
}

#[tokio::test]
async fn an_eviction_blocked_by_a_disruption_budget_is_recorded_and_inconclusive() {
    let ns = "e2e-evict";
    let client = lab(ns, true, "web", 2).await;
    apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  minAvailable: 2\n  selector: {{matchLabels: {{app: web}}}}\n"
    ));
    // The disruption controller must have computed the budget before the eviction is tried.
    wait_for("the PDB status", Duration::from_secs(60), || async {
        let out = crate::harness::kubectl(&["-n", ns, "get", "pdb", "web", "-o", "jsonpath={.status.expectedPods}"]);
        (out.trim() == "2").then_some(())
    })
    .await;
    let before = pod_uids(ns, "web");
    assert_eq!(before.len(), 2, "two web pods before the PodKill: {before:?}");
    let _operator = Operator::start("evict", &[ns]);
    let api = create::<PodKill>(
        &client,
        ns,
        "evict-one",
        json!({"selector": {"matchLabels": {"app": "web"}}, "method": "evict"}),
    )
    .await;
    let st = finished(&api, "evict-one", Duration::from_secs(60)).await.status.expect("status");
    assert_eq!(st.run.verdict, Some(Verdict::Inconclusive), "{:?}", st.run.message);
    assert_eq!(st.targets.len(), 1);
    assert_eq!(st.targets[0].action, KillAction::Refused);
    assert!(
        st.targets[0].reason.as_deref().unwrap_or_default().contains("disruption budget"),
        "{:?}",
        st.targets[0].reason
    );
    assert_eq!(st.killed, Some(0));
    // The same pods, not just as many: a ReplicaSet would have replaced an evicted one.
    assert_eq!(pod_uids(ns, "web"), before, "no pod was evicted");
}

/// The UIDs of the pods labelled `app: APP` in `ns`.
fn pod_uids(ns: &str, app: &str) -> std::collections::BTreeSet<String> {
    let selector = format!("app={app}");
    let out =
        crate::harness::kubectl(&["-n", ns, "get", "pods", "-l", &selector, "-o", "jsonpath={.items[*].metadata.uid}"]);
    out.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test]
async fn a_namespace_that_did_not_opt_in_is_refused_with_a_condition() {
    let ns = "e2e-optout";
    let client = lab(ns, false, "web", 1).await;
    let before = pod_uids(ns, "web");
    assert_eq!(before.len(), 1, "one web pod before the PodKill: {before:?}");
    let _operator = Operator::start("optout", &[ns]);
    let api = create::<PodKill>(&client, ns, "refused", json!({"selector": {"matchLabels": {"app": "web"}}})).await;
    let st = finished(&api, "refused", Duration::from_secs(30)).await.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    let accepted = st.run.conditions.iter().find(|c| c.type_ == "Accepted").expect("Accepted condition");
    assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "NamespaceNotOptedIn"));
    assert!(
        accepted.message.contains("kubectl label namespace e2e-optout chaoslab.dev/chaos=enabled"),
        "{}",
        accepted.message
    );
    assert!(st.targets.is_empty());
    assert_eq!(pod_uids(ns, "web"), before, "nothing was killed");
}

#[tokio::test]
async fn a_killed_operator_resumes_a_repeated_podkill_without_extra_kills() {
    let ns = "e2e-crash";
    let client = lab(ns, true, "web", 4).await;
    let operator = Operator::start("crash", &[ns]);
    let api = create::<PodKill>(&client, ns, "rounds", json!({"selector": {"matchLabels": {"app": "web"}}, "interval": "4s", "duration": "12s", "recoveryDeadline": "60s"})).await;
    // Kill the operator (SIGKILL) after the first round's kill is recorded, in the middle of the
    // run. Waiting only for the round would race the kill itself: an operator stopped between
    // writing the plan and recording the kill finds the pod gone on resume and, unable to prove
    // the kill was its own, records it as Gone (the planner's unit tests cover that case).
    wait_for("round 1's kill to be recorded", Duration::from_secs(30), || async {
        let st = api.get("rounds").await.ok()?.status?;
        st.targets.first().is_some_and(|t| t.action == KillAction::Killed).then_some(())
    })
    .await;
    operator.kill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = api.get("rounds").await.expect("get").status.expect("status");
    assert_eq!(during.run.phase, Some(Phase::Running), "nothing moves while the operator is down");
    let _restarted = Operator::start("crash", &[ns]);
    let st = finished(&api, "rounds", Duration::from_secs(120)).await.status.expect("status");
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?}", st.run.message);
    assert_eq!(st.rounds, Some(3), "12s / 4s = 3 rounds");
    assert_eq!(st.targets.len(), 3, "mode one: exactly one target per round, none twice: {:?}", st.targets);
    let rounds: Vec<u32> = st.targets.iter().map(|t| t.round).collect();
    assert_eq!(rounds, [0, 1, 2], "one target in each round (0-based): {:?}", st.targets);
    let uids: std::collections::BTreeSet<_> = st.targets.iter().map(|t| t.uid.clone()).collect();
    assert_eq!(uids.len(), 3, "no pod was chosen twice");
    assert!(
        st.targets.iter().all(|t| t.action == KillAction::Killed && t.recovery == Recovery::Recovered),
        "{:?}",
        st.targets
    );
}

#[tokio::test]
async fn deleting_a_running_podkill_ends_at_once() {
    let ns = "e2e-delete";
    let client = lab(ns, true, "web", 3).await;
    let _operator = Operator::start("delete", &[ns]);
    let api = create::<PodKill>(
        &client,
        ns,
        "long",
        json!({"selector": {"matchLabels": {"app": "web"}}, "interval": "5s", "duration": "10m"}),
    )
    .await;
    wait_for("the run to start", Duration::from_secs(30), || async {
        (api.get("long").await.ok()?.status?.rounds? >= 1).then_some(())
    })
    .await;
    let start = std::time::Instant::now();
    api.delete("long", &Default::default()).await.expect("delete");
    wait_for("the running PodKill to be gone", Duration::from_secs(10), || async {
        api.get_opt("long").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// Uncordons a node when dropped, so a failing test leaves the cluster usable.
struct Cordoned(&'static str);

impl Drop for Cordoned {
    fn drop(&mut self) {
        let _ = crate::harness::run("kubectl", &["uncordon", self.0]);
    }
}

#[tokio::test]
async fn deleting_the_target_deployment_mid_run_never_blocks() {
    let client = client().await;
    let ns = "e2e-owner-gone";
    let node = "kwok-node-2";
    namespace(&client, ns, true).await;
    apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      nodeSelector: {{kubernetes.io/hostname: {node}}}\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: app, image: 'nginx:1.27'}}]\n"
    ));
    crate::harness::kubectl(&["-n", ns, "rollout", "status", "deploy/web", "--timeout=120s"]);
    // The replacement cannot be scheduled, so the run waits for recovery when the owner goes.
    crate::harness::kubectl(&["cordon", node]);
    let _uncordon = Cordoned(node);
    let _operator = Operator::start("owner-gone", &[ns]);
    let api = create::<PodKill>(
        &client,
        ns,
        "orphan",
        json!({"selector": {"matchLabels": {"app": "web"}}, "recoveryDeadline": "10m"}),
    )
    .await;
    wait_for("the kill", Duration::from_secs(30), || async {
        (api.get("orphan").await.ok()?.status?.killed? >= 1).then_some(())
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments.delete("web", &kube::api::DeleteParams::foreground()).await.expect("delete deployment");
    let pk = finished(&api, "orphan", Duration::from_secs(60)).await;
    let st = pk.status.expect("status");
    assert_eq!(st.run.verdict, Some(Verdict::Inconclusive), "{:?}", st.run.message);
    assert_eq!(st.targets[0].recovery, Recovery::OwnerGone);
    assert!(st.run.message.unwrap_or_default().contains("was deleted during the run"));
    api.delete("orphan", &Default::default()).await.expect("delete");
    wait_for("the PodKill to be gone", Duration::from_secs(10), || async {
        api.get_opt("orphan").await.ok()?.is_none().then_some(())
    })
    .await;
}
