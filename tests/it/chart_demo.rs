//! The chart's demo app (`demo.enabled`), rendered with the pinned helm and checked as typed
//! Kubernetes objects: three hardened `chaoslab demo` Deployments wired frontend → catalog →
//! inventory with the flags of the drills' local topology, a Service and a PDB each, a CPU HPA on
//! frontend, and the namespace opted in to chaos — and nothing of it when disabled.
//!
//! helm comes from `$HELM`, else the cache hack/tools.sh fills, else PATH (tests/it/support/helm.rs).
//! Without it the tests fail: run `bash hack/tools.sh`.

use crate::support::helm;
use crate::support::topology;

use std::collections::BTreeMap;

use helm::{NAMESPACE, all, render, try_render};
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{Container, Namespace, PodSpec, Service},
    policy::v1::PodDisruptionBudget,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

const DEMO_NAMESPACE: &str = "chaoslab-demo";
const SERVICES: [&str; 3] = ["frontend", "catalog", "inventory"];

/// The objects of `kind` in `namespace`, by name.
fn named<
    T: DeserializeOwned + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    docs: &[Value],
    kind: &str,
    namespace: &str,
) -> BTreeMap<String, T> {
    all::<T>(docs, kind)
        .into_iter()
        .filter(|o| o.metadata().namespace.as_deref() == Some(namespace))
        .map(|o| (o.metadata().name.clone().unwrap_or_default(), o))
        .collect()
}

fn pod(deploy: &Deployment) -> &PodSpec {
    deploy.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("a pod spec")
}

fn container(deploy: &Deployment) -> &Container {
    let pod = pod(deploy);
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn pod_labels(deploy: &Deployment) -> BTreeMap<String, String> {
    deploy.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).expect("labels")
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The flags the chart gives a service: its own, then those of the topology (values.yaml).
fn expected_args(name: &str, graceful: bool, delay: &str, drain: &str) -> Vec<String> {
    let mut args: Vec<String> = ["demo", "--name", name, "--listen", "0.0.0.0:8080"].map(String::from).to_vec();
    let (upstream, own) = match name {
        "frontend" => (Some("catalog"), topology::FRONTEND),
        "catalog" => (Some("inventory"), topology::CATALOG),
        _ => (None, topology::INVENTORY),
    };
    if let Some(u) = upstream {
        args.extend(["--upstream".to_owned(), format!("{u}=http://{u}:8080/")]);
    }
    args.extend(["--shutdown-delay", delay, "--drain-timeout", drain].map(String::from));
    args.push(format!("--graceful-shutdown={graceful}"));
    args.extend(own.iter().map(|a| (*a).to_owned()));
    args
}

#[test]
fn the_demo_is_off_by_default_and_renders_nothing() {
    let docs = render(&[]);
    assert!(docs.iter().all(|d| d["metadata"]["namespace"] != DEMO_NAMESPACE), "nothing in {DEMO_NAMESPACE}");
    for kind in ["Namespace", "HorizontalPodAutoscaler", "PodDisruptionBudget"] {
        assert!(docs.iter().all(|d| d["kind"] != kind), "no {kind}");
    }
    assert_eq!(all::<Deployment>(&docs, "Deployment").len(), 1, "only the operator");
    let off = render(&["--set", "demo.enabled=false", "--set", "demo.namespace=elsewhere"]);
    assert_eq!(off.len(), docs.len());
}

#[test]
fn the_demo_installs_three_hardened_services_wired_like_the_drills_topology() {
    let docs = render(&["--set", "demo.enabled=true"]);
    let namespaces: Vec<Namespace> = all(&docs, "Namespace");
    assert_eq!(namespaces.len(), 1);
    let labels = namespaces[0].metadata.labels.clone().unwrap_or_default();
    assert_eq!(namespaces[0].metadata.name.as_deref(), Some(DEMO_NAMESPACE));
    assert_eq!(labels.get("chaoslab.dev/chaos").map(String::as_str), Some("enabled"), "opted in to chaos");

    let deployments: BTreeMap<String, Deployment> = named(&docs, "Deployment", DEMO_NAMESPACE);
    assert_eq!(deployments.keys().collect::<Vec<_>>(), ["catalog", "frontend", "inventory"]);
    let services: BTreeMap<String, Service> = named(&docs, "Service", DEMO_NAMESPACE);
    let pdbs: BTreeMap<String, PodDisruptionBudget> = named(&docs, "PodDisruptionBudget", DEMO_NAMESPACE);
    for name in SERVICES {
        let deploy = &deployments[name];
        let c = container(deploy);
        assert_eq!(c.image.as_deref(), Some("chaoslab:0.1.0"), "{name}: the chart's own image");
        assert_eq!(c.args.clone().unwrap_or_default(), expected_args(name, true, "5s", "20s"), "{name}: args");

        let pod = pod(deploy);
        let psc = pod.security_context.as_ref().expect("pod securityContext");
        assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)), "{name}");
        let sc = c.security_context.as_ref().expect("container securityContext");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{name}");
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{name}");
        let drop = sc.capabilities.as_ref().and_then(|caps| caps.drop.clone()).unwrap_or_default();
        assert_eq!(drop, ["ALL"], "{name}");
        assert_eq!(pod.automount_service_account_token, Some(false), "{name} calls no Kubernetes API");
        let grace = pod.termination_grace_period_seconds.expect("terminationGracePeriodSeconds");
        assert!(grace > 5 + 20, "{name}: {grace}s leaves room for the 5s delay and the 20s drain");

        for (probe, path) in [(&c.readiness_probe, "/readyz"), (&c.liveness_probe, "/healthz")] {
            let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{name}: {path}"));
            assert_eq!(get.path.as_deref(), Some(path), "{name}");
            assert_eq!(serde_json::to_value(&get.port).expect("port"), Value::from("http"), "{name}");
        }
        let port = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some("http")).expect("port http");
        assert_eq!(port.container_port, 8080);
        let requests = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        assert!(requests.contains_key("cpu"), "{name}: a CPU request, so CPU utilization means something");

        let labels = pod_labels(deploy);
        let svc = services.get(name).unwrap_or_else(|| panic!("a Service {name}"));
        let spec = svc.spec.as_ref().expect("Service spec");
        assert!(selects(spec.selector.as_ref().expect("selector"), &labels), "Service {name} selects its pods");
        let ports = spec.ports.clone().unwrap_or_default();
        assert_eq!((ports.len(), ports[0].port, ports[0].name.as_deref()), (1, 8080, Some("http")));
        let pdb = pdbs.get(name).unwrap_or_else(|| panic!("a PodDisruptionBudget {name}"));
        let pdb_spec = pdb.spec.as_ref().expect("PDB spec");
        let pdb_selector = pdb_spec.selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
        assert!(selects(&pdb_selector, &labels), "PDB {name} selects its pods");
        assert_eq!(serde_json::to_value(&pdb_spec.max_unavailable).expect("serializes"), Value::from(1));
        assert_eq!(labels.get("app").map(String::as_str), Some(name), "the label the pod-kill drills select on");
    }
    let replicas = |name: &str| deployments[name].spec.as_ref().and_then(|s| s.replicas);
    assert_eq!(replicas("frontend"), None, "the HPA owns frontend's replicas");
    assert_eq!((replicas("catalog"), replicas("inventory")), (Some(2), Some(2)), "one to spare for a pod kill");

    let hpas: Vec<HorizontalPodAutoscaler> = all(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 1, "an HPA on frontend only");
    let hpa = &hpas[0];
    assert_eq!(hpa.metadata.namespace.as_deref(), Some(DEMO_NAMESPACE));
    let spec = hpa.spec.as_ref().expect("HPA spec");
    assert_eq!((spec.scale_target_ref.kind.as_str(), spec.scale_target_ref.name.as_str()), ("Deployment", "frontend"));
    // What the lab's local HPA does on loopback (`chaoslab lab`) is the chart's HPA.
    let local = chaoslab::demo::topology::FRONTEND_HPA;
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(local.min_replicas as i32), local.max_replicas as i32));
    let metrics = spec.metrics.clone().unwrap_or_default();
    assert_eq!(metrics.len(), 1);
    let resource = metrics[0].resource.as_ref().expect("a Resource metric");
    assert_eq!(resource.name, "cpu");
    let utilization = (resource.target.type_.as_str(), resource.target.average_utilization);
    assert_eq!(utilization, ("Utilization", Some(local.target_cpu_utilization as i32)));
    assert!(spec.behavior.is_none(), "the HPA's default behavior, which the local HPA follows");
    let requests = container(&deployments["frontend"]).resources.as_ref().and_then(|r| r.requests.clone());
    let cpu = requests.unwrap_or_default().get("cpu").map(|q| q.0.clone());
    assert_eq!(cpu, Some(format!("{}m", local.cpu_request_millicores)), "the request utilization is measured against");
}

#[test]
fn the_demos_values_reach_its_objects() {
    let docs = render(&[
        "--set",
        "demo.enabled=true",
        "--set",
        "demo.namespace=lab",
        "--set",
        "demo.createNamespace=false",
        "--set",
        "demo.gracefulShutdown=false",
        "--set",
        "demo.shutdownDelaySeconds=2",
        "--set",
        "demo.drainTimeoutSeconds=3",
        "--set",
        "demo.services.frontend.hpa.enabled=false",
        "--set",
        "image.tag=dev",
    ]);
    assert!(all::<Namespace>(&docs, "Namespace").is_empty(), "createNamespace=false creates none");
    let deployments: BTreeMap<String, Deployment> = named(&docs, "Deployment", "lab");
    assert_eq!(deployments.len(), 3);
    for (name, deploy) in &deployments {
        assert_eq!(container(deploy).args.clone().unwrap_or_default(), expected_args(name, false, "2s", "3s"));
        assert_eq!(container(deploy).image.as_deref(), Some("chaoslab:dev"));
        assert!(pod(deploy).termination_grace_period_seconds.is_some_and(|g| g > 2 + 3));
    }
    assert_eq!(deployments["frontend"].spec.as_ref().and_then(|s| s.replicas), Some(1), "no HPA: replicas set");
    assert!(all::<HorizontalPodAutoscaler>(&docs, "HorizontalPodAutoscaler").is_empty());

    let docs = render(&[
        "--set",
        "demo.enabled=true",
        "--set",
        "optInLabel.key=example.com/chaos",
        "--set",
        "optInLabel.value=yes",
    ]);
    let ns: Vec<Namespace> = all(&docs, "Namespace");
    assert_eq!(
        ns[0].metadata.labels.clone().unwrap_or_default().get("example.com/chaos").map(String::as_str),
        Some("yes")
    );

    let refused = try_render(&["--set", "demo.enabled=true", "--set", format!("demo.namespace={NAMESPACE}").as_str()])
        .expect_err("the release namespace is never a chaos target");
    assert!(refused.contains("demo.namespace must differ from the release namespace"), "{refused}");
}
