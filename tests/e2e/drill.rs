//! Drill on the local cluster: the operator conducts the run through children it owns (a
//! LoadTest whose runner processes are started here, as kwok's pods execute nothing; a
//! ServiceFault and a PodKill), writes each phase's figures and the verdict, and leaves no fault
//! behind: at the end of the run, and when the operator is SIGKILLed mid-fault.

use std::{collections::BTreeMap, time::Duration};

use chaoslab::api::{CircuitBreakerTrial, Drill, LoadTest, Phase, PodKill, ServiceFault, Verdict, figures::PhaseName};
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

use crate::{
    harness::{Operator, Runner, apply, create, finished, lab, runner_job, server, token_kubeconfig, wait_for},
    servicefault::assert_restored,
};

/// Deployment `web` (3 pods) behind Service `web`.
async fn target(ns: &str) -> Client {
    let client = lab(ns, true, "web", 3).await;
    apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    ));
    client
}

/// Starts the runner of the Drill's load once the operator has created its LoadTest and Job.
fn run_the_load(client: &Client, ns: &str, drill: &str) -> tokio::task::JoinHandle<Runner> {
    let (client, ns, name) = (client.clone(), ns.to_owned(), format!("{drill}-load"));
    tokio::spawn(async move {
        let loads: Api<LoadTest> = Api::namespaced(client.clone(), &ns);
        let lt =
            wait_for("the Drill's LoadTest", Duration::from_secs(60), || async { loads.get_opt(&name).await.ok()? })
                .await;
        let job = runner_job(&client, &ns, &lt.uid().expect("uid")).await;
        let kubeconfig = token_kubeconfig(&ns, "chaoslab-runner");
        Runner::start(&job, 0, &kubeconfig, &name)
    })
}

/// Waits (at most 30 s) until Service `web` selects what it selected `before` the fault, then
/// holds it to `before` exactly (spec, labels, annotations).
async fn restored(services: &Api<Service>, before: &Service) {
    let after = wait_for("the Service to be restored", Duration::from_secs(30), || async {
        let svc = services.get("web").await.ok()?;
        (selector(&svc) == selector(before)).then_some(svc)
    })
    .await;
    assert_restored(before, &after);
}

fn selector(svc: &Service) -> BTreeMap<String, String> {
    svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_drill_runs_its_phases_with_a_pod_kill_and_a_service_fault_and_reverts_everything() {
    let ns = "e2e-drill";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let (url, answered) = server(Duration::from_millis(2)).await;
    let operator = Operator::start("drill", &[ns]);
    let api = create::<Drill>(
        &client,
        ns,
        "gameday",
        json!({
            "load": {"target": {"url": url}, "rate": 50},
            "phases": {"baseline": "4s", "inject": "12s", "recover": "4s", "cooldown": "1s"},
            "faults": [
                {"name": "slow", "startAfter": "1s", "duration": "5s",
                 "serviceFault": {"service": "web", "ports": ["http"], "faults": [{"type": "latency", "latency": {"delay": "50ms"}}]}},
                {"name": "kill", "startAfter": "7s", "podKill": {"selector": {"matchLabels": {"app": "web"}}, "mode": "one"}},
            ],
            "expectations": ["errorRate < 5%", "p99 < 500ms"],
            "recovery": {"within": "10s"},
        }),
    )
    .await;
    let runner = run_the_load(&client, ns, "gameday");

    // While the service fault is on, its ServiceFault (owned by the Drill) holds the Service.
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    let sf = wait_for("the service fault to inject", Duration::from_secs(120), || async {
        let sf = faults.get_opt("gameday-fault-slow").await.ok()??;
        sf.status.as_ref()?.injected_at.as_ref()?;
        Some(sf)
    })
    .await;
    let drill_uid = api.get("gameday").await.expect("get").uid().expect("uid");
    assert!(sf.owner_references().iter().any(|o| o.uid == drill_uid && o.controller == Some(true)));
    let during = services.get("web").await.expect("the Service");
    assert_ne!(selector(&during), selector(&before), "the Service selects the proxy during the fault");

    let drill = finished(&api, "gameday", Duration::from_secs(120)).await;
    let st = drill.status.clone().expect("status");
    // The record, for the log of the run (`make e2e` keeps the output).
    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    assert_eq!(st.run.phase, Some(Phase::Succeeded), "{:?}", st.run.message);
    // The proxy pods run on kwok (no traffic crosses them); the pod kill had its effect.
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?} {:?}", st.run.message, st.judgement.expectations);
    assert_eq!(
        st.judgement.expectations.len(),
        3,
        "two expectations and recoveredWithin: {:?}",
        st.judgement.expectations
    );

    // Each phase with its own figures: 50 req/s, to a request either way over its seconds.
    for name in [PhaseName::Baseline, PhaseName::Inject, PhaseName::Recover] {
        let phase = st.judgement.phases.iter().find(|p| p.name == name).expect("the phase in status");
        let rate = phase.throughput.expect("its throughput");
        assert!((49.5..=50.5).contains(&rate), "{name:?}: {rate} req/s ({phase:?})");
        assert_eq!(phase.error_rate, Some(0.0), "{phase:?}");
        assert!(phase.latency.as_ref().is_some_and(|l| l.p50_ms >= 2.0), "{phase:?}");
    }
    // 50 req/s for the 20 s of baseline, inject and recover: 1000 requests, each reaching the
    // server once, to a request either way.
    let reached = answered.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("the Drill's load: {reached} requests reached the server");
    assert!((999..=1001).contains(&reached), "{reached} requests reached the server, planned 1000");

    // The record: both faults were injected and ended, each child kept its own account.
    for window in &st.faults {
        assert!(window.started_at.is_some() && window.reverted_at.is_some(), "{window:?}");
    }
    // With the evidence of each fault's effect: the kill's pod, and the proxy that no request
    // crossed (kwok pods have no network).
    let (slow, kill) = (&st.faults[0], &st.faults[1]);
    assert_eq!(kill.observed, Some(true), "{kill:?}");
    assert!(
        kill.effect.as_deref().is_some_and(|e| e.starts_with("1 pod(s) killed by gameday-fault-kill: web-")),
        "{kill:?}"
    );
    assert_eq!(slow.observed, Some(false), "{slow:?}");
    assert!(slow.effect.as_deref().is_some_and(|e| e.contains("gameday-fault-slow")), "{slow:?}");
    let kills: Api<PodKill> = Api::namespaced(client.clone(), ns);
    let pk = kills.get("gameday-fault-kill").await.expect("the PodKill child");
    assert_eq!(pk.status.as_ref().and_then(|s| s.killed), Some(1));
    let sf = faults.get("gameday-fault-slow").await.expect("the ServiceFault child");
    assert!(sf.status.as_ref().is_some_and(|s| s.reverted_at.is_some()), "{:?}", sf.status);
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    let lt = loads.get("gameday-load").await.expect("the LoadTest child");
    assert_eq!(lt.status.as_ref().and_then(|s| s.run.phase), Some(Phase::Succeeded));
    let counted = lt.status.as_ref().and_then(|s| s.requests.as_ref()).map(|r| r.total);
    assert_eq!(counted, Some(reached), "the load counted what the server answered");

    // An Event as each phase started and ended, for dashboards' annotations; one per fault.
    let notes = crate::harness::kubectl(&["-n", ns, "get", "events.events.k8s.io", "-o", "jsonpath={.items[*].note}"]);
    for told in [
        "baseline started: seconds 0–4",
        "inject started: seconds 4–16",
        "inject ended: seconds 4–16",
        "recover started: seconds 16–20",
        "fault slow injected",
        "fault kill injected",
        "fault slow reverted",
    ] {
        assert!(notes.contains(told), "no Event {told:?} in {notes}");
    }

    // The report: owned by the Drill, every second of the load, the fault windows.
    let report = crate::harness::stored_report(&client, &drill).await;
    assert_eq!(report["verdict"], "Pass");
    assert!(report["seconds"].as_array().is_some_and(|s| s.len() >= 19), "{}", report["seconds"]);
    assert_eq!(report["faults"].as_array().map(Vec::len), Some(2));

    // The operator exports the figures it measured, as status has them.
    let metrics = wait_for("the Drill's figures in the metrics", Duration::from_secs(10), || async {
        let m = operator.metrics();
        let verdict =
            r#"chaoslab_experiment_verdict{kind="Drill",namespace="e2e-drill",name="gameday",verdict="Pass"} 1.0"#;
        m.lines().any(|l| l == verdict).then_some(m)
    })
    .await;
    let inject = st.judgement.phases.iter().find(|p| p.name == PhaseName::Inject).expect("inject");
    let who = r#"kind="Drill",namespace="e2e-drill",name="gameday",phase="inject""#;
    let exported = |family: &str| -> f64 {
        let prefix = format!("{family}{{{who}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert_eq!(Some(exported("chaoslab_phase_throughput")), inject.throughput);
    assert_eq!(Some(exported("chaoslab_phase_error_ratio")), inject.error_rate);
    assert!((exported("chaoslab_phase_seconds") - 12.0).abs() < 1.0, "{metrics}");

    // Nothing left behind: the Service is exactly as before.
    assert_restored(&before, &services.get("web").await.expect("the Service"));
    drop(runner.await.expect("the runner"));
}

#[tokio::test]
async fn an_operator_killed_mid_drill_leaves_no_fault_behind() {
    let ns = "e2e-drill-crash";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let operator = Operator::start("drill-crash", &[ns]);
    let (api, runner) = mid_fault(&client, ns, "crash").await;
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    assert_ne!(selector(&services.get("web").await.expect("Service")), selector(&before));

    operator.kill();
    let _restarted = Operator::start("drill-crash-2", &[ns]);
    let drill = finished(&api, "crash", Duration::from_secs(90)).await;
    let st = drill.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    assert!(st.run.message.as_deref().is_some_and(|m| m.contains("interrupted")), "{:?}", st.run.message);
    // Long before the fault's own expiry (110 s), the Service is restored and the load ended.
    restored(&services, &before).await;
    let phase = wait_for("the ServiceFault to end", Duration::from_secs(30), || async {
        faults.get("crash-fault-slow").await.ok()?.status?.run.phase.filter(|p| p.is_terminal())
    })
    .await;
    assert_eq!(phase, Phase::Aborted, "the restarted operator ended the fault");
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    wait_for("the load to end", Duration::from_secs(30), || async {
        loads.get("crash-load").await.ok()?.status?.run.phase.filter(|p| p.is_terminal())
    })
    .await;
    drop(runner.await.expect("the runner"));
}

/// A Drill of one long service fault on `web`, with its load running; returns once the fault is
/// injected.
async fn mid_fault(client: &Client, ns: &str, name: &str) -> (Api<Drill>, tokio::task::JoinHandle<Runner>) {
    let (url, _) = server(Duration::from_millis(1)).await;
    let api = create::<Drill>(
        client,
        ns,
        name,
        json!({
            "load": {"target": {"url": url}, "rate": 20},
            "phases": {"baseline": "2s", "inject": "120s", "recover": "2s"},
            "faults": [{"name": "slow", "duration": "110s",
                        "serviceFault": {"service": "web", "faults": [{"type": "latency", "latency": {"delay": "50ms"}}]}}],
        }),
    )
    .await;
    let runner = run_the_load(client, ns, name);
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    let child = format!("{name}-fault-slow");
    wait_for("the service fault to inject", Duration::from_secs(120), || async {
        faults.get_opt(&child).await.ok()??.status?.injected_at.map(|_| ())
    })
    .await;
    (api, runner)
}

#[tokio::test]
async fn the_abort_annotation_reverts_the_faults_and_the_drill_is_aborted() {
    let ns = "e2e-drill-abort";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let _operator = Operator::start("drill-abort", &[ns]);
    let (api, runner) = mid_fault(&client, ns, "stop").await;
    let patch = json!({"metadata": {"annotations": {"chaoslab.dev/abort": "true"}}});
    api.patch("stop", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
    let drill = finished(&api, "stop", Duration::from_secs(60)).await;
    let st = drill.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Aborted), Some(Verdict::Aborted)), "{:?}", st.run.message);
    let record = st.judgement.aborted_by.expect("the record of the abort");
    assert_eq!(record.rule, "the chaoslab.dev/abort annotation");
    assert!(st.faults[0].reverted_at.is_some(), "{:?}", st.faults);
    assert_restored(&before, &services.get("web").await.expect("the Service"));
    drop(runner.await.expect("the runner"));
}

#[tokio::test]
async fn deleting_a_drill_mid_fault_restores_the_service_and_removes_its_children() {
    let ns = "e2e-drill-delete";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let _operator = Operator::start("drill-delete", &[ns]);
    let (api, runner) = mid_fault(&client, ns, "gone").await;
    api.delete("gone", &DeleteParams::default()).await.expect("delete the Drill");
    wait_for("the Drill to be gone", Duration::from_secs(60), || async {
        api.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;
    assert_restored(&before, &services.get("web").await.expect("the Service"));
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    wait_for("the children to go with the Drill", Duration::from_secs(60), || async {
        let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
        let left = faults.list(&Default::default()).await.ok()?.items.len()
            + loads.list(&Default::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    drop(runner.await.expect("the runner"));
}

#[tokio::test]
async fn an_operator_stopped_mid_drill_reverts_and_records_why_before_it_exits() {
    let ns = "e2e-drill-stop";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let operator = Operator::start("drill-stop", &[ns]);
    let (api, runner) = mid_fault(&client, ns, "halt").await;
    // SIGTERM (a rolling update, a drained node): the run stops before the process exits.
    drop(operator);
    let drill = api.get("halt").await.expect("the Drill");
    let st = drill.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Aborted), Some(Verdict::Aborted)), "{:?}", st.run.message);
    assert!(st.run.message.as_deref().is_some_and(|m| m.contains("the operator stopped")), "{:?}", st.run.message);
    assert!(st.faults[0].reverted_at.is_some(), "{:?}", st.faults);
    assert_restored(&before, &services.get("web").await.expect("the Service"));
    drop(runner.await.expect("the runner"));
}

#[tokio::test]
async fn a_breaker_trial_carries_its_dependency_through_the_load_and_says_why_kwok_cannot_judge_it() {
    let ns = "e2e-cbt";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service");
    let (url, _) = server(Duration::from_millis(1)).await;
    let _operator = Operator::start("cbt", &[ns]);
    let api = create::<CircuitBreakerTrial>(
        &client,
        ns,
        "breaker",
        json!({
            "load": {"target": {"url": url}, "rate": 20},
            "dependency": {"service": "web", "faults": [{"type": "abort", "percent": 50, "abort": {"status": 503}}]},
            "phases": {"warmup": "6s", "baseline": "4s", "inject": "6s", "recover": "4s"},
            "expect": {"opensWithin": "5s", "closesWithin": "5s"},
        }),
    )
    .await;
    let runner = run_the_load(&client, ns, "breaker");
    // The dependency's ServiceFault exists from the load's start, its faults only in inject.
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    let sf = wait_for("the dependency to be carried by the proxy", Duration::from_secs(120), || async {
        let sf = faults.get_opt("breaker-fault-web-faults").await.ok()??;
        sf.status.as_ref()?.injected_at.as_ref()?;
        Some(sf)
    })
    .await;
    let lt = Api::<LoadTest>::namespaced(client.clone(), ns).get("breaker-load").await.expect("the load");
    let load_start = lt.status.and_then(|s| s.load_starts_at).expect("the load's start").0;
    let start = sf.spec.faults_start_at.as_ref().expect("faultsStartAt").0;
    assert_eq!(start.duration_since(load_start).as_secs(), 10, "warmup + baseline after the load's start");
    assert_eq!(sf.spec.faults_for.map(|d| d.as_std().as_secs()), Some(6), "the inject phase");
    let injected = sf.status.as_ref().and_then(|s| s.injected_at.as_ref()).expect("injectedAt").0;
    assert!(injected < start, "the proxy carries the dependency before the faults begin");

    let trial = finished(&api, "breaker", Duration::from_secs(120)).await;
    let st = trial.status.expect("status");
    // kwok's proxy pods run nothing: the dependency's calls cannot be read, and the trial says so
    // instead of judging a breaker it never saw.
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)), "{:?}", st.run.message);
    let message = st.run.message.unwrap_or_default();
    assert!(
        message.contains("the proxy in front of the dependency (breaker-fault-web-faults) could not be read"),
        "{message}"
    );
    restored(&services, &before).await;
    drop(runner.await.expect("the runner"));
}
