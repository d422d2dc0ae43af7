//! What the ServiceFault controller creates and changes, without touching the API: the routes
//! from the Service's ports to the proxy, the shadow Service, the proxy Deployment, the patches
//! that claim, switch and restore the target Service, and the summary of the proxy's figures.
//! Pure, so every rule is unit-tested from YAML and plain values.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{Pod, Service, ServicePort},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::util::intstr::IntOrString,
    jiff::{SignedDuration, Timestamp},
};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::{
    api::{
        ServiceFault,
        fault::{Fault, ProxyRoute, ProxyStats},
    },
    proxy::{FaultSet, StatsReport},
};

/// On the target Service while a fault owns it: the ServiceFault's UID. One owner at a time is
/// how two faults on one Service are refused.
pub const OWNER_ANNOTATION: &str = "chaoslab.dev/fault-owner";
/// On the target Service while a fault owns it: `ServiceFault/<name>`, for people.
pub const OWNER_NAME_ANNOTATION: &str = "chaoslab.dev/fault";
/// On the target Service while a fault owns it: its original selector as JSON, so a restarted
/// operator (or a person) can restore it exactly.
pub const SELECTOR_ANNOTATION: &str = "chaoslab.dev/original-selector";
/// The label of proxy pods (value: the ServiceFault's UID); the switched selector selects it.
pub const PROXY_LABEL: &str = "chaoslab.dev/proxy";
/// The proxy's admin port: /stats, /faults, /healthz, /readyz.
pub const ADMIN_PORT: i32 = 9901;
/// How long the proxy may take to be Ready. The proxy's own expiry allows for it, so the
/// dead-man switch can never end injection before the operator's planned end.
pub const READY_BUDGET: Duration = Duration::from_secs(60);
/// The first port tried for a named targetPort (numbered targetPorts keep their number).
const FIRST_FREE_PORT: i32 = 10000;

/// One Service port and how the proxy carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The Service port as given (to route to the same port of the shadow Service).
    pub service_port: i32,
    /// The port's name, or its number when unnamed.
    pub label: String,
    /// The proxy container's port: the Service's targetPort number, or a free number.
    pub listen: i32,
    /// Set when the Service's targetPort is a name: the proxy's container port gets that name,
    /// so the unchanged Service resolves it to the proxy.
    pub port_name: Option<String>,
    /// Whether the spec puts faults on this port.
    pub faulted: bool,
}

/// Whether a Service is free for a fault, already ours, or someone else's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Free,
    Ours,
    Other(String),
}

/// The proxy Deployment's name (one fault per Service, so one per Service).
pub fn proxy_name(service: &str) -> String {
    format!("{}-chaoslab-proxy", truncated(service, 63 - 15))
}

/// The shadow Service's name: it keeps the original selector and is the proxy's upstream.
pub fn shadow_name(service: &str) -> String {
    format!("{}-chaoslab-upstream", truncated(service, 63 - 18))
}

fn truncated(name: &str, max: usize) -> &str {
    let cut = name.char_indices().nth(max).map_or(name.len(), |(i, _)| i);
    name[..cut].trim_end_matches('-')
}

/// The selector a Service has, empty when none.
pub fn selector_of(service: &Service) -> BTreeMap<String, String> {
    service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default()
}

fn annotation<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// Who holds the Service.
pub fn claim_state(service: &Service, uid: &str) -> Claim {
    match annotation(service, OWNER_ANNOTATION) {
        None => Claim::Free,
        Some(owner) if owner == uid => Claim::Ours,
        Some(_) => {
            Claim::Other(annotation(service, OWNER_NAME_ANNOTATION).unwrap_or("another ServiceFault").to_owned())
        }
    }
}

/// The Service's original selector: from the claim's annotation once claimed (the live selector
/// may already be the proxy's), else the live one.
pub fn original_selector(service: &Service) -> Result<BTreeMap<String, String>, String> {
    match annotation(service, SELECTOR_ANNOTATION) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            format!("annotation {SELECTOR_ANNOTATION} on Service {:?} is not a selector: {e}", service.name_any())
        }),
        None => Ok(selector_of(service)),
    }
}

/// How each port of the Service is carried. Errors name the field and what is allowed.
pub fn plan_routes(service: &Service, selected: &[IntOrString]) -> Result<Vec<Route>, String> {
    let name = service.name_any();
    let spec = service.spec.clone().unwrap_or_default();
    if spec.type_.as_deref() == Some("ExternalName") {
        return Err(format!(
            "spec.service: Service {name:?} is of type ExternalName; only Services with a selector can be put behind the proxy"
        ));
    }
    if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
        return Err(format!(
            "spec.service: Service {name:?} has no selector (its endpoints are managed by hand); only Services with a selector can be put behind the proxy"
        ));
    }
    let ports: Vec<ServicePort> = spec.ports.unwrap_or_default();
    if ports.is_empty() {
        return Err(format!("spec.service: Service {name:?} has no ports"));
    }
    if let Some(p) = ports.iter().find(|p| p.protocol.as_deref().is_some_and(|proto| proto != "TCP")) {
        return Err(format!(
            "spec.service: port {} of Service {name:?} is {}; the proxy carries TCP only, and every port of the Service passes through it while the fault is on",
            label(p),
            p.protocol.as_deref().unwrap_or_default()
        ));
    }
    for (i, wanted) in selected.iter().enumerate() {
        let found = ports.iter().any(|p| match wanted {
            IntOrString::Int(n) => p.port == *n,
            IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
        });
        if !found {
            let have: Vec<String> = ports.iter().map(label).collect();
            return Err(format!(
                "spec.ports[{i}]: Service {name:?} has no port {}; its ports are {}",
                show(wanted),
                have.join(", ")
            ));
        }
    }
    let numbered: Vec<i32> = ports
        .iter()
        .filter_map(|p| match &p.target_port {
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(_)) => None,
            None => Some(p.port),
        })
        .collect();
    let mut next_free = FIRST_FREE_PORT;
    let mut named: BTreeMap<String, i32> = BTreeMap::new();
    let mut routes = Vec::with_capacity(ports.len());
    for p in &ports {
        let faulted = selected.is_empty()
            || selected.iter().any(|w| match w {
                IntOrString::Int(n) => p.port == *n,
                IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
            });
        let (listen, port_name) = match &p.target_port {
            Some(IntOrString::String(target)) => {
                let listen = *named.entry(target.clone()).or_insert_with(|| {
                    while numbered.contains(&next_free) || next_free == ADMIN_PORT {
                        next_free += 1;
                    }
                    next_free += 1;
                    next_free - 1
                });
                (listen, Some(target.clone()))
            }
            Some(IntOrString::Int(n)) => (*n, None),
            None => (p.port, None),
        };
        if listen == ADMIN_PORT {
            return Err(format!(
                "spec.service: port {} of Service {name:?} targets port {ADMIN_PORT}, which the proxy keeps for its admin API",
                label(p)
            ));
        }
        routes.push(Route { service_port: p.port, label: label(p), listen, port_name, faulted });
    }
    // Two Service ports with the same target reach one listener: faulted if either is.
    let mut merged: Vec<Route> = Vec::with_capacity(routes.len());
    for r in routes {
        match merged.iter_mut().find(|m| m.listen == r.listen) {
            Some(m) => m.faulted |= r.faulted,
            None => merged.push(r),
        }
    }
    Ok(merged)
}

fn label(p: &ServicePort) -> String {
    p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| p.port.to_string())
}

fn show(port: &IntOrString) -> String {
    match port {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("{s:?}"),
    }
}

/// The routes as status shows them.
pub fn route_records(routes: &[Route], namespace: &str, service: &str) -> Vec<ProxyRoute> {
    routes
        .iter()
        .map(|r| ProxyRoute {
            port: r.label.clone(),
            listen: r.listen,
            upstream: upstream(namespace, service, r.service_port),
            faulted: r.faulted,
        })
        .collect()
}

fn upstream(namespace: &str, service: &str, port: i32) -> String {
    format!("{}.{namespace}.svc:{port}", shadow_name(service))
}

/// The fault set the proxy starts with, its dead-man switch included.
pub fn fault_set(faults: &[Fault], expires_at: Timestamp, seed: u64) -> FaultSet {
    FaultSet { faults: faults.to_vec(), expires_at, starts_at: None, seed: Some(seed) }
}

/// The proxy's fault set of `sf` when its proxy expires at `expires_at`: the faults' window
/// (`faultsStartAt`, `faultsFor`) within it. An error when the window starts after the end.
pub fn windowed_fault_set(sf: &ServiceFault, expires_at: Timestamp, seed: u64) -> Result<FaultSet, String> {
    let mut set = fault_set(&sf.spec.injection.faults, expires_at, seed);
    if let Some(start) = sf.spec.faults_start_at.as_ref().map(|t| t.0) {
        if start >= expires_at {
            return Err(format!(
                "spec.faultsStartAt ({start}) is not before the fault's end ({expires_at}): the faults would never apply"
            ));
        }
        set.starts_at = Some(start);
        if let Some(length) = sf.spec.faults_for {
            let length = SignedDuration::try_from(length.as_std()).unwrap_or(SignedDuration::MAX);
            let end = start.checked_add(length).unwrap_or(set.expires_at);
            set.expires_at = set.expires_at.min(end);
        }
    }
    Ok(set)
}

/// A seed for the proxy's dice, fixed per ServiceFault so a run can be understood and repeated.
pub fn seed_of(uid: &str) -> u64 {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    uid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The shadow Service: the target's ports with the original selector, owned by the ServiceFault.
pub fn shadow_service(
    sf: &ServiceFault,
    service: &Service,
    original: &BTreeMap<String, String>,
) -> Result<Service, String> {
    let owner = sf.controller_owner_ref(&()).ok_or("the ServiceFault has no UID yet")?;
    let ports: Vec<Value> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            json!({
                "name": p.name,
                "port": p.port,
                "targetPort": p.target_port.unwrap_or(IntOrString::Int(p.port)),
                "protocol": p.protocol.unwrap_or_else(|| "TCP".into()),
                "appProtocol": p.app_protocol,
            })
        })
        .collect();
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": shadow_name(&sf.spec.injection.service),
            "namespace": sf.namespace(),
            "labels": labels(sf),
            "ownerReferences": [owner],
        },
        "spec": { "type": "ClusterIP", "selector": original, "ports": ports },
    });
    serde_json::from_value(svc).map_err(|e| format!("shadow Service: {e}"))
}

fn labels(sf: &ServiceFault) -> Value {
    json!({
        "app.kubernetes.io/name": "chaoslab-proxy",
        "app.kubernetes.io/component": "fault-proxy",
        "app.kubernetes.io/part-of": "chaoslab",
        "app.kubernetes.io/managed-by": "chaoslab-operator",
        PROXY_LABEL: sf.uid().unwrap_or_default(),
    })
}

/// The proxy Deployment: non-root, read-only root filesystem, no service account token, the
/// fault set (with its expiry) in its environment, ready when its admin port says so.
pub fn proxy_deployment(
    sf: &ServiceFault,
    routes: &[Route],
    image: &str,
    expires_at: Timestamp,
) -> Result<Deployment, String> {
    let owner = sf.controller_owner_ref(&()).ok_or("the ServiceFault has no UID yet")?;
    let uid = sf.uid().unwrap_or_default();
    let ns = sf.namespace().unwrap_or_default();
    let service = &sf.spec.injection.service;
    let protocol = match sf.spec.injection.protocol {
        crate::api::fault::ProxyProtocol::Http => "http",
        crate::api::fault::ProxyProtocol::Tcp => "tcp",
    };
    let mut args = vec!["proxy".to_owned(), "--protocol".into(), protocol.into()];
    for r in routes {
        args.push(if r.faulted { "--route" } else { "--pass" }.into());
        args.push(format!("0.0.0.0:{}={}", r.listen, upstream(&ns, service, r.service_port)));
    }
    args.extend(["--admin-addr".into(), format!("0.0.0.0:{ADMIN_PORT}")]);
    let set = windowed_fault_set(sf, expires_at, seed_of(&uid))?;
    let faults = serde_json::to_string(&set).map_err(|e| format!("fault set: {e}"))?;
    let mut ports: Vec<Value> = routes
        .iter()
        .map(|r| match &r.port_name {
            Some(name) => json!({"name": name, "containerPort": r.listen, "protocol": "TCP"}),
            None => json!({"containerPort": r.listen, "protocol": "TCP"}),
        })
        .collect();
    ports.push(json!({"name": "chaoslab-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"}));
    let mut pod_security = json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": { "type": "RuntimeDefault" },
    });
    // Ports below 1024 need no capability when the pod lowers the unprivileged-port floor: a
    // namespaced sysctl Kubernetes counts as safe.
    if routes.iter().any(|r| r.listen < 1024) {
        pod_security["sysctls"] = json!([{ "name": "net.ipv4.ip_unprivileged_port_start", "value": "0" }]);
    }
    let resources = sf.spec.injection.proxy.resources.clone().map(|r| json!(r)).unwrap_or_else(
        || json!({"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}),
    );
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": "chaoslab-admin"}, "periodSeconds": 2, "failureThreshold": 3});
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": proxy_name(service),
            "namespace": ns,
            "labels": labels(sf),
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": sf.spec.injection.proxy.replicas,
            "selector": { "matchLabels": { PROXY_LABEL: uid } },
            "template": {
                "metadata": { "labels": labels(sf) },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 15,
                    "securityContext": pod_security,
                    "containers": [{
                        "name": "proxy",
                        "image": image,
                        "args": args,
                        "env": [{ "name": "CHAOSLAB_FAULTS", "value": faults }],
                        "ports": ports,
                        "readinessProbe": probe("/readyz"),
                        "livenessProbe": probe("/healthz"),
                        "resources": resources,
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                },
            },
        },
    });
    serde_json::from_value(deployment).map_err(|e| format!("proxy Deployment: {e}"))
}

/// Whether every replica of the proxy is updated and Ready.
pub fn proxy_ready(deployment: &Deployment) -> bool {
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else { return false };
    let current = status.observed_generation >= deployment.metadata.generation;
    current && status.ready_replicas.unwrap_or(0) >= wanted && status.updated_replicas.unwrap_or(0) >= wanted
}

/// The merge patch that claims a free Service: owner and original selector as annotations, on
/// the resourceVersion that was read (a concurrent claim gets a conflict, not a silent win).
pub fn claim_patch(sf: &ServiceFault, service: &Service) -> Result<Value, String> {
    let selector = serde_json::to_string(&selector_of(service)).map_err(|e| e.to_string())?;
    Ok(json!({
        "metadata": {
            "resourceVersion": service.metadata.resource_version,
            "annotations": {
                OWNER_ANNOTATION: sf.uid().unwrap_or_default(),
                OWNER_NAME_ANNOTATION: format!("ServiceFault/{}", sf.name_any()),
                SELECTOR_ANNOTATION: selector,
            },
        },
    }))
}

/// The proxy's selector.
pub fn proxy_selector(uid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(PROXY_LABEL.to_owned(), uid.to_owned())])
}

/// A merge patch that turns the Service's selector from `from` into `to` exactly (a merge patch
/// merges maps, so every key of `from` not in `to` is removed by name).
pub fn selector_patch(from: &BTreeMap<String, String>, to: &BTreeMap<String, String>) -> Value {
    let mut selector = serde_json::Map::new();
    for key in from.keys().filter(|k| !to.contains_key(*k)) {
        selector.insert(key.clone(), Value::Null);
    }
    for (k, v) in to {
        selector.insert(k.clone(), json!(v));
    }
    json!({ "spec": { "selector": selector } })
}

/// The merge patch that gives the Service back: the original selector (only when the live one is
/// still the proxy's — a selector someone changed meanwhile is theirs) and no claim.
pub fn release_patch(service: &Service, original: &BTreeMap<String, String>, uid: &str) -> Value {
    let live = selector_of(service);
    let mut patch = if live == proxy_selector(uid) { selector_patch(&live, original) } else { json!({}) };
    patch["metadata"] = json!({
        "annotations": { OWNER_ANNOTATION: null, OWNER_NAME_ANNOTATION: null, SELECTOR_ANNOTATION: null },
    });
    patch
}

/// Whether the Service's endpoints are the proxy's pods only (and there is at least one).
pub fn endpoints_switched(slices: &[EndpointSlice], proxy_pods: &[Pod]) -> bool {
    let names: Vec<String> = proxy_pods.iter().map(ResourceExt::name_any).collect();
    let mut seen = 0;
    for endpoint in slices.iter().flat_map(|s| s.endpoints.iter()) {
        let pod = endpoint.target_ref.as_ref().and_then(|r| r.name.as_deref());
        match pod {
            Some(name) if names.iter().any(|n| n == name) => seen += 1,
            _ => return false,
        }
    }
    seen > 0
}

/// Whether the Service's endpoints have left the proxy's pods (none of them is an endpoint).
pub fn endpoints_left_proxy(slices: &[EndpointSlice], proxy_pods: &[Pod]) -> bool {
    let names: Vec<String> = proxy_pods.iter().map(ResourceExt::name_any).collect();
    !slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter_map(|e| e.target_ref.as_ref()?.name.as_deref())
        .any(|pod| names.iter().any(|n| n == pod))
}

/// The proxy pods' statistics summed.
pub fn sum_stats<'a>(pods: impl IntoIterator<Item = &'a StatsReport>) -> ProxyStats {
    let mut total = ProxyStats::default();
    for p in pods {
        total.requests += p.requests;
        total.connections += p.connections;
        total.upstream_errors += p.upstream_errors;
        total.pods_read += 1;
        for (k, v) in &p.faults_applied {
            *total.faults_applied.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &p.upstream_status {
            *total.upstream_status.entry(k.clone()).or_default() += v;
        }
    }
    total
}

/// Keep the larger of two readings: counters only grow, and a pod that is gone by the last read
/// must not take its share of the figures with it.
pub fn latest(previous: Option<&ProxyStats>, now: ProxyStats) -> ProxyStats {
    match previous {
        Some(p) if p.requests > now.requests => p.clone(),
        _ => now,
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
