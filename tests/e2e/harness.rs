//! The e2e harness: the local cluster's clients and tools, the chart installed once, and the
//! operator run as a real process with the chart's ServiceAccount token (so RBAC is real).

use std::{
    convert::Infallible,
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chaoslab::{api::Experiment, load::protocol::RUN_LABEL};
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::{batch::v1::Job, coordination::v1::Lease, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;

pub const CHART_NS: &str = "chaoslab-system";
pub const RELEASE: &str = "chaoslab";

pub fn repo(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(rel)
}

/// Where the cluster's tools are; the suite fails loudly outside `make e2e`.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the e2e suite runs against the local cluster, through `make e2e` (hack/cluster up, then the tests inside its network namespace)")
    })
}

fn tool(name: &str) -> PathBuf {
    let k8s = PathBuf::from(env("CHAOSLAB_K8S_BIN")).join(name);
    if k8s.exists() {
        return k8s;
    }
    let cache = std::env::var("CHAOSLAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env("HOME")).join(".cache/chaoslab"));
    let cached = cache.join("bin").join(name);
    assert!(
        cached.exists(),
        "{name} not found in $CHAOSLAB_K8S_BIN or {}: run hack/tools.sh and hack/k8s/build.sh",
        cached.display()
    );
    cached
}

/// Run a tool; returns (success, stdout, stderr).
pub fn run(name: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tool(name)).args(args).output().unwrap_or_else(|e| panic!("running {name}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run a tool that must succeed; returns stdout.
pub fn ok(name: &str, args: &[&str]) -> String {
    let (success, out, err) = run(name, args);
    assert!(success, "{name} {} failed:\n{out}\n{err}", args.join(" "));
    out
}

pub fn kubectl(args: &[&str]) -> String {
    ok("kubectl", args)
}

pub async fn client() -> Client {
    env("KUBECONFIG");
    Client::try_default().await.expect("a client for the local cluster")
}

/// Poll `check` until it returns Some, or fail after `limit` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The chart, installed once for the whole suite (helm upgrade --install is idempotent).
pub fn chart_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        ok(
            "helm",
            &[
                "upgrade",
                "--install",
                RELEASE,
                repo("charts/chaoslab").to_str().unwrap_or_default(),
                "-n",
                CHART_NS,
                "--create-namespace",
                "--wait",
                "--timeout",
                "120s",
            ],
        );
    });
}

/// A fresh namespace for one test, opted in to chaos unless `opted_in` is false.
pub async fn namespace(client: &Client, name: &str, opted_in: bool) {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await.expect("get namespace").is_some() {
        // A leftover from an earlier run may hold experiments whose finalizer waits for an
        // operator that is not running; the namespace and all it holds goes, so drop them.
        let (_, leftovers, _) =
            run("kubectl", &["-n", name, "get", "podkills,loadtests,servicefaults,drills", "-o", "name"]);
        for obj in leftovers.lines() {
            let _ = run(
                "kubectl",
                &["-n", name, "patch", obj, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
            );
        }
        let _ = api.delete(name, &Default::default()).await;
        wait_for(&format!("old namespace {name} to go"), Duration::from_secs(120), || {
            let api = api.clone();
            async move { api.get_opt(name).await.ok().flatten().is_none().then_some(()) }
        })
        .await;
    }
    let labels = if opted_in { json!({"chaoslab.dev/chaos": "enabled"}) } else { json!({}) };
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("namespace");
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
}

/// A test's lab: a client, a fresh namespace (opted in to chaos or not) and a Deployment `app` of
/// `replicas` Ready pods in it.
pub async fn lab(ns: &str, opted_in: bool, app: &str, replicas: u32) -> Client {
    let client = client().await;
    namespace(&client, ns, opted_in).await;
    deployment(ns, app, replicas);
    client
}

/// Apply YAML (one or more documents) with kubectl.
pub fn apply(yaml: &str) {
    let mut child = Command::new(tool("kubectl"))
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(out.status.success(), "kubectl apply failed: {}\n{yaml}", String::from_utf8_lossy(&out.stderr));
}

/// A Deployment of `replicas` pods labelled app=NAME, on kwok nodes, and wait until all are Ready.
pub fn deployment(ns: &str, name: &str, replicas: u32) {
    apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers: [{{name: app, image: 'nginx:1.27', resources: {{requests: {{cpu: 100m}}}}}}]\n"
    ));
    kubectl(&["-n", ns, "rollout", "status", &format!("deploy/{name}"), "--timeout=120s"]);
}

/// A kubeconfig that authenticates as the chart's ServiceAccount, so the operator has exactly
/// the chart's RBAC.
pub fn service_account_kubeconfig() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        chart_installed();
        token_kubeconfig(CHART_NS, RELEASE)
    })
    .clone()
}

/// A kubeconfig that authenticates as ServiceAccount `sa` of `ns`, with a fresh token.
pub fn token_kubeconfig(ns: &str, sa: &str) -> PathBuf {
    let token = kubectl(&["-n", ns, "create", "token", sa, "--duration", "2h"]);
    let dir = PathBuf::from(env("CHAOSLAB_CLUSTER_DIR"));
    let path = dir.join(format!("{ns}-{sa}.kubeconfig"));
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:6443', certificate-authority: {}}}\nusers:\n- name: sa\n  user: {{token: {}}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: sa}}\ncurrent-context: c\n",
        dir.join("pki/ca.crt").display(),
        token.trim()
    );
    std::fs::write(&path, config).expect("write the ServiceAccount kubeconfig");
    path
}

/// The operator as a process, watching `namespaces`, leading on the chart's Lease. Stopped with
/// SIGTERM when dropped (it releases the Lease, so the next test's operator leads at once);
/// `kill` is a crash (SIGKILL).
pub struct Operator {
    child: Child,
    pub metrics_port: u16,
    log: PathBuf,
    /// Its identity for leader election (`POD_NAME`), as the Lease's holder names it.
    pub identity: String,
}

impl Operator {
    pub fn start(name: &str, namespaces: &[&str]) -> Self {
        let kubeconfig = service_account_kubeconfig();
        let port = free_port();
        let log = PathBuf::from(env("CHAOSLAB_CLUSTER_DIR")).join(format!("logs/operator-{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("operator log");
        let identity = format!("e2e-{name}");
        let child = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
            // The chart's Lease name: the chart's Role allows exactly that one Lease.
            .args(["operator", "--listen-addr", &format!("127.0.0.1:{port}"), "--lease-name", "chaoslab-operator"])
            .args(["--watch-namespaces", &namespaces.join(","), "--log-level", "chaoslab=debug,info"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", CHART_NS)
            .env("POD_NAME", &identity)
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start the operator");
        Self { child, metrics_port: port, log, identity }
    }

    /// SIGKILL, as a crash: nothing is cleaned up, the Lease is left to expire.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and up to 10 s for a graceful exit, then SIGKILL.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The operator's `/metrics` text, over its real port.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("connect to /metrics");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: operator\r\nconnection: close\r\n\r\n").expect("request");
        let mut out = String::new();
        stream.read_to_string(&mut out).expect("response");
        out
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The holder of the chart's Lease (`chaoslab-operator` in the chart's namespace), as the API
/// server has it: `None` when nobody holds it (released, or never taken).
pub async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), CHART_NS);
    let lease = leases.get("chaoslab-operator").await.expect("the chart's Lease");
    lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty())
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A loopback HTTP server answering `200 ok` after `delay`; counts the requests it answered.
pub async fn server(delay: Duration) -> (String, Arc<AtomicU64>) {
    server_with_status(delay, 200).await
}

/// The same, answering with `status`.
pub async fn server_with_status(delay: Duration, status: u16) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let counted = counted.clone();
                    async move {
                        tokio::time::sleep(delay).await;
                        counted.fetch_add(1, Ordering::Relaxed);
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (url, count)
}

/// A runner process, as a runner pod would run it: the Job's own `CHAOSLAB_RUNNER`, its index,
/// and the runners' ServiceAccount (so the runner RBAC is real). SIGKILLed when dropped.
pub struct Runner(Child);

impl Runner {
    pub fn start(job: &Job, index: u32, kubeconfig: &PathBuf, name: &str) -> Runner {
        let container = &job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod spec").containers[0];
        let config = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "CHAOSLAB_RUNNER")
            .and_then(|e| e.value.clone())
            .expect("the Job passes CHAOSLAB_RUNNER");
        assert_eq!(container.args.as_deref(), Some(&["runner".to_owned()][..]), "the pods run `chaoslab runner`");
        let log = PathBuf::from(env("CHAOSLAB_CLUSTER_DIR")).join(format!("logs/runner-{name}-{index}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("runner log");
        let child = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
            .arg("runner")
            .env("CHAOSLAB_RUNNER", config)
            .env("JOB_COMPLETION_INDEX", index.to_string())
            .env("KUBECONFIG", kubeconfig)
            .env("CHAOSLAB_LOG_LEVEL", "chaoslab=debug,info")
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start a runner");
        Runner(child)
    }

    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// Waits for the runner to exit on its own; its exit status.
    pub async fn exited(mut self, limit: Duration) -> std::process::ExitStatus {
        wait_for("the runner to exit", limit, || {
            let status = self.0.try_wait().ok().flatten();
            async move { status }
        })
        .await
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The runner Job of the LoadTest whose UID is `uid`, once the operator created it.
pub async fn runner_job(client: &Client, ns: &str, uid: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_for("the runner Job", Duration::from_secs(30), || async {
        jobs.list(&ListParams::default().labels(&format!("{RUN_LABEL}={uid}"))).await.ok()?.items.into_iter().next()
    })
    .await
}

/// Creates the experiment `K` named `name` with `spec`.
pub async fn create<K: Experiment>(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> Api<K> {
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let obj: K = serde_json::from_value(json!({
        "apiVersion": "chaoslab.dev/v1alpha1", "kind": K::KIND,
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap_or_else(|e| panic!("a {}: {e}", K::KIND));
    api.create(&PostParams::default(), &obj).await.unwrap_or_else(|e| panic!("create the {} {name}: {e}", K::KIND));
    api
}

/// The experiment `name` once it has ended (a terminal phase), within `limit`.
pub async fn finished<K: Experiment>(api: &Api<K>, name: &str, limit: Duration) -> K {
    wait_for(&format!("{} {name} to finish", K::KIND), limit, || async {
        let obj = api.get(name).await.ok()?;
        obj.run_status()?.phase.filter(|p| p.is_terminal())?;
        Some(obj)
    })
    .await
}

/// The report of a finished `run`: its `status.reportRef` ConfigMap, owned by the run, with
/// every form; returns report.json. Also checks `chaoslab report <kind>/<name>` reads the same.
pub async fn stored_report<K: Experiment + kube::ResourceExt>(client: &Client, run: &K) -> serde_json::Value {
    let ns = run.namespace().expect("namespaced");
    let name = run.name_any();
    let reference = run.run_status().and_then(|s| s.report_ref.clone()).expect("status.reportRef once finished");
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = config_maps.get(&reference.name).await.expect("the report ConfigMap");
    let uid = run.uid().expect("a uid");
    assert!(cm.metadata.owner_references.unwrap_or_default().iter().any(|o| o.uid == uid), "owned by the run");
    let data = cm.data.unwrap_or_default();
    for key in ["report.json", "report.md"] {
        assert!(data.contains_key(key), "{key} in {:?}", data.keys());
    }
    let report: serde_json::Value = serde_json::from_str(&data["report.json"]).expect("report.json");
    assert_eq!(report["schema"], "chaoslab.dev/report/v1");
    assert_eq!(report["kind"], K::KIND);
    assert_eq!(report["name"], name.as_str());
    // The CLI reads it back by kind and name, as a person would.
    let out = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
        .args(["report", &format!("{}/{name}", K::KIND.to_lowercase()), "-n", &ns, "-o", "json"])
        .output()
        .expect("chaoslab report runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(read, report, "chaoslab report prints the stored report");
    report
}
