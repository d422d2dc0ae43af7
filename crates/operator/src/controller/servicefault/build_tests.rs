use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
    jiff::Timestamp,
};

use super::*;
use crate::api::ServiceFault;

fn service(yaml: &str) -> Service {
    serde_saphyr::from_str(yaml).unwrap()
}

fn web() -> Service {
    service(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: lab, resourceVersion: '42'}\nspec:\n  selector: {app: web, tier: front}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n  - {name: metrics, port: 9100, targetPort: 9100}\n  - {name: admin, port: 8081}\n",
    )
}

fn fault(extra: &str) -> ServiceFault {
    let mut sf: ServiceFault = serde_saphyr::from_str(&format!(
        "apiVersion: chaoslab.dev/v1alpha1\nkind: ServiceFault\nmetadata: {{name: slow, namespace: lab}}\nspec:\n  service: web\n  faults: [{{type: latency, latency: {{delay: 100ms}}}}]\n  duration: 30s\n{extra}"
    ))
    .unwrap();
    sf.metadata.uid = Some("0b5c7a4e-1111-2222-3333-444455556666".into());
    sf
}

fn ports(list: &[IntOrString]) -> Vec<IntOrString> {
    list.to_vec()
}

#[test]
fn every_port_is_carried_and_only_the_selected_ones_are_faulted() {
    let routes = plan_routes(&web(), &ports(&[IntOrString::String("http".into())])).unwrap();
    assert_eq!(routes.len(), 3);
    // A named targetPort gets a free number and keeps its name, so the unchanged Service resolves
    // it to the proxy; numbered targets keep their number; no targetPort means the port itself.
    assert_eq!(
        routes[0],
        Route { service_port: 80, label: "http".into(), listen: 10000, port_name: Some("http".into()), faulted: true }
    );
    assert_eq!((routes[1].listen, routes[1].faulted, routes[1].port_name.as_deref()), (9100, false, None));
    assert_eq!((routes[2].listen, routes[2].faulted), (8081, false));
    // No ports given: every port is faulted.
    assert!(plan_routes(&web(), &[]).unwrap().iter().all(|r| r.faulted));
    // By number.
    let by_number = plan_routes(&web(), &ports(&[IntOrString::Int(9100)])).unwrap();
    assert_eq!(by_number.iter().filter(|r| r.faulted).map(|r| r.listen).collect::<Vec<_>>(), vec![9100]);
}

#[test]
fn a_free_port_for_a_named_target_skips_numbers_in_use() {
    let svc = service(
        "metadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: a, port: 80, targetPort: 10000}\n  - {name: b, port: 81, targetPort: web}\n  - {name: c, port: 82, targetPort: web}\n  - {name: d, port: 83, targetPort: other}\n",
    );
    let routes = plan_routes(&svc, &[]).unwrap();
    let listens: Vec<i32> = routes.iter().map(|r| r.listen).collect();
    // Two ports targeting the same name share one listener.
    assert_eq!(listens, vec![10000, 10001, 10002]);
}

#[test]
fn services_the_proxy_cannot_carry_are_refused_with_the_field() {
    let missing = plan_routes(&web(), &ports(&[IntOrString::String("grpc".into())])).unwrap_err();
    assert!(
        missing.starts_with("spec.ports[0]: Service \"web\" has no port \"grpc\"; its ports are http, metrics, admin"),
        "{missing}"
    );
    let no_selector = service("metadata: {name: db}\nspec:\n  ports: [{port: 5432}]\n");
    assert!(plan_routes(&no_selector, &[]).unwrap_err().contains("has no selector"));
    let udp = service(
        "metadata: {name: dns}\nspec:\n  selector: {app: dns}\n  ports: [{name: dns, port: 53, protocol: UDP}]\n",
    );
    assert!(plan_routes(&udp, &[]).unwrap_err().contains("is UDP; the proxy carries TCP only"));
    let admin = service("metadata: {name: x}\nspec:\n  selector: {app: x}\n  ports: [{port: 9901}]\n");
    assert!(plan_routes(&admin, &[]).unwrap_err().contains("keeps for its admin API"));
    let external = service("metadata: {name: x}\nspec:\n  type: ExternalName\n  externalName: example.com\n");
    assert!(plan_routes(&external, &[]).unwrap_err().contains("ExternalName"));
}

#[test]
fn names_fit_in_a_dns_label() {
    let long = "a".repeat(63);
    assert_eq!(proxy_name(&long).len(), 63);
    assert_eq!(shadow_name(&long).len(), 63);
    assert_eq!(proxy_name("web"), "web-chaoslab-proxy");
    assert_eq!(shadow_name("web"), "web-chaoslab-upstream");
}

#[test]
fn the_claim_says_who_holds_a_service() {
    let sf = fault("");
    let uid = sf.metadata.uid.clone().unwrap();
    let mut svc = web();
    assert_eq!(claim_state(&svc, &uid), Claim::Free);
    let patch = claim_patch(&sf, &svc).unwrap();
    assert_eq!(patch["metadata"]["resourceVersion"], "42", "claimed on the version read");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(patch["metadata"]["annotations"].clone()).unwrap();
    svc.metadata.annotations = Some(annotations);
    assert_eq!(claim_state(&svc, &uid), Claim::Ours);
    assert_eq!(claim_state(&svc, "someone-else"), Claim::Other("ServiceFault/slow".into()));
    // The original selector comes from the annotation once claimed, whatever the live one is.
    svc.spec.as_mut().unwrap().selector = Some(proxy_selector(&uid));
    let original = original_selector(&svc).unwrap();
    assert_eq!(original, BTreeMap::from([("app".into(), "web".into()), ("tier".into(), "front".into())]));
}

/// Apply a JSON merge patch (RFC 7386) the way the API server does.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn patched(svc: &Service, patch: &serde_json::Value) -> Service {
    let mut value = serde_json::to_value(svc).unwrap();
    merge(&mut value, patch);
    serde_json::from_value(value).unwrap()
}

#[test]
fn switch_and_release_restore_the_selector_exactly() {
    let sf = fault("");
    let uid = sf.metadata.uid.clone().unwrap();
    let before = web();
    let claimed = patched(&before, &claim_patch(&sf, &before).unwrap());
    let switched = patched(&claimed, &selector_patch(&selector_of(&claimed), &proxy_selector(&uid)));
    assert_eq!(selector_of(&switched), proxy_selector(&uid), "the proxy's label only: no original key is left");
    let original = original_selector(&switched).unwrap();
    let released = patched(&switched, &release_patch(&switched, &original, &uid));
    assert_eq!(selector_of(&released), selector_of(&before));
    assert_eq!(released.metadata.annotations.clone().unwrap_or_default(), BTreeMap::new(), "the claim is gone");
    // Released before the switch: the selector is untouched.
    let unswitched = patched(&claimed, &release_patch(&claimed, &original, &uid));
    assert_eq!(selector_of(&unswitched), selector_of(&before));
    // A selector someone changed during the fault is theirs: only the claim goes.
    let mut changed = switched.clone();
    changed.spec.as_mut().unwrap().selector = Some(BTreeMap::from([("app".into(), "web-v2".into())]));
    let kept = patched(&changed, &release_patch(&changed, &original, &uid));
    assert_eq!(selector_of(&kept), BTreeMap::from([("app".into(), "web-v2".into())]));
}

#[test]
fn the_proxy_deployment_is_hardened_owned_and_carries_its_expiry() {
    let sf = fault("  ports: [http]\n  proxy: {replicas: 2}\n");
    let routes = plan_routes(&web(), &sf.spec.injection.ports).unwrap();
    let expires = Timestamp::from_second(1_800_000_000).unwrap();
    let d = proxy_deployment(&sf, &routes, "chaoslab:test", expires).unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("web-chaoslab-proxy"));
    assert_eq!(d.metadata.owner_references.as_ref().unwrap()[0].kind, "ServiceFault");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let security = pod.security_context.unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert!(security.sysctls.is_none(), "no port below 1024: no sysctl");
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let args = c.args.clone().unwrap();
    assert_eq!(
        args,
        vec![
            "proxy",
            "--protocol",
            "http",
            "--route",
            "0.0.0.0:10000=web-chaoslab-upstream.lab.svc:80",
            "--pass",
            "0.0.0.0:9100=web-chaoslab-upstream.lab.svc:9100",
            "--pass",
            "0.0.0.0:8081=web-chaoslab-upstream.lab.svc:8081",
            "--admin-addr",
            "0.0.0.0:9901"
        ]
    );
    let ports = c.ports.clone().unwrap();
    assert_eq!((ports[0].name.as_deref(), ports[0].container_port), (Some("http"), 10000));
    assert!(ports.iter().any(|p| p.container_port == ADMIN_PORT));
    let env = c.env.clone().unwrap();
    let set: serde_json::Value = serde_json::from_str(env[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(set["expiresAt"], "2027-01-15T08:00:00Z");
    assert_eq!(set["faults"][0]["type"], "latency");
    assert_eq!(set["faults"][0]["latency"]["delay"], "100ms");
    assert_eq!(set["seed"], seed_of("0b5c7a4e-1111-2222-3333-444455556666"));
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
}

#[test]
fn a_privileged_target_port_lowers_the_pods_port_floor() {
    let sf = fault("");
    let svc = service("metadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n");
    let routes = plan_routes(&svc, &[]).unwrap();
    let d = proxy_deployment(&sf, &routes, "img", Timestamp::UNIX_EPOCH).unwrap();
    let sysctls = d.spec.unwrap().template.spec.unwrap().security_context.unwrap().sysctls.unwrap();
    assert_eq!((sysctls[0].name.as_str(), sysctls[0].value.as_str()), ("net.ipv4.ip_unprivileged_port_start", "0"));
}

#[test]
fn the_shadow_service_keeps_the_original_selector_and_ports() {
    let sf = fault("");
    let svc = web();
    let shadow = shadow_service(&sf, &svc, &selector_of(&svc)).unwrap();
    assert_eq!(shadow.metadata.name.as_deref(), Some("web-chaoslab-upstream"));
    let spec = shadow.spec.unwrap();
    assert_eq!(spec.selector.unwrap(), selector_of(&svc));
    let ports = spec.ports.unwrap();
    assert_eq!(ports[0].target_port, Some(IntOrString::String("http".into())));
    assert_eq!(ports[2].target_port, Some(IntOrString::Int(8081)), "a missing targetPort is the port itself");
}

#[test]
fn endpoints_count_as_switched_when_only_proxy_pods_remain() {
    let pods: Vec<Pod> = vec![serde_saphyr::from_str("metadata: {name: web-chaoslab-proxy-abc}\n").unwrap()];
    let slice = |names: &[&str]| -> EndpointSlice {
        let endpoints: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"addresses": ["10.0.0.1"], "targetRef": {"kind": "Pod", "name": n}}))
            .collect();
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": "s"}, "addressType": "IPv4", "endpoints": endpoints}),
        )
        .unwrap()
    };
    assert!(endpoints_switched(&[slice(&["web-chaoslab-proxy-abc"])], &pods));
    assert!(!endpoints_switched(&[slice(&["web-chaoslab-proxy-abc", "web-1"])], &pods), "an old pod is still there");
    assert!(!endpoints_switched(&[slice(&[])], &pods), "no endpoint at all is not switched");
    assert!(!endpoints_left_proxy(&[slice(&["web-chaoslab-proxy-abc", "web-1"])], &pods), "the proxy still serves");
    assert!(endpoints_left_proxy(&[slice(&["web-1", "web-2"])], &pods));
    assert!(endpoints_left_proxy(&[slice(&[])], &pods), "no endpoint at all holds no proxy pod");
}

#[test]
fn stats_sum_over_pods_and_never_shrink() {
    let report = |json: serde_json::Value| -> crate::proxy::StatsReport { serde_json::from_value(json).unwrap() };
    let latency = serde_json::json!({"count": 0, "p50Ms": 0.0, "p90Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0});
    let a = report(serde_json::json!({"requests": 10, "connections": 2, "faultsApplied": {"latency": 10},
        "upstreamStatus": {"200": 9}, "upstreamErrors": 1, "upstreamLatency": latency, "since": "2026-11-25T00:00:00Z"}));
    let b = report(serde_json::json!({"requests": 5, "connections": 0, "upstreamStatus": {"200": 5},
        "upstreamErrors": 0, "upstreamLatency": latency, "since": "2026-11-25T00:00:00Z"}));
    let sum = sum_stats([&a, &b]);
    assert_eq!((sum.requests, sum.connections, sum.upstream_errors, sum.pods_read), (15, 2, 1, 2));
    assert_eq!(sum.upstream_status["200"], 14);
    // A later read with a pod gone keeps the larger figures.
    let later = sum_stats([&b]);
    assert_eq!(latest(Some(&sum), later).requests, 15);
}

#[test]
fn the_seed_is_stable() {
    assert_eq!(seed_of("abc"), seed_of("abc"));
    assert_ne!(seed_of("abc"), seed_of("abd"));
    assert_eq!(seed_of(""), 0xcbf2_9ce4_8422_2325);
}

#[test]
fn a_faults_window_sets_the_proxys_start_and_end_within_its_expiry() {
    let expiry = Timestamp::from_second(1_900_000_100).unwrap();
    let plain = windowed_fault_set(&fault(""), expiry, 7).unwrap();
    assert_eq!((plain.starts_at, plain.expires_at), (None, expiry));
    let windowed =
        windowed_fault_set(&fault("  faultsStartAt: '2030-03-17T17:46:50Z'\n  faultsFor: 20s\n"), expiry, 7).unwrap();
    let start = Timestamp::from_second(1_900_000_010).unwrap();
    assert_eq!(windowed.starts_at, Some(start));
    assert_eq!(windowed.expires_at, Timestamp::from_second(1_900_000_030).unwrap(), "start + faultsFor");
    let cut =
        windowed_fault_set(&fault("  faultsStartAt: '2030-03-17T17:46:50Z'\n  faultsFor: 10m\n"), expiry, 7).unwrap();
    assert_eq!(cut.expires_at, expiry, "never past the proxy's own expiry");
    let late = windowed_fault_set(&fault("  faultsStartAt: '2030-03-17T17:48:30Z'\n"), expiry, 7).unwrap_err();
    assert!(late.starts_with("spec.faultsStartAt (2030-03-17T17:48:30Z) is not before the fault's end"), "{late}");
}
