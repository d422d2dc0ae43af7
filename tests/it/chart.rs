//! The Helm chart, rendered with the pinned helm and checked as typed Kubernetes objects: a
//! hardened Deployment wired to the operator's flags, and the least RBAC the operator needs —
//! exactly the rules of its contract, no wildcards, the Lease only in the release namespace,
//! and only per-namespace bindings when `watchNamespaces` is set.
//!
//! helm comes from `$HELM`, else the cache hack/tools.sh fills, else PATH. Without it the tests
//! fail (they never skip): run `bash hack/tools.sh` first.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::support::helm;

use helm::{NAMESPACE, RELEASE, all, render, try_render};

fn one<T: DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let mut found = all::<T>(docs, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found.remove(0)
}

fn operator_container(deploy: &Deployment) -> Container {
    let pod = deploy.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("Deployment has a pod spec");
    assert_eq!(pod.containers.len(), 1, "the operator pod has one container");
    pod.containers[0].clone()
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    env(container, name).and_then(|e| e.value.clone())
}

/// (apiGroup, resource, resourceName or "", verb) for every grant of these rules.
type Grant = (String, String, String, String);

fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.as_ref().is_none_or(|u| u.is_empty()), "no nonResourceURLs: {rule:?}");
        let names: Vec<String> = match rule.resource_names.as_deref() {
            Some(names) if !names.is_empty() => names.to_vec(),
            _ => vec![String::new()],
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for name in &names {
                    for verb in &rule.verbs {
                        out.insert((group.clone(), resource.clone(), name.clone(), verb.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expect(group: &str, resources: &[&str], verbs: &[&str]) -> BTreeSet<Grant> {
    expect_named(group, resources, "", verbs)
}

fn expect_named(group: &str, resources: &[&str], name: &str, verbs: &[&str]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in resources {
        for v in verbs {
            out.insert((group.to_owned(), (*r).to_owned(), name.to_owned(), (*v).to_owned()));
        }
    }
    out
}

const PLURALS: [&str; 6] =
    ["loadtests", "podkills", "servicefaults", "circuitbreakertrials", "autoscalingchecks", "drills"];

/// The operator's contract: what it does to objects in the namespaces it acts in.
fn namespaced_contract() -> BTreeSet<Grant> {
    let sub = |s: &str| PLURALS.iter().map(|p| format!("{p}/{s}")).collect::<Vec<_>>();
    let (status, finalizers) = (sub("status"), sub("finalizers"));
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    let finalizers: Vec<&str> = finalizers.iter().map(String::as_str).collect();
    let mut out = BTreeSet::new();
    out.extend(expect("chaoslab.dev", &PLURALS, &["get", "list", "watch", "patch", "update"]));
    out.extend(expect("chaoslab.dev", &["loadtests", "podkills", "servicefaults"], &["create"]));
    out.extend(expect("chaoslab.dev", &status, &["get", "patch", "update"]));
    out.extend(expect("chaoslab.dev", &finalizers, &["update"]));
    out.extend(expect("", &["pods"], &["get", "list", "watch", "delete"]));
    out.extend(expect("", &["pods/eviction"], &["create"]));
    out.extend(expect("events.k8s.io", &["events"], &["create", "patch"]));
    out.extend(expect("apps", &["replicasets", "statefulsets", "daemonsets"], &["get"]));
    out.extend(expect("batch", &["jobs"], &["get", "list", "watch", "create", "delete"]));
    out.extend(expect("", &["configmaps"], &["get", "list", "watch", "create", "update", "patch", "delete"]));
    out.extend(expect("", &["services"], &["get", "create", "patch", "delete"]));
    out.extend(expect("apps", &["deployments"], &["get", "list", "watch", "create", "delete"]));
    out.extend(expect("autoscaling", &["horizontalpodautoscalers"], &["get", "list"]));
    out.extend(expect("discovery.k8s.io", &["endpointslices"], &["list"]));
    out.extend(expect("", &["serviceaccounts"], &["get", "create"]));
    out.extend(expect("rbac.authorization.k8s.io", &["rolebindings"], &["get", "create"]));
    out
}

/// What a LoadTest runner pod may do: read its LoadTest, write its report.
fn runner_contract() -> BTreeSet<Grant> {
    let mut out = expect("chaoslab.dev", &["loadtests"], &["get"]);
    out.extend(expect("", &["configmaps"], &["get", "create", "update"]));
    out
}

/// The ClusterRole of the given name.
fn cluster_role(docs: &[Value], name: &str) -> ClusterRole {
    all::<ClusterRole>(docs, "ClusterRole")
        .into_iter()
        .find(|cr| cr.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("the render has a ClusterRole {name}"))
}

fn cluster_scoped_contract() -> BTreeSet<Grant> {
    expect("", &["namespaces"], &["get"])
}

/// No rule of any (Cluster)Role in the render uses a wildcard.
fn assert_no_wildcards(docs: &[Value]) {
    let mut rules: Vec<(String, PolicyRule)> = Vec::new();
    for cr in all::<ClusterRole>(docs, "ClusterRole") {
        assert!(cr.aggregation_rule.is_none(), "ClusterRole {:?} aggregates other roles", cr.metadata.name);
        let name = format!("ClusterRole {}", cr.metadata.name.unwrap_or_default());
        rules.extend(cr.rules.into_iter().flatten().map(|r| (name.clone(), r)));
    }
    for role in all::<Role>(docs, "Role") {
        let name = format!("Role {}", role.metadata.name.unwrap_or_default());
        rules.extend(role.rules.into_iter().flatten().map(|r| (name.clone(), r)));
    }
    assert!(!rules.is_empty(), "the render has RBAC rules");
    for (owner, rule) in rules {
        let fields = [
            ("apiGroups", rule.api_groups.clone().unwrap_or_default()),
            ("resources", rule.resources.clone().unwrap_or_default()),
            ("resourceNames", rule.resource_names.clone().unwrap_or_default()),
            ("verbs", rule.verbs.clone()),
        ];
        for (field, values) in fields {
            assert!(!values.iter().any(|v| v.contains('*')), "{owner} has a wildcard in {field}: {rule:?}");
        }
    }
}

fn assert_binds_operator(subjects: Option<&Vec<k8s_openapi::api::rbac::v1::Subject>>, what: &str) {
    let subjects = subjects.unwrap_or_else(|| panic!("{what} has no subjects"));
    assert_eq!(subjects.len(), 1, "{what} binds exactly the operator's ServiceAccount");
    let s = &subjects[0];
    assert_eq!(
        (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
        ("ServiceAccount", RELEASE, Some(NAMESPACE)),
        "{what} binds the operator's ServiceAccount"
    );
}

#[test]
fn deployment_is_hardened_and_single_active() {
    let docs = render(&[]);
    let deploy: Deployment = one(&docs, "Deployment");
    assert_eq!(deploy.metadata.namespace.as_deref(), Some(NAMESPACE));
    let spec = deploy.spec.as_ref().expect("Deployment has a spec");
    assert_eq!(spec.replicas, Some(1), "one replica by default");
    assert_eq!(
        spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "the old operator is gone before the new one starts"
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(RELEASE));

    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true), "pod runs as non-root");
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "pod runAsUser is set and not root: {:?}", psc.run_as_user);
    assert_eq!(psc.run_as_user, Some(65532), "the distroless nonroot user");
    assert_eq!(psc.run_as_group, Some(65532));
    assert_eq!(psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()), Some("RuntimeDefault"));

    let c = operator_container(&deploy);
    assert_eq!(c.image.as_deref(), Some("chaoslab:0.1.0"), "image tag defaults to the appVersion");
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(c.args.as_deref(), Some(&["operator".to_owned()][..]));
    let sc = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, None, "never privileged");
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()), "no capability is added");
    // The container may not weaken what the pod sets.
    assert_ne!(sc.run_as_non_root, Some(false));
    assert!(sc.run_as_user.is_none_or(|u| u != 0));

    let port = c.ports.iter().flatten().find(|p| p.name.as_deref() == Some("http")).expect("a port named http");
    assert_eq!(port.container_port, 8080);
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get =
            probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{path} probe is an HTTP GET"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            serde_json::to_value(&get.port).expect("port serializes"),
            Value::from("http"),
            "{path} probe uses the named port"
        );
    }

    let resources = c.resources.as_ref().expect("resources");
    let q =
        |m: &Option<std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| { m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    assert_eq!(q(&resources.requests, "cpu").as_deref(), Some("50m"));
    assert_eq!(q(&resources.requests, "memory").as_deref(), Some("64Mi"));
    assert_eq!(q(&resources.limits, "cpu").as_deref(), Some("500m"));
    assert_eq!(q(&resources.limits, "memory").as_deref(), Some("256Mi"));
}

#[test]
fn operator_settings_come_from_values_and_the_downward_api() {
    let docs = render(&[]);
    let c = operator_container(&one::<Deployment>(&docs, "Deployment"));
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let var = env(&c, name).unwrap_or_else(|| panic!("{name} is set"));
        assert_eq!(var.value, None, "{name} comes from the downward API, not a literal");
        let field_ref = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
        assert_eq!(field_ref.map(|f| f.field_path.as_str()), Some(field), "{name} comes from fieldRef {field}");
    }
    assert_eq!(env_value(&c, "CHAOSLAB_LISTEN_ADDR").as_deref(), Some("0.0.0.0:8080"));
    assert_eq!(env_value(&c, "CHAOSLAB_LOG_LEVEL").as_deref(), Some("info"));
    assert!(matches!(env_value(&c, "CHAOSLAB_LOG_FORMAT").as_deref(), Some("plain" | "json")));
    assert_eq!(env_value(&c, "CHAOSLAB_LEADER_ELECTION").as_deref(), Some("true"));
    assert_eq!(env_value(&c, "CHAOSLAB_LEASE_NAME").as_deref(), Some("chaoslab-operator"));
    assert_eq!(env_value(&c, "CHAOSLAB_OPT_IN_LABEL").as_deref(), Some("chaoslab.dev/chaos=enabled"));
    assert!(env(&c, "CHAOSLAB_WATCH_NAMESPACES").is_none(), "all namespaces: the variable is left unset");

    let docs = render(&[
        "--set",
        "watchNamespaces={a,b}",
        "--set",
        "leaderElection.enabled=false",
        "--set",
        "optInLabel.key=example.com/chaos",
        "--set",
        "optInLabel.value=yes",
        "--set",
        "logFormat=json",
        "--set",
        "image.tag=dev",
    ]);
    let c = operator_container(&one::<Deployment>(&docs, "Deployment"));
    assert_eq!(env_value(&c, "CHAOSLAB_WATCH_NAMESPACES").as_deref(), Some("a,b"));
    assert_eq!(env_value(&c, "CHAOSLAB_LEADER_ELECTION").as_deref(), Some("false"));
    assert_eq!(env_value(&c, "CHAOSLAB_OPT_IN_LABEL").as_deref(), Some("example.com/chaos=yes"));
    assert_eq!(env_value(&c, "CHAOSLAB_LOG_FORMAT").as_deref(), Some("json"));
    assert_eq!(c.image.as_deref(), Some("chaoslab:dev"));
}

#[test]
fn metrics_service_targets_the_http_port() {
    let docs = render(&[]);
    let svc: Service = one(&docs, "Service");
    let spec = svc.spec.expect("Service spec");
    let ports = spec.ports.expect("Service ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    assert_eq!(ports[0].port, 8080);
    assert_eq!(serde_json::to_value(&ports[0].target_port).expect("serializes"), Value::from("http"));
    let deploy: Deployment = one(&docs, "Deployment");
    let pod_labels = deploy.spec.and_then(|s| s.template.metadata).and_then(|m| m.labels).expect("pod labels");
    for (k, v) in spec.selector.expect("Service selector") {
        assert_eq!(pod_labels.get(&k), Some(&v), "the Service selects the operator pod ({k})");
    }
    let annotations = svc.metadata.annotations.unwrap_or_default();
    assert_eq!(annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"));

    let docs = render(&["--set", "metrics.service.prometheusAnnotations=false"]);
    let svc: Service = one(&docs, "Service");
    assert!(svc.metadata.annotations.unwrap_or_default().keys().all(|k| !k.starts_with("prometheus.io/")));
}

#[test]
fn cluster_role_grants_exactly_the_contract_and_no_wildcards() {
    let docs = render(&[]);
    assert_no_wildcards(&docs);
    let role = cluster_role(&docs, RELEASE);
    let granted = grants(role.rules.as_deref().unwrap_or_default());

    let eviction = ("".to_owned(), "pods/eviction".to_owned(), String::new(), "create".to_owned());
    assert!(granted.contains(&eviction), "the ClusterRole grants pods/eviction create");
    {
        let group = "events.k8s.io";
        for verb in ["create", "patch"] {
            let g = (group.to_owned(), "events".to_owned(), String::new(), verb.to_owned());
            assert!(granted.contains(&g), "the ClusterRole grants events {verb} in group {group:?}");
        }
    }

    let mut contract = namespaced_contract();
    contract.extend(cluster_scoped_contract());
    let missing: Vec<_> = contract.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&contract).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ClusterRole differs from the contract: missing {missing:?}, extra {extra:?}"
    );

    let binding: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    assert_binds_operator(binding.subjects.as_ref(), "the ClusterRoleBinding");
    assert!(all::<RoleBinding>(&docs, "RoleBinding").iter().all(|rb| rb.role_ref.kind == "Role"));
}

#[test]
fn runners_get_a_role_of_their_own_that_the_operator_can_bind() {
    let docs = render(&[]);
    let runner_role = format!("{RELEASE}-runner");
    let runner = cluster_role(&docs, &runner_role);
    assert_eq!(grants(runner.rules.as_deref().unwrap_or_default()), runner_contract());
    // The chart binds it nowhere: the operator does, per namespace that runs a LoadTest, and
    // RBAC lets it only because it holds every right of the role itself.
    assert!(all::<ClusterRoleBinding>(&docs, "ClusterRoleBinding").iter().all(|b| b.role_ref.name != runner_role));
    assert!(all::<RoleBinding>(&docs, "RoleBinding").iter().all(|b| b.role_ref.name != runner_role));
    let operator = grants(cluster_role(&docs, RELEASE).rules.as_deref().unwrap_or_default());
    assert!(runner_contract().is_subset(&operator), "the operator holds every right it grants runners");
    let deploy: Deployment = one(&docs, "Deployment");
    let container = operator_container(&deploy);
    assert_eq!(env_value(&container, "CHAOSLAB_RUNNER_ROLE").as_deref(), Some(runner_role.as_str()));
    assert_eq!(env_value(&container, "CHAOSLAB_RUNNER_IMAGE"), container.image, "runners run the operator's image");
}

#[test]
fn leases_are_granted_only_in_the_release_namespace() {
    let docs = render(&[]);
    for cr in all::<ClusterRole>(&docs, "ClusterRole") {
        for (group, resource, _, _) in grants(cr.rules.as_deref().unwrap_or_default()) {
            assert!(
                group != "coordination.k8s.io" && resource != "leases",
                "ClusterRole {:?} grants leases cluster-wide",
                cr.metadata.name
            );
        }
    }
    let role: Role = one(&docs, "Role");
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE), "the Lease Role is in the release namespace");
    let granted = grants(role.rules.as_deref().unwrap_or_default());
    assert!(
        granted.iter().all(|(g, r, _, _)| g == "coordination.k8s.io" && r == "leases"),
        "the Role is only about Leases"
    );
    let verbs: BTreeSet<&str> = granted.iter().map(|(_, _, _, v)| v.as_str()).collect();
    assert_eq!(verbs, BTreeSet::from(["get", "create", "update", "patch"]));
    for (_, _, name, verb) in &granted {
        if verb != "create" {
            assert_eq!(name, "chaoslab-operator", "{verb} is limited to the operator's Lease");
        }
    }

    let bindings: Vec<RoleBinding> = all(&docs, "RoleBinding");
    let binding = bindings
        .iter()
        .find(|b| b.role_ref.kind == "Role" && Some(&b.role_ref.name) == role.metadata.name.as_ref())
        .expect("a RoleBinding for the Lease Role");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_binds_operator(binding.subjects.as_ref(), "the Lease RoleBinding");

    let docs = render(&["--set", "leaderElection.enabled=false"]);
    assert!(all::<Role>(&docs, "Role").is_empty(), "no Lease Role without leader election");
}

#[test]
fn watched_namespaces_get_role_bindings_not_a_cluster_binding() {
    let docs = render(&["--set", "watchNamespaces={a,b}", "--set", "leaderElection.enabled=false"]);
    assert_no_wildcards(&docs);
    let cluster_roles: Vec<ClusterRole> = all(&docs, "ClusterRole");
    assert_eq!(cluster_roles.len(), 3, "namespaced rules, the Namespace reader and the runners' role");
    let pods =
        |cr: &ClusterRole| grants(cr.rules.as_deref().unwrap_or_default()).iter().any(|(_, r, _, _)| r == "pods");
    let namespaced: Vec<&ClusterRole> = cluster_roles.iter().filter(|cr| pods(cr)).collect();
    assert_eq!(namespaced.len(), 1, "one ClusterRole carries the namespaced rules");
    let namespaced_name = namespaced[0].metadata.name.clone().expect("named");
    assert_eq!(grants(namespaced[0].rules.as_deref().unwrap_or_default()), namespaced_contract());

    let bindings: Vec<RoleBinding> = all(&docs, "RoleBinding");
    let mut bound_in = BTreeSet::new();
    for rb in &bindings {
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        assert_eq!(rb.role_ref.name, namespaced_name);
        assert_binds_operator(rb.subjects.as_ref(), "a watched namespace's RoleBinding");
        bound_in.insert(rb.metadata.namespace.clone().expect("RoleBinding has a namespace"));
    }
    assert_eq!(bound_in, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    assert_eq!(bindings.len(), 2, "one RoleBinding per watched namespace");

    for crb in all::<ClusterRoleBinding>(&docs, "ClusterRoleBinding") {
        assert_ne!(crb.role_ref.name, namespaced_name, "the namespaced rules are not bound cluster-wide");
        let role = cluster_roles
            .iter()
            .find(|cr| cr.metadata.name.as_ref() == Some(&crb.role_ref.name))
            .expect("the ClusterRoleBinding's role is in the chart");
        assert_eq!(
            grants(role.rules.as_deref().unwrap_or_default()),
            cluster_scoped_contract(),
            "cluster-wide, only Namespaces are readable"
        );
        assert_binds_operator(crb.subjects.as_ref(), "the Namespace reader binding");
    }
    assert_eq!(all::<ClusterRoleBinding>(&docs, "ClusterRoleBinding").len(), 1);
}

#[test]
fn service_account_exists_unless_brought() {
    let docs = render(&[]);
    let sas: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ServiceAccount").collect();
    assert_eq!(sas.len(), 1);
    assert_eq!(sas[0]["metadata"]["name"], RELEASE);
    assert_eq!(sas[0]["metadata"]["namespace"], NAMESPACE);

    let docs = render(&["--set", "serviceAccount.create=false", "--set", "serviceAccount.name=mine"]);
    assert!(docs.iter().all(|d| d["kind"] != "ServiceAccount"));
    let deploy: Deployment = one(&docs, "Deployment");
    let pod = deploy.spec.and_then(|s| s.template.spec).expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("mine"));
    let crb: ClusterRoleBinding = one(&docs, "ClusterRoleBinding");
    assert_eq!(crb.subjects.expect("subjects")[0].name, "mine");
}

#[test]
fn two_active_operators_are_refused() {
    let err = try_render(&["--set", "replicas=2", "--set", "leaderElection.enabled=false"])
        .expect_err("replicas=2 without leader election must not render");
    assert!(err.contains("leaderElection"), "the error names the fix: {err}");
    let docs = render(&["--set", "replicas=2"]);
    let deploy: Deployment = one(&docs, "Deployment");
    assert_eq!(deploy.spec.and_then(|s| s.replicas), Some(2));
}

#[test]
fn the_grafana_dashboard_is_off_by_default_and_shows_only_exported_metrics() {
    let docs = render(&[]);
    assert!(
        docs.iter()
            .all(|d| d["kind"] != "ConfigMap" || !d["metadata"]["name"].as_str().unwrap_or("").ends_with("-dashboard")),
        "no dashboard unless asked"
    );
    let docs = render(&["--set", "grafanaDashboard.enabled=true"]);
    let cm: k8s_openapi::api::core::v1::ConfigMap = one(&docs, "ConfigMap");
    let labels = cm.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("grafana_dashboard").map(String::as_str), Some("1"), "the sidecar's label");
    assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE));
    let json = cm.data.unwrap_or_default().remove("chaoslab.json").expect("the dashboard");
    let dashboard: Value = serde_json::from_str(&json).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "chaoslab-verdicts");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    // Every metric a panel or variable queries is one the operator exports (the registry adds
    // the `chaoslab_` prefix to the names in crates/operator/src/metrics/).
    let sources: String = ["crates/operator/src/metrics/mod.rs", "crates/operator/src/metrics/figures.rs"]
        .iter()
        .map(|f| std::fs::read_to_string(crate::support::repo_path(f)).expect("source"))
        .collect();
    let mut queried = BTreeSet::new();
    for word in json.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if let Some(name) = word.strip_prefix("chaoslab_") {
            queried.insert(name.trim_end_matches("_total").to_owned());
        }
    }
    for must in ["experiment_verdict", "phase_latency_seconds", "phase_error_ratio", "time_to_recover_seconds"] {
        assert!(queried.contains(must), "the dashboard shows {must}: {queried:?}");
    }
    for name in &queried {
        assert!(sources.contains(&format!("\"{name}\"")), "chaoslab_{name} is not exported by the operator");
    }
    let with_ns = render(&["--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.namespace=monitoring"]);
    let cm: k8s_openapi::api::core::v1::ConfigMap = one(&with_ns, "ConfigMap");
    assert_eq!(cm.metadata.namespace.as_deref(), Some("monitoring"));
}
