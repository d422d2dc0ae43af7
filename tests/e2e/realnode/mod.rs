//! The real-node suite: every kind judged with real traffic on `hack/cluster up --real-node`,
//! with the chart's operator pod and the lab app (chaoslab-demo) installed by
//! `make real-node-suite` (hack/real-node-check.sh, cluster kept), runner and proxy pods from the chaoslab
//! image. It runs after that check, inside the cluster's network namespace:
//! `cargo test -p chaoslab --features e2e --test e2e realnode:: -- --test-threads=1`.
//! `make e2e` skips it (`--skip realnode::`); without the real node every test fails (never
//! skips) at [`ready`].

mod autoscaling;
mod breaker;
mod lessons;
mod loadtest;
mod operator;
mod podkill;
mod servicefault;

use std::{
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use kube::Client;
use serde_json::Value;

use crate::harness::{CHART_NS, RELEASE, apply, client, kubectl, repo, run};

pub const DEMO: &str = "chaoslab-demo";
pub const DEMO_SERVICES: [&str; 3] = ["frontend", "catalog", "inventory"];

/// The values every test starts from: the chart's defaults with the demo, and a 15 s
/// scale-down stabilization on the frontend's HPA (Kubernetes' default is 300 s), so a
/// scale-down is seen within a minute.
const BASE_VALUES: [&str; 4] =
    ["--set", "demo.enabled=true", "--set", "demo.services.frontend.hpa.scaleDownStabilizationSeconds=15"];

/// The real node's name, from `hack/cluster env`.
pub fn node() -> String {
    std::env::var("CHAOSLAB_NODE_NAME").unwrap_or_else(|_| {
        panic!(
            "CHAOSLAB_NODE_NAME is not set: the real-node suite runs on `hack/cluster up --real-node` with the chart \
             and its demo installed (make real-node-suite); it fails rather than skips without them"
        )
    })
}

/// The cluster is the real-node one, the chart's operator pod runs on the node and the demo is
/// Available; the suite's base values are applied once. Fails loudly otherwise.
pub async fn ready() -> Client {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let node = node();
        let ready = kubectl(&["get", "node", &node, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#]);
        assert_eq!(ready, "True", "the real node {node} is not Ready");
        let placed = kubectl(&[
            "-n",
            CHART_NS,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=chaoslab",
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
        ]);
        assert!(
            placed.lines().any(|l| l == format!("{node} Running")),
            "no Running operator pod of the chart on {node}: {placed:?} (helm install with --set demo.enabled=true first)"
        );
        helm_values(&[]);
    });
    client().await
}

/// `helm upgrade` of the release to the base values plus `sets` (chart defaults otherwise),
/// then every demo Deployment rolled out.
pub fn helm_values(sets: &[&str]) {
    let chart = repo("charts/chaoslab");
    let mut args = vec!["upgrade", RELEASE, chart.to_str().unwrap_or_default(), "-n", CHART_NS, "--reset-values"];
    args.extend(BASE_VALUES);
    args.extend(sets);
    args.extend(["--wait", "--timeout", "3m"]);
    let (ok, out, err) = run("helm", &args);
    assert!(ok, "helm {}:\n{out}\n{err}", args.join(" "));
    for d in DEMO_SERVICES {
        kubectl(&["-n", DEMO, "rollout", "status", &format!("deploy/{d}"), "--timeout=180s"]);
    }
}

/// Demo values for one test (a lesson's helm line); the base values are back when dropped,
/// also when the test fails.
pub struct Values;

impl Values {
    pub fn set(sets: &[&str]) -> Values {
        eprintln!("helm upgrade --reset-values {}", sets.join(" "));
        helm_values(sets);
        Values
    }
}

impl Drop for Values {
    fn drop(&mut self) {
        let result = std::panic::catch_unwind(|| helm_values(&[]));
        if result.is_err() {
            eprintln!("restoring the demo's values failed");
        }
    }
}

/// The chart's default catalog args with `from` replaced by `to` (a lesson's helm line).
pub fn catalog_args(replace: &[(&str, &str)]) -> String {
    // The chart's catalog flags, from the one list the lab and the chart share.
    let args = chaoslab::demo::topology::CATALOG;
    let mut out: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    for (from, to) in replace {
        let i = out.iter().position(|a| a == from).unwrap_or_else(|| panic!("{from} in the catalog's args"));
        out[i] = (*to).to_owned();
    }
    serde_json::to_string(&out).expect("JSON")
}

/// The chart's image (`chaoslab:<appVersion>`), as the operator's pod runs it.
pub fn image() -> String {
    let chart = std::fs::read_to_string(repo("charts/chaoslab/Chart.yaml")).expect("Chart.yaml");
    let version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("appVersion in Chart.yaml");
    format!("chaoslab:{version}")
}

/// A one-off pod of the chaoslab image in the demo namespace running `chaoslab load URL ARGS
/// -o json -q`; returns once it runs.
pub async fn start_load_pod(name: &str, url: &str, args: &[&str]) {
    let _ = run("kubectl", &["-n", DEMO, "delete", "pod", name, "--ignore-not-found", "--wait"]);
    let mut all = vec!["load".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all.extend(["-o".to_owned(), "json".to_owned(), "-q".to_owned()]);
    let args = serde_json::to_string(&all).expect("JSON");
    apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {DEMO}, labels: {{app: realnode-client}}}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {{runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: load
    image: {image}
    imagePullPolicy: Never
    args: {args}
    securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
"#,
        image = image()
    ));
    let start = Instant::now();
    loop {
        let phase = kubectl(&["-n", DEMO, "get", "pod", name, "-o", "jsonpath={.status.phase}"]);
        if phase != "Pending" && !phase.is_empty() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the load pod {name} did not start in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The JSON summary of a load pod once it has ended (`chaoslab load -o json`).
pub async fn load_pod_result(name: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let phase = kubectl(&["-n", DEMO, "get", "pod", name, "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" || phase == "Failed" {
            break;
        }
        assert!(start.elapsed() < limit, "the load pod {name} did not end within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let logs = kubectl(&["-n", DEMO, "logs", name]);
    let json = logs.find('{').map(|i| &logs[i..]).unwrap_or_else(|| panic!("no JSON in the logs of {name}: {logs}"));
    let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("the summary of {name}: {e}\n{logs}"));
    let _ = run("kubectl", &["-n", DEMO, "delete", "pod", name, "--wait=false"]);
    value
}

/// `chaoslab run -f FILE --wait --timeout LIMIT --replace -o json` with the debug binary, as a
/// person runs a lesson: its exit code and its report.json.
pub fn chaoslab_run(file: &str, limit: &str) -> (i32, Value) {
    let path = repo(file);
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
        .args(["run", "-f", path.to_str().unwrap_or_default(), "--wait", "--timeout", limit, "--replace", "-o", "json"])
        .output()
        .expect("chaoslab run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("chaoslab run -f {file}: exit {:?} after {:.0?}\n{stderr}", out.status.code(), started.elapsed());
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report of {file}: {e}\n{}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), report)
}

/// The verdict a lesson's header states (`# expect: Pass`).
pub fn expected_verdict(file: &str) -> String {
    let text = std::fs::read_to_string(repo(file)).expect("the lesson");
    text.lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no `# expect:` line in {file}"))
}

/// A figure of a report, as f64.
pub fn num(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

/// Seconds between two RFC 3339 times.
pub fn seconds_between(from: &str, to: &str) -> f64 {
    let a: k8s_openapi::jiff::Timestamp = from.parse().unwrap_or_else(|e| panic!("{from}: {e}"));
    let b: k8s_openapi::jiff::Timestamp = to.parse().unwrap_or_else(|e| panic!("{to}: {e}"));
    b.duration_since(a).as_secs_f64()
}
