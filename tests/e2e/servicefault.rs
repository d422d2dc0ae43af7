//! ServiceFault on the real API server: the selector switch through a proxy Deployment and a
//! shadow Service, and its exact revert on expiry, on deletion, on abort and after an operator
//! SIGKILL; a Service deleted mid-fault; a second fault on the same Service refused. The proxy
//! pods run on kwok nodes (they do not execute), so no traffic crosses them here and a fault
//! that ran to its end is Inconclusive; the data plane is tested on loopback (tests/it/proxy.rs).

use std::{collections::BTreeMap, time::Duration};

use chaoslab::api::{Phase, ServiceFault, Verdict};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::harness::{Operator, apply, finished, kubectl, lab, wait_for};

const PROXY_LABEL: &str = "chaoslab.dev/proxy";

/// The target: Deployment `web` (3 pods) and Service `web` with a numbered and a named port.
async fn target(ns: &str) -> Client {
    let client = lab(ns, true, "web", 3).await;
    apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}, annotations: {{team: lab}}}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n  - {{name: admin, port: 81, targetPort: admin}}\n"
    ));
    client
}

async fn create(client: &Client, ns: &str, name: &str, duration: &str) -> Api<ServiceFault> {
    let api: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    let sf: ServiceFault = serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": "ServiceFault",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "service": "web",
            "ports": ["http"],
            "faults": [{"type": "latency", "latency": {"delay": "50ms"}}, {"type": "abort", "percent": 10, "abort": {"status": 503}}],
            "duration": duration,
        }
    }))
    .expect("a ServiceFault");
    api.create(&PostParams::default(), &sf).await.expect("create ServiceFault");
    api
}

async fn reached(api: &Api<ServiceFault>, name: &str, step: &str) -> ServiceFault {
    wait_for(&format!("ServiceFault {name} to reach {step}"), Duration::from_secs(60), || async {
        let sf = api.get(name).await.ok()?;
        sf.status.as_ref()?.steps.iter().any(|s| s.step == step).then_some(sf)
    })
    .await
}

fn selector(svc: &Service) -> BTreeMap<String, String> {
    svc.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default()
}

/// The Service as it was before the fault, exactly: its whole spec (selector, ports, cluster IP,
/// every field the API server defaulted), labels and annotations.
pub(crate) fn assert_restored(before: &Service, after: &Service) {
    assert_eq!(selector(after), selector(before), "the original selector is back");
    assert_eq!(after.spec.as_ref().map(|s| &s.ports), before.spec.as_ref().map(|s| &s.ports), "ports untouched");
    assert_eq!(after.annotations(), before.annotations(), "no claim annotation is left");
    assert_eq!(after.labels(), before.labels(), "labels untouched");
    assert_eq!(after.spec, before.spec, "the whole spec is as it was");
}

async fn proxy_objects_gone(client: &Client, ns: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    wait_for("the proxy Deployment and the shadow Service to be deleted", Duration::from_secs(30), || async {
        let d = deployments.get_opt("web-chaoslab-proxy").await.ok()?;
        let s = services.get_opt("web-chaoslab-upstream").await.ok()?;
        (d.is_none() && s.is_none()).then_some(())
    })
    .await;
}

fn steps(sf: &ServiceFault) -> Vec<String> {
    sf.status.as_ref().map(|s| s.steps.iter().map(|s| s.step.clone()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_servicefault_switches_the_service_to_the_proxy_and_restores_it_exactly_on_expiry() {
    let ns = "e2e-sf-expiry";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("Service web");
    let operator = Operator::start("sf-expiry", &[ns]);
    let api = create(&client, ns, "slow", "6s").await;

    // During the fault: the Service selects the proxy pods only, and its endpoints followed.
    let sf = reached(&api, "slow", "Injecting").await;
    let uid = sf.uid().expect("uid");
    let during = services.get("web").await.expect("Service web");
    assert_eq!(selector(&during), BTreeMap::from([(PROXY_LABEL.to_owned(), uid.clone())]));
    let annotations = during.annotations();
    assert_eq!(annotations.get("chaoslab.dev/fault-owner"), Some(&uid));
    assert_eq!(annotations.get("chaoslab.dev/original-selector").map(String::as_str), Some(r#"{"app":"web"}"#));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let listed = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.expect("slices");
    let pods: Vec<String> = listed
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    assert!(!pods.is_empty() && pods.iter().all(|p| p.starts_with("web-chaoslab-proxy-")), "{pods:?}");
    // The shadow Service keeps the original selector and ports; both objects are owned.
    let shadow = services.get("web-chaoslab-upstream").await.expect("shadow Service");
    assert_eq!(selector(&shadow), selector(&before));
    assert_eq!(shadow.spec.as_ref().and_then(|s| s.ports.as_ref()).map(Vec::len), Some(2));
    assert_eq!(shadow.owner_references()[0].uid, uid);
    let proxy = Api::<Deployment>::namespaced(client.clone(), ns).get("web-chaoslab-proxy").await.expect("proxy");
    assert_eq!(proxy.owner_references()[0].uid, uid);
    let container = &proxy.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec").containers[0];
    let args = container.args.clone().unwrap_or_default().join(" ");
    assert!(args.contains(&format!("--route 0.0.0.0:8080=web-chaoslab-upstream.{ns}.svc:80")), "{args}");
    assert!(args.contains("--pass 0.0.0.0:10000="), "the unfaulted named port is carried too: {args}");

    let sf = finished(&api, "slow", Duration::from_secs(60)).await;
    let st = sf.status.clone().expect("status");
    assert_eq!(st.run.phase, Some(Phase::Succeeded), "{:?}\n{}", st.run.message, operator.log());
    assert_eq!(st.run.verdict, Some(Verdict::Inconclusive), "{:?}", st.run.message);
    assert!(st.run.message.as_deref().is_some_and(|m| m.contains("no traffic")), "{:?}", st.run.message);
    assert_eq!(
        steps(&sf),
        ["Claimed", "ProxyCreated", "ProxyReady", "Switched", "Injecting", "Reverted", "Cleaned"],
        "{:?}",
        st.steps
    );
    let injected = st.injected_at.clone().expect("injectedAt").0;
    let reverted = st.reverted_at.clone().expect("revertedAt").0;
    let held = Duration::try_from(reverted.duration_since(injected)).expect("reverted after injected");
    assert!(held >= Duration::from_secs(6) && held < Duration::from_secs(12), "injected for {held:?}");
    assert_eq!(st.original_selector, selector(&before));
    assert_eq!(st.routes.len(), 2);
    assert!(st.proxy_expires_at.is_some());
    assert_restored(&before, &services.get("web").await.expect("Service web"));
    proxy_objects_gone(&client, ns).await;
    // The report: owned by the ServiceFault, the fault's window as status has it, every step,
    // both routes and the proxy's figures (none crossed it here).
    let report = crate::harness::stored_report(&client, &sf).await;
    assert_eq!(report["verdict"], "Inconclusive");
    let fault = &report["faults"][0];
    assert_eq!(fault["startedAt"], serde_json::to_value(&st.injected_at).expect("json"));
    assert_eq!(fault["revertedAt"], serde_json::to_value(&st.reverted_at).expect("json"));
    assert_eq!(report["serviceFault"]["steps"].as_array().map(Vec::len), Some(st.steps.len()));
    assert_eq!(report["serviceFault"]["routes"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["serviceFault"]["proxy"], serde_json::to_value(&st.proxy).expect("json"));
    eprintln!("ServiceFault report: fault {fault}, proxy {}", report["serviceFault"]["proxy"]);
    let events = kubectl(&["-n", ns, "get", "events.events.k8s.io", "-o", "jsonpath={.items[*].reason}"]);
    for reason in ["ProxyCreated", "Switched", "Injecting", "NoTraffic"] {
        assert!(events.contains(reason), "no {reason} Event in {events}");
    }
}

#[tokio::test]
async fn deleting_a_servicefault_mid_fault_restores_the_service() {
    let ns = "e2e-sf-delete";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("Service web");
    let _operator = Operator::start("sf-delete", &[ns]);
    let api = create(&client, ns, "long", "10m").await;
    reached(&api, "long", "Injecting").await;
    let asked = std::time::Instant::now();
    api.delete("long", &DeleteParams::default()).await.expect("delete");
    wait_for("the ServiceFault to be gone", Duration::from_secs(30), || async {
        api.get_opt("long").await.ok()?.is_none().then_some(())
    })
    .await;
    // At once: the finalizer reverts and lets go without waiting for the fault's 10 minutes.
    let took = asked.elapsed();
    eprintln!("a deleted ServiceFault was gone {:.1}s after the delete", took.as_secs_f64());
    assert!(took < Duration::from_secs(10), "gone {took:?} after the delete");
    assert_restored(&before, &services.get("web").await.expect("Service web"));
    proxy_objects_gone(&client, ns).await;
}

#[tokio::test]
async fn a_restarted_operator_reverts_a_fault_that_expired_while_it_was_down() {
    let ns = "e2e-sf-crash";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("Service web");
    let operator = Operator::start("sf-crash", &[ns]);
    let api = create(&client, ns, "crash", "5s").await;
    let sf = reached(&api, "crash", "Switched").await;
    operator.kill();
    let uid = sf.uid().expect("uid");
    // The fault's end passes while nobody is there to revert: the Service stays switched (and
    // the proxy itself stops injecting at its expiry).
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(selector(&services.get("web").await.expect("web")), BTreeMap::from([(PROXY_LABEL.to_owned(), uid)]));
    let _restarted = Operator::start("sf-crash-2", &[ns]);
    let sf = finished(&api, "crash", Duration::from_secs(90)).await;
    let st = sf.status.clone().expect("status");
    assert_eq!(st.run.phase, Some(Phase::Succeeded), "{:?}", st.run.message);
    assert!(steps(&sf).ends_with(&["Reverted".to_owned(), "Cleaned".to_owned()]), "{:?}", st.steps);
    assert_restored(&before, &services.get("web").await.expect("Service web"));
    proxy_objects_gone(&client, ns).await;
}

#[tokio::test]
async fn a_second_fault_on_a_service_is_refused_and_the_first_can_be_aborted() {
    let ns = "e2e-sf-conflict";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("Service web");
    let _operator = Operator::start("sf-conflict", &[ns]);
    let api = create(&client, ns, "first", "10m").await;
    reached(&api, "first", "Injecting").await;
    create(&client, ns, "second", "1m").await;
    let second = finished(&api, "second", Duration::from_secs(30)).await.status.expect("status");
    assert_eq!((second.run.phase, second.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    let message = second.run.message.unwrap_or_default();
    assert!(message.contains("already has a fault") && message.contains("ServiceFault/first"), "{message}");
    let accepted = second.run.conditions.iter().find(|c| c.type_ == "Accepted").expect("Accepted");
    assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("False", "FaultConflict"));
    assert!(second.steps.is_empty(), "the refused fault did nothing: {:?}", second.steps);
    // The first one is untouched by the refusal; the abort annotation ends it and reverts.
    assert_eq!(api.get("first").await.expect("first").status.expect("st").run.phase, Some(Phase::Running));
    let patch = json!({"metadata": {"annotations": {"chaoslab.dev/abort": "true"}}});
    api.patch("first", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("abort");
    let first = finished(&api, "first", Duration::from_secs(30)).await.status.expect("status");
    assert_eq!((first.run.phase, first.run.verdict), (Some(Phase::Aborted), Some(Verdict::Aborted)));
    assert_restored(&before, &services.get("web").await.expect("Service web"));
    proxy_objects_gone(&client, ns).await;
}

#[tokio::test]
async fn a_service_deleted_mid_fault_ends_the_fault_and_never_blocks_its_deletion() {
    let ns = "e2e-sf-gone";
    let client = target(ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let _operator = Operator::start("sf-gone", &[ns]);
    let api = create(&client, ns, "orphan", "10m").await;
    reached(&api, "orphan", "Injecting").await;
    services.delete("web", &DeleteParams::default()).await.expect("delete Service");
    let st = finished(&api, "orphan", Duration::from_secs(30)).await.status.expect("status");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Failed), Some(Verdict::Error)));
    assert!(st.run.message.as_deref().is_some_and(|m| m.contains("was deleted")), "{:?}", st.run.message);
    let ended = st.run.conditions.iter().find(|c| c.type_ == "Finished").expect("Finished");
    assert_eq!((ended.status.as_str(), ended.reason.as_str()), ("True", "Error"));
    // Why it ended is the Warning Event's reason (the Finished condition carries the verdict);
    // the Event is published just after the status.
    wait_for("a Warning ServiceGone Event for the ServiceFault", Duration::from_secs(10), || async {
        let events = kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=ServiceFault,involvedObject.name=orphan",
            "-o",
            "jsonpath={range .items[*]}{.type}/{.reason}{\"\\n\"}{end}",
        ]);
        events.lines().any(|l| l == "Warning/ServiceGone").then_some(())
    })
    .await;
    proxy_objects_gone(&client, ns).await;
    api.delete("orphan", &DeleteParams::default()).await.expect("delete ServiceFault");
    wait_for("the ServiceFault to be gone", Duration::from_secs(15), || async {
        api.get_opt("orphan").await.ok()?.is_none().then_some(())
    })
    .await;
}
