//! `chaoslab run` against the local cluster, as a CI job runs it: the binary starts the
//! experiments of a file, follows them to their verdicts, prints their reports, writes JUnit XML
//! and exits by the verdicts; Ctrl-C and `--timeout` abort the runs and their faults are reverted.

use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use chaoslab::api::{LoadTest, Phase, PodKill, ServiceFault, Verdict};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, ResourceExt};
use tokio::process::{Child, Command};

use crate::harness::{
    Operator, Runner, apply, env, finished, kubectl, lab, runner_job, server, token_kubeconfig, wait_for,
};

/// `chaoslab run ARGS` as a child process, its output captured.
fn chaoslab_run(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_chaoslab"))
        .arg("run")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chaoslab run")
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn ran(child: Child, limit: Duration) -> Ran {
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("chaoslab run did not end within {limit:?}"))
        .expect("chaoslab run's output");
    Ran {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn file(name: &str, yaml: &str) -> PathBuf {
    let path = PathBuf::from(env("CHAOSLAB_CLUSTER_DIR")).join(name);
    std::fs::write(&path, yaml).expect("write the experiment file");
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

const KILL_ONE: &str = r#"apiVersion: chaoslab.dev/v1alpha1
kind: PodKill
metadata: {name: kill-one}
spec: {selector: {matchLabels: {app: web}}, mode: fixed, value: 1, recoveryDeadline: 60s}
"#;

#[tokio::test]
async fn chaoslab_run_gates_on_the_verdicts_with_reports_and_junit() {
    let ns = "e2e-run";
    let client = lab(ns, true, "web", 2).await;
    let operator = Operator::start("run", &[ns]);
    let (url, _) = server(Duration::from_millis(30)).await;
    // A PodKill that passes and a LoadTest whose threshold cannot hold (every answer takes 30 ms).
    let gate = file(
        "gate.yaml",
        &format!(
            "{KILL_ONE}---\napiVersion: chaoslab.dev/v1alpha1\nkind: LoadTest\nmetadata: {{name: slow-gate}}\nspec:\n  \
             load: {{target: {{url: \"{url}\"}}, rate: 20, duration: 6s}}\n  thresholds: [\"p99 < 5ms\", \"errorRate < 1%\"]\n"
        ),
    );
    let junit = PathBuf::from(env("CHAOSLAB_CLUSTER_DIR")).join("gate-junit.xml");
    let child = chaoslab_run(&["-f", arg(&gate), "-n", ns, "--wait", "--junit", arg(&junit), "-o", "json"]);
    // kwok's pods run nothing: the runner runs here, from the Job the operator made.
    let loads: Api<LoadTest> = Api::namespaced(client.clone(), ns);
    let uid =
        wait_for("the LoadTest", Duration::from_secs(30), || async { loads.get("slow-gate").await.ok()?.uid() }).await;
    let job = runner_job(&client, ns, &uid).await;
    let _runner = Runner::start(&job, 0, &token_kubeconfig(ns, "chaoslab-runner"), "slow-gate");
    let out = ran(child, Duration::from_secs(150)).await;
    let context = format!("stderr:\n{}\nstdout:\n{}\noperator:\n{}", out.stderr, out.stdout, operator.log());
    assert_eq!(out.status.code(), Some(1), "a Fail outranks a Pass\n{context}");
    assert!(out.stderr.contains("podkill/kill-one started in namespace e2e-run"), "{context}");
    assert!(out.stderr.contains("loadtest/slow-gate  Fail"), "a line as the run ends\n{context}");
    // The reports, as JSON: one per run, read from what the operator stored or from the status.
    let reports: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("a JSON array of reports");
    let verdict_of =
        |kind: &str| reports.iter().find(|r| r["kind"] == kind).map(|r| r["verdict"].clone()).unwrap_or_default();
    assert_eq!((verdict_of("PodKill"), verdict_of("LoadTest")), ("Pass".into(), "Fail".into()), "{context}");
    let pk: Api<PodKill> = Api::namespaced(client.clone(), ns);
    let kill = pk.get("kill-one").await.expect("the PodKill");
    assert_eq!(kill.status.and_then(|s| s.run.verdict), Some(Verdict::Pass));
    // JUnit: a suite per run; the threshold that broke is a failure with its figures.
    let xml = std::fs::read_to_string(&junit).expect("the JUnit file");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed JUnit XML");
    let suites: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testsuite")).collect();
    let names: Vec<_> = suites.iter().filter_map(|s| s.attribute("name")).collect();
    assert_eq!(names, ["PodKill e2e-run/kill-one", "LoadTest e2e-run/slow-gate"], "{xml}");
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no test case {name}\n{xml}"))
    };
    let broken = case("p99 < 5ms").children().find(|c| c.has_tag_name("failure")).expect("a failure");
    let message = broken.attribute("message").unwrap_or_default();
    assert!(message.starts_with("observed ") && message.ends_with("threshold 5ms"), "{message}");
    assert!(case("errorRate < 1%").children().all(|c| !c.is_element()), "the error rate held\n{xml}");
    assert_eq!(doc.root_element().attribute("failures"), Some("1"), "{xml}");

    // An experiment runs once: the same file again is refused, naming the way to run it again.
    let again = ran(chaoslab_run(&["-f", arg(&gate), "-n", ns, "--wait"]), Duration::from_secs(30)).await;
    assert_eq!(again.status.code(), Some(2), "{}", again.stderr);
    assert!(
        again.stderr.contains("PodKill e2e-run/kill-one exists already") && again.stderr.contains("--replace"),
        "{}",
        again.stderr
    );
    // --replace deletes it first; the PodKill alone passes: exit 0, the report as Markdown.
    let kill_only = file("kill-one.yaml", KILL_ONE);
    let replaced =
        ran(chaoslab_run(&["-f", arg(&kill_only), "-n", ns, "--wait", "--replace"]), Duration::from_secs(120)).await;
    assert_eq!(replaced.status.code(), Some(0), "{}\n{}", replaced.stderr, replaced.stdout);
    assert!(replaced.stdout.starts_with("# PodKill e2e-run/kill-one: Pass"), "{}", replaced.stdout);

    // Bad input: the API server's schema names the field and what is allowed; nothing is created.
    let bad = file("bad.yaml", &KILL_ONE.replace("kill-one", "kill-bad").replace("mode: fixed", "mode: sometimes"));
    let refused = ran(chaoslab_run(&["-f", arg(&bad), "-n", ns, "--wait"]), Duration::from_secs(30)).await;
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("the API server refused it") && refused.stderr.contains("spec.mode"),
        "{}",
        refused.stderr
    );
    assert!(pk.get_opt("kill-bad").await.expect("get").is_none());

    // `chaoslab lab --kube` starts the tour the same way; without the chart's demo app (its
    // namespace chaoslab-demo) it is refused with the command that installs it.
    // Another test's dry runs of the examples create that namespace: remove it first, and never
    // wait on a tour no operator here would run.
    kubectl(&["delete", "namespace", "chaoslab-demo", "--ignore-not-found", "--wait", "--timeout=120s"]);
    let lab = Command::new(env!("CARGO_BIN_EXE_chaoslab")).args(["lab", "--kube"]).kill_on_drop(true).output();
    let lab = tokio::time::timeout(Duration::from_secs(60), lab)
        .await
        .expect("chaoslab lab --kube ended within 60s")
        .expect("lab --kube");
    let stderr = String::from_utf8_lossy(&lab.stderr);
    assert_eq!(lab.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chaoslab-demo") && stderr.contains("--set demo.enabled=true"), "{stderr}");
    drop(operator);
}

#[tokio::test]
async fn an_interrupted_or_timed_out_run_is_aborted_and_its_fault_reverted() {
    let ns = "e2e-run-stop";
    let client = lab(ns, true, "web", 2).await;
    apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    ));
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let before = services.get("web").await.expect("the Service").spec.and_then(|s| s.selector);
    let operator = Operator::start("run-stop", &[ns]);
    let fault = file(
        "slow-web.yaml",
        "apiVersion: chaoslab.dev/v1alpha1\nkind: ServiceFault\nmetadata: {name: slow-web}\nspec:\n  service: web\n  \
         faults: [{type: latency, latency: {delay: 100ms}}]\n  duration: 5m\n",
    );
    let child = chaoslab_run(&["-f", arg(&fault), "-n", ns, "--wait", "--abort-on-interrupt"]);
    let faults: Api<ServiceFault> = Api::namespaced(client.clone(), ns);
    wait_for("the fault to be injected", Duration::from_secs(60), || async {
        faults.get("slow-web").await.ok()?.status?.injected_at
    })
    .await;
    let pid = child.id().expect("a pid").to_string();
    let sent = std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill -INT");
    assert!(sent.success());
    let out = ran(child, Duration::from_secs(120)).await;
    let context = format!("stderr:\n{}\nstdout:\n{}\noperator:\n{}", out.stderr, out.stdout, operator.log());
    assert_eq!(out.status.code(), Some(1), "Aborted\n{context}");
    assert!(out.stderr.contains("servicefault/slow-web: abort asked"), "{context}");
    assert!(out.stdout.starts_with("# ServiceFault e2e-run-stop/slow-web: Aborted"), "{context}");
    let sf = finished(&faults, "slow-web", Duration::from_secs(10)).await;
    assert_eq!(sf.status.as_ref().and_then(|s| s.run.phase), Some(Phase::Aborted));
    let after = services.get("web").await.expect("the Service").spec.and_then(|s| s.selector);
    assert_eq!(after, before, "the Service's selector is restored");

    // --timeout: a PodKill that would go on for two minutes is aborted after 5 s; exit 2.
    let long = file(
        "kill-long.yaml",
        "apiVersion: chaoslab.dev/v1alpha1\nkind: PodKill\nmetadata: {name: kill-long}\nspec: {selector: {matchLabels: {app: web}}, \
         mode: fixed, value: 1, interval: 10s, duration: 2m, recoveryDeadline: 60s}\n",
    );
    let out =
        ran(chaoslab_run(&["-f", arg(&long), "-n", ns, "--wait", "--timeout", "5s"]), Duration::from_secs(120)).await;
    assert_eq!(out.status.code(), Some(2), "{}\n{}", out.stderr, out.stdout);
    assert!(out.stderr.contains("timed out after 5s"), "{}", out.stderr);
    let kills: Api<PodKill> = Api::namespaced(client.clone(), ns);
    let pk = finished(&kills, "kill-long", Duration::from_secs(10)).await;
    assert_eq!(pk.status.and_then(|s| s.run.verdict), Some(Verdict::Aborted));
    drop(operator);
}
