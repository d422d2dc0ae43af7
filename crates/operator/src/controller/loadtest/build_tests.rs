use k8s_openapi::api::core::v1::Service;

use super::*;
use crate::{
    api::Verdict,
    load::{
        LoadRecorder,
        measure::{Bucket, Outcome},
        protocol::{ReportBuilder, RunnerState},
        stages::expand,
    },
};

fn load_test(yaml: &str) -> LoadTest {
    let mut lt: LoadTest = serde_saphyr::from_str(yaml).expect("LoadTest YAML");
    lt.metadata.uid = Some("4f0c1d2e-1111-2222-3333-444455556666".into());
    lt
}

const URL_TEST: &str = r#"
apiVersion: chaoslab.dev/v1alpha1
kind: LoadTest
metadata: {name: checkout, namespace: shop}
spec:
  load:
    target: {url: "http://127.0.0.1:8080/"}
    rate: 400
    duration: 30s
    runners:
      parallelism: 4
      resources: {limits: {cpu: "1", memory: 128Mi}}
  thresholds: ["p99 < 250ms", "errorRate < 1%"]
"#;

fn settings() -> RunnerSettings {
    RunnerSettings { image: "registry.example/chaoslab:9.9.9".into(), role: "chaoslab-runner".into() }
}

#[test]
fn the_runner_job_is_indexed_owned_hardened_and_carries_the_plan() {
    let lt = load_test(URL_TEST);
    let plan = expand(&lt.spec.load, None).expect("plan");
    let config = runner_config(&lt, &plan, "http://127.0.0.1:8080/");
    let job = runner_job(&lt, &config, &settings()).expect("job");
    let name = job.metadata.name.clone().expect("name");
    assert!(name.len() <= 56 && name.starts_with("checkout-4f0c1d2e"), "{name}");
    let owner = &job.metadata.owner_references.as_ref().expect("owners")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("LoadTest", "4f0c1d2e-1111-2222-3333-444455556666", Some(true))
    );
    let spec = job.spec.expect("spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.completions, spec.parallelism), (Some(4), Some(4)), "every runner starts together");
    assert!(spec.active_deadline_seconds.expect("deadline") >= 30, "bounded, and longer than the plan");
    let pod = spec.template.spec.expect("pod");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some(RUNNER_IDENTITY));
    let psc = pod.security_context.expect("pod security");
    assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/chaoslab:9.9.9"));
    assert_eq!(c.args.as_deref(), Some(&["runner".to_owned()][..]));
    let sc = c.security_context.clone().expect("container security");
    assert_eq!((sc.read_only_root_filesystem, sc.allow_privilege_escalation), (Some(true), Some(false)));
    let limits = c.resources.clone().and_then(|r| r.limits).expect("limits from the spec");
    assert_eq!(limits["memory"].0, "128Mi");
    let env = c.env.clone().expect("env");
    let json = env.iter().find(|e| e.name == "CHAOSLAB_RUNNER").and_then(|e| e.value.clone()).expect("config");
    let back: RunnerConfig = serde_json::from_str(&json).expect("config JSON");
    assert_eq!(back, config);
    assert_eq!((back.runners, back.stages.len()), (4, 1));
    let labels = spec.template.metadata.and_then(|m| m.labels).expect("pod labels");
    assert_eq!(labels[RUN_LABEL], "4f0c1d2e-1111-2222-3333-444455556666");
}

#[test]
fn a_service_target_resolves_to_its_cluster_name_and_port() {
    let lt = load_test(&URL_TEST.replace(
        r#"target: {url: "http://127.0.0.1:8080/"}"#,
        "target: {service: {name: web, port: http, path: /api/}}",
    ));
    let svc: Service = serde_saphyr::from_str(
        "metadata: {name: web, namespace: shop}\nspec: {ports: [{name: metrics, port: 9090}, {name: http, port: 8080}]}\n",
    )
    .expect("service");
    assert_eq!(target_url(&lt, Some(&svc)).expect("url"), "http://web.shop.svc:8080/api");
    let missing = target_url(&lt, None).expect_err("no Service");
    assert!(missing.contains("spec.load.target.service") && missing.contains("does not exist"), "{missing}");
    let wrong = load_test(
        &URL_TEST.replace(r#"target: {url: "http://127.0.0.1:8080/"}"#, "target: {service: {name: web, port: grpc}}"),
    );
    let err = target_url(&wrong, Some(&svc)).expect_err("no such port");
    assert!(err.contains("spec.load.target.service.port") && err.contains("http (8080)"), "{err}");
}

/// A report of one runner that sent `n` requests a second for `seconds`, each taking `ms`.
fn report(
    runner: u32,
    plan: &Plan,
    seconds: u64,
    n: u64,
    ms: u64,
    fail_every: u64,
) -> crate::load::protocol::RunnerReport {
    let mut builder = ReportBuilder::new(runner, plan).expect("builder");
    let mut recorder = LoadRecorder::new().expect("recorder");
    for s in 0..seconds {
        for i in 0..n {
            let at = Duration::from_secs(s) + Duration::from_micros(i * 1_000_000 / n);
            let outcome = if fail_every > 0 && i % fail_every == 0 { Outcome::Status5xx } else { Outcome::Ok };
            recorder.record(at, at, at + Duration::from_millis(ms), outcome);
        }
        for (second, bucket) in recorder.take_before(s + 1) {
            builder.fold(second, &bucket).expect("fold");
        }
    }
    builder.report(RunnerState::Done, None).expect("report")
}

#[test]
fn a_finished_run_is_judged_on_the_merged_reports() {
    let lt = load_test(&URL_TEST.replace("parallelism: 4", "parallelism: 2").replace("duration: 30s", "duration: 5s"));
    let plan = expand(&lt.spec.load, None).expect("plan");
    let reports = [report(0, &plan, 5, 200, 20, 0), report(1, &plan, 5, 200, 40, 0)];
    let merged = MergedRun::merge(&reports).expect("merge");
    let (st, verdict, message) = conclude(&lt, &plan, &merged, 5.0, Ending::Complete, &[]);
    assert_eq!(verdict, Verdict::Pass, "{message}");
    assert_eq!(st.requests.as_ref().map(|r| r.total), Some(2000));
    assert_eq!(st.achieved_rate, Some(400.0));
    assert_eq!(st.target_rate, Some(400.0));
    let p99 = st.latency.as_ref().expect("latency").p99_ms;
    assert!((39.0..=41.0).contains(&p99), "p99 is the slower runner's 40 ms: {p99}");
    assert!(st.thresholds.iter().all(|t| t.passed));

    // One runner's errors fail the error-rate threshold, and the message says which.
    let reports = [report(0, &plan, 5, 200, 20, 0), report(1, &plan, 5, 200, 20, 10)];
    let merged = MergedRun::merge(&reports).expect("merge");
    let (st, verdict, message) = conclude(&lt, &plan, &merged, 5.0, Ending::Complete, &[]);
    assert_eq!(verdict, Verdict::Fail);
    assert!(message.contains("errorRate < 1%"), "{message}");
    assert_eq!(st.error_rate, Some(0.05));
}

#[test]
fn nothing_sent_is_inconclusive_and_a_crashed_runner_is_an_error() {
    let lt = load_test(URL_TEST);
    let plan = expand(&lt.spec.load, None).expect("plan");
    let empty = MergedRun::merge(&[]).expect("merge");
    assert_eq!(conclude(&lt, &plan, &empty, 30.0, Ending::Complete, &[]).1, Verdict::Inconclusive);
    let crashed =
        RunnerRecord { index: 2, state: "Crashed".into(), message: Some("OOMKilled".into()), ..Default::default() };
    let (_, verdict, message) = conclude(&lt, &plan, &empty, 30.0, Ending::RunnerTrouble, &[crashed]);
    assert_eq!(verdict, Verdict::Error);
    assert!(message.contains("runner 2 crashed: OOMKilled"), "{message}");
}

#[test]
fn the_capacity_preset_reports_the_knee_and_the_break() {
    let lt = load_test(
        &URL_TEST
            .replace("duration: 30s", "preset: capacity")
            .replace(r#"["p99 < 250ms", "errorRate < 1%"]"#, r#"["errorRate < 1%"]"#),
    );
    let plan = expand(&lt.spec.load, None).expect("plan");
    let steps = plan.steps();
    assert!(steps.len() >= 3, "{steps:?}");
    // Errors appear from the third level on.
    let broken_from = steps[2].start.as_secs();
    let mut builder = ReportBuilder::new(0, &plan).expect("builder");
    for s in 0..plan.total_duration().as_secs() {
        let mut recorder = LoadRecorder::new().expect("recorder");
        for i in 0..100u64 {
            let at = Duration::from_secs(s) + Duration::from_millis(i * 10);
            let outcome = if s >= broken_from && i % 5 == 0 { Outcome::Status5xx } else { Outcome::Ok };
            recorder.record(at, at, at + Duration::from_millis(5), outcome);
        }
        let bucket: Bucket = recorder.take_before(s + 1).pop().expect("second").1;
        builder.fold(s, &bucket).expect("fold");
    }
    let merged = MergedRun::merge(&[builder.report(RunnerState::Done, None).expect("report")]).expect("merge");
    let (st, verdict, message) =
        conclude(&lt, &plan, &merged, plan.total_duration().as_secs_f64(), Ending::Complete, &[]);
    let capacity = st.capacity.expect("capacity");
    assert_eq!(capacity.knee, Some(steps[1].level), "{message}");
    assert_eq!(capacity.broke_at, Some(steps[2].level));
    // The nominal level (400) is above the break: the system cannot take its expected load.
    assert_eq!(verdict, Verdict::Fail, "{message}");
    assert!(message.contains("knee 80, broke at 120") && message.contains("nominal level 400"), "{message}");
    assert_eq!(st.steps[0].held, Some(true));
    assert_eq!(st.steps[2].held, Some(false));
}

#[test]
fn the_runner_identity_binds_the_runner_role_in_the_namespace() {
    let (sa, binding) = runner_identity("shop", &settings()).expect("identity");
    assert_eq!(sa.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "chaoslab-runner");
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (RUNNER_IDENTITY, Some("shop")));
}

#[test]
fn an_abort_rule_fires_on_the_merged_seconds_every_runner_sealed() {
    let lt = load_test(&URL_TEST.replace("parallelism: 4", "parallelism: 2").replace("duration: 30s", "duration: 10s"));
    let plan = expand(&lt.spec.load, None).expect("plan");
    let rules: Vec<crate::api::figures::AbortRule> =
        serde_saphyr::from_str("[{when: 'errorRate > 20%', for: 3s}]").expect("rules");
    // Runner 1 fails every second request; runner 0 is healthy: merged, 25 % errors a second.
    let (healthy, failing) = (report(0, &plan, 4, 100, 5, 0), report(1, &plan, 4, 100, 5, 2));
    let merged = MergedRun::merge([&healthy, &failing]).expect("merge");
    let now = k8s_openapi::jiff::Timestamp::now();
    let record = fired_abort_rule(&rules, &merged, &plan, true, now).expect("fires");
    assert_eq!(record.rule, "errorRate > 20%");
    assert_eq!(record.observed, vec!["25%"; 3]);
    // Only two seconds sealed by both runners: not yet.
    let merged = MergedRun::merge([&report(0, &plan, 2, 100, 5, 0), &failing]).expect("merge");
    assert!(fired_abort_rule(&rules, &merged, &plan, true, now).is_none());
}
