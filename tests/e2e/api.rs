//! The chart and the API contract against the real API server.

use std::path::Path;

use serde_json::Value;

use crate::harness::{CHART_NS, chart_installed, client, kubectl, namespace, ok, repo, run};

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable file");
    serde_saphyr::from_multiple::<Value>(&text).expect("valid YAML").into_iter().filter(|v| !v.is_null()).collect()
}

/// The YAML files under `dir`, its subdirectories included (examples/drills/ is a curriculum).
fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `kubectl auth can-i` as `user`; `resource` may name a subresource (`pods/eviction`), and an
/// empty namespace means all namespaces. Answers "yes" or "no".
fn can_i(user: &str, verb: &str, resource: &str, namespace: &str) -> String {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    let sub_flag = format!("--subresource={sub}");
    if !sub.is_empty() {
        args.push(&sub_flag);
    }
    if namespace.is_empty() {
        args.push("-A")
    } else {
        args.extend(["-n", namespace])
    }
    run("kubectl", &args).1.trim().to_owned()
}

/// The namespaces the manifests of `files` live in.
fn namespaces_of(files: &[std::path::PathBuf]) -> std::collections::BTreeSet<String> {
    files
        .iter()
        .flat_map(|f| documents(f))
        .filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect()
}

/// Every chaoslab object, in any namespace, belonging to a release.
fn release_objects(release: &str) -> String {
    let selector = format!("app.kubernetes.io/instance={release}");
    // A list that fails is no proof that nothing is left: both must succeed.
    let namespaced =
        ok("kubectl", &["get", "deploy,sa,svc,role,rolebinding,cm,secret", "-A", "-l", &selector, "-o", "name"]);
    let cluster = ok("kubectl", &["get", "clusterrole,clusterrolebinding", "-l", &selector, "-o", "name"]);
    format!("{namespaced}{cluster}")
}

#[tokio::test]
async fn the_chart_installs_and_uninstalls_leaving_only_the_crds() {
    chart_installed(); // the suite's release, which other tests use
    let release = "chaoslab-e2e-uninstall";
    let chart = repo("charts/chaoslab");
    ok(
        "helm",
        &[
            "install",
            release,
            chart.to_str().unwrap_or_default(),
            "-n",
            "e2e-helm",
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ],
    );
    for crd in ["loadtests", "podkills", "servicefaults", "circuitbreakertrials", "autoscalingchecks", "drills"] {
        kubectl(&["wait", "--for=condition=Established", &format!("crd/{crd}.chaoslab.dev"), "--timeout=30s"]);
    }
    let objects = release_objects(release);
    for kind in [
        "deployment.apps/",
        "serviceaccount/",
        "clusterrole.rbac.authorization.k8s.io/",
        "clusterrolebinding.rbac.authorization.k8s.io/",
        "role.rbac.authorization.k8s.io/",
        "service/",
    ] {
        assert!(objects.contains(kind), "no {kind} of the release in:\n{objects}");
    }
    // The ServiceAccount may evict pods and write Events, as the operator needs.
    let sa = format!("system:serviceaccount:e2e-helm:{release}");
    for (verb, resource) in [
        ("create", "pods/eviction"),
        ("delete", "pods"),
        ("create", "events.events.k8s.io"),
        ("patch", "podkills.chaoslab.dev/status"),
    ] {
        assert_eq!(can_i(&sa, verb, resource, "default"), "yes", "{sa} cannot {verb} {resource}");
    }
    assert_eq!(can_i(&sa, "delete", "nodes", ""), "no", "least privilege");
    ok("helm", &["uninstall", release, "-n", "e2e-helm", "--wait"]);
    let left = release_objects(release);
    assert!(left.trim().is_empty(), "helm uninstall left objects behind:\n{left}");
    kubectl(&["get", "crd", "podkills.chaoslab.dev"]); // Helm keeps CRDs, by design.
}

#[tokio::test]
async fn every_example_is_accepted_by_server_side_dry_run() {
    chart_installed();
    let client = client().await;
    let files = yaml_files("examples");
    // A dry run of a namespaced object needs its namespace to exist.
    for ns in namespaces_of(&files) {
        namespace(&client, &ns, true).await;
    }
    assert!(files.len() >= 6, "examples/ has {} files", files.len());
    for file in files {
        let (success, out, err) =
            run("kubectl", &["apply", "--dry-run=server", "-f", file.to_str().unwrap_or_default()]);
        assert!(success, "{} is refused by the API server:\n{out}\n{err}", file.display());
    }
}

#[tokio::test]
async fn every_invalid_fixture_is_refused_by_the_api_server_with_its_message() {
    chart_installed();
    let client = client().await;
    let files = yaml_files("tests/fixtures/invalid");
    assert!(files.len() >= 15);
    for ns in namespaces_of(&files) {
        namespace(&client, &ns, true).await;
    }
    let scratch = std::env::temp_dir().join("chaoslab-e2e-fixtures");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    for file in &files {
        let text = std::fs::read_to_string(file).expect("fixture");
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} names no `# expect:` text to hold the refusal to", file.display());
        let docs = documents(file);
        let new = docs.last().expect("a manifest");
        if docs.len() == 2 {
            // The stored object: created for real, then moved to Running through /status.
            let old = &docs[0];
            let path = scratch.join("old.json");
            std::fs::write(&path, serde_json::to_string(old).expect("json")).expect("write");
            let kind = old["kind"].as_str().expect("kind").to_lowercase();
            let (name, ns) =
                (old["metadata"]["name"].as_str().expect("name"), old["metadata"]["namespace"].as_str().expect("ns"));
            let _ = run("kubectl", &["delete", &kind, name, "-n", ns, "--ignore-not-found", "--wait"]);
            ok("kubectl", &["create", "-f", path.to_str().unwrap_or_default()]);
            let status = serde_json::json!({"status": old["status"]}).to_string();
            ok("kubectl", &["patch", &kind, name, "-n", ns, "--subresource=status", "--type=merge", "-p", &status]);
        }
        let path = scratch.join("new.json");
        std::fs::write(&path, serde_json::to_string(new).expect("json")).expect("write");
        let verb = if docs.len() == 2 { "apply" } else { "create" };
        let (success, out, err) = run("kubectl", &[verb, "--dry-run=server", "-f", path.to_str().unwrap_or_default()]);
        assert!(!success, "{} was accepted by the API server: {out}", file.display());
        for expect in &expects {
            assert!(err.contains(expect), "{}: expected {expect:?} in the API server's answer:\n{err}", file.display());
        }
    }
}

#[tokio::test]
async fn the_operator_rbac_is_exactly_enough() {
    chart_installed();
    let sa = format!("system:serviceaccount:{CHART_NS}:chaoslab");
    for (verb, resource) in [
        ("get", "namespaces"),
        ("list", "pods"),
        ("watch", "podkills.chaoslab.dev"),
        ("update", "podkills.chaoslab.dev/finalizers"),
    ] {
        assert_eq!(can_i(&sa, verb, resource, ""), "yes", "{verb} {resource}");
    }
    for (verb, resource) in [("list", "secrets"), ("create", "pods"), ("delete", "namespaces"), ("delete", "nodes")] {
        assert_eq!(can_i(&sa, verb, resource, ""), "no", "{verb} {resource} should be denied");
    }
}
