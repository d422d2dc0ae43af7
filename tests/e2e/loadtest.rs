//! LoadTest on the local cluster: the operator creates the runner Job as specified; runner
//! processes started here (kwok's pods execute nothing) take the Job's own configuration, wait
//! for the start the operator sets, load a real loopback server and report through their
//! ConfigMaps; the operator merges the reports into status.

use std::{sync::atomic::Ordering, time::Duration};

use chaoslab::{
    api::{LoadTest, Phase, Verdict},
    load::protocol::{REPORT_KEY, RUN_LABEL, RunnerReport},
};
use k8s_openapi::{
    api::{batch::v1::Job, core::v1::ConfigMap},
    jiff::Timestamp,
};
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::json;

use crate::harness::{
    Operator, Runner, create, finished, lab, runner_job, server, server_with_status, token_kubeconfig, wait_for,
};

#[tokio::test]
async fn runners_report_and_the_operator_merges_a_load_test() {
    let ns = "e2e-load";
    let client = lab(ns, true, "web", 1).await;
    let (url, answered) = server(Duration::from_millis(2)).await;
    let _operator = Operator::start("load", &[ns]);
    let api = create::<LoadTest>(
        &client,
        ns,
        "steady",
        json!({
            "load": {"target": {"url": url}, "rate": 200, "duration": "6s", "runners": {"parallelism": 2}},
            "thresholds": ["p99 < 500ms", "errorRate < 1%", "achievedRate >= 95%"],
        }),
    )
    .await;
    let uid = api.get("steady").await.expect("get").uid().expect("uid");
    let job = runner_job(&client, ns, &uid).await;
    let spec = job.spec.clone().expect("job spec");
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!((spec.parallelism, spec.completions), (Some(2), Some(2)));
    let owner = &job.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("LoadTest", uid.as_str()));
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("chaoslab-runner"));
    let sc = pod.containers[0].security_context.clone().expect("hardened");
    assert_eq!(sc.read_only_root_filesystem, Some(true));

    // kwok runs the Job's pods (Running, executing nothing); the operator then sets the start.
    let running = wait_for("the start time", Duration::from_secs(60), || async {
        let st = api.get("steady").await.ok()?.status?;
        st.load_starts_at.is_some().then_some(st)
    })
    .await;
    assert_eq!(running.run.phase, Some(Phase::Running));
    assert_eq!(running.stages.len(), 1, "the constant load is shown as one stage");

    let kubeconfig = token_kubeconfig(ns, "chaoslab-runner");
    let runners: Vec<Runner> = (0..2).map(|i| Runner::start(&job, i, &kubeconfig, "steady")).collect();
    for runner in runners {
        assert!(runner.exited(Duration::from_secs(60)).await.success(), "a runner exits 0 after its final report");
    }
    let lt = finished(&api, "steady", Duration::from_secs(60)).await;
    let st = lt.status.clone().expect("status");
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?} {:?}", st.run.message, st.thresholds);
    assert_eq!(st.run.phase, Some(Phase::Succeeded));
    let requests = st.requests.clone().expect("requests");
    // 200/s for 6 s over two runners: the schedule's count, to a request either way.
    assert!((1199..=1201).contains(&requests.total), "{requests:?}");
    assert_eq!(requests.ok, requests.total);
    assert_eq!(answered.load(Ordering::Relaxed), requests.total, "every request counted reached the server");
    let achieved = st.achieved_rate.expect("rate");
    assert!((195.0..=205.0).contains(&achieved), "{achieved}");
    let latency = st.latency.expect("latency");
    assert!(latency.p50_ms >= 2.0 && latency.p99_ms < 500.0, "{latency:?}");
    assert_eq!(st.thresholds.len(), 3);
    assert_eq!(st.runners.len(), 2);
    for r in &st.runners {
        assert_eq!(r.state, "Done", "{r:?}");
        let sent = r.sent.expect("sent");
        assert!((599..=601).contains(&sent), "each runner takes half: {r:?}");
    }

    // The run's report: owned by the LoadTest, the thresholds as its expectations, the figures
    // of status, and every second of the load from the runners' merged points.
    let report = crate::harness::stored_report(&client, &lt).await;
    assert_eq!(report["verdict"], "Pass");
    assert_eq!(report["expectations"].as_array().map(Vec::len), Some(3));
    assert_eq!(report["loadTest"]["requests"]["total"], requests.total);
    assert_eq!(report["loadTest"]["runners"].as_array().map(Vec::len), Some(2));
    let seconds = report["seconds"].as_array().expect("seconds");
    assert_eq!(seconds.len(), 6, "one point per second of the load: {seconds:?}");
    let counted: u64 = seconds.iter().filter_map(|s| s["requests"].as_u64()).sum();
    assert_eq!(counted, requests.total, "the seconds hold every request");
    assert_eq!(report["stages"][0]["toSecond"], 6.0, "the constant load is one stage on the axis");
    eprintln!("LoadTest report: seconds {seconds:?}, figures {}", report["loadTest"]);

    // The reports are the runners' ConfigMaps, owned by the LoadTest, far below the size limit.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let reports = maps.list(&ListParams::default().labels(&format!("{RUN_LABEL}={uid}"))).await.expect("list");
    assert_eq!(reports.items.len(), 2);
    for cm in &reports.items {
        let bytes = &cm.binary_data.as_ref().expect("binaryData")[REPORT_KEY].0;
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        let report = RunnerReport::decode(bytes).expect("a readable report");
        assert_eq!(report.points.len(), 6, "one point per second");
        assert!(cm.owner_references().iter().any(|o| o.uid == uid));
    }
}

#[tokio::test]
async fn a_restarted_runner_resumes_and_the_run_still_ends() {
    let ns = "e2e-load-restart";
    let client = lab(ns, true, "web", 1).await;
    let (url, _) = server(Duration::from_millis(1)).await;
    let _operator = Operator::start("load-restart", &[ns]);
    let api = create::<LoadTest>(
        &client,
        ns,
        "bumpy",
        json!({"load": {"target": {"url": url}, "rate": 100, "duration": "20s"}, "thresholds": ["errorRate < 1%"]}),
    )
    .await;
    let uid = api.get("bumpy").await.expect("get").uid().expect("uid");
    let job = runner_job(&client, ns, &uid).await;
    let kubeconfig = token_kubeconfig(ns, "chaoslab-runner");
    let mut first = Runner::start(&job, 0, &kubeconfig, "bumpy");
    // Crash the runner (SIGKILL) once it has written a report mid-run, then start it again. The
    // plan is 20 s so the restart lands mid-run (reports are written every 5 s; the kill came
    // after 3–9 sealed seconds here).
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let stored = || async {
        let list = maps.list(&ListParams::default().labels(&format!("{RUN_LABEL}={uid}"))).await.ok()?;
        let cm = list.items.into_iter().next()?;
        RunnerReport::decode(&cm.binary_data?.get(REPORT_KEY)?.0).ok()
    };
    wait_for("a first report", Duration::from_secs(60), || async { stored().await.filter(|r| r.sealed >= 3) }).await;
    first.kill();
    // What the dead runner last wrote is all that is left of it: the gap starts where it ends.
    let killed = stored().await.expect("the killed runner's report");
    let starts_at = api.get("bumpy").await.expect("get").status.and_then(|s| s.load_starts_at).expect("the start").0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = Timestamp::now().duration_since(starts_at).as_secs_f64();
    let second = Runner::start(&job, 0, &kubeconfig, "bumpy");
    assert!(second.exited(Duration::from_secs(60)).await.success());
    let st = finished(&api, "bumpy", Duration::from_secs(60)).await.status.expect("status");
    assert_eq!(st.run.verdict, Some(Verdict::Pass), "{:?}", st.run.message);
    let runner = &st.runners[0];
    assert_eq!((runner.state.as_str(), runner.attempts), ("Done", Some(2)), "{runner:?}");

    // The gap: from the last second the first attempt sealed to the second after the one the
    // second attempt started in (its process start and two API reads take well under 2 s).
    let last = stored().await.expect("the final report");
    assert_eq!((last.attempt, last.sealed), (2, 20), "{:?}", last.gaps);
    assert_eq!(last.gaps.len(), 1, "one gap, the restart's: {:?}", last.gaps);
    let (from, to) = last.gaps[0];
    eprintln!(
        "restart: first attempt sealed {}s, second started {behind:.2}s after the load's start, gap {from}s–{to}s",
        killed.sealed
    );
    assert_eq!(from, killed.sealed, "the gap starts where the first attempt's report ended");
    let now = behind.floor() as u64;
    assert!((now + 1..=now + 3).contains(&to), "resumed at second {to}, started {behind:.2}s into the load");
    assert!(from < to && to < 20, "the gap {from}s–{to}s is inside the 20 s plan");
    // Named where a person reads: the runner's record and the run's message.
    let gap = format!("{from}s–{to}s");
    assert!(runner.message.as_deref().is_some_and(|m| m.ends_with(&format!("restarting): {gap}"))), "{runner:?}");
    let message = st.run.message.clone().unwrap_or_default();
    assert!(message.contains(&format!("(not measured while restarting: runner 0 {gap})")), "{message}");

    // Seconds lost to the crash are missing, never counted twice: 100 for each measured second.
    let measured = from + (20 - to);
    let total = st.requests.expect("requests").total;
    assert!(total.abs_diff(100 * measured) <= 2, "{total} requests for {measured} measured seconds");
    assert_eq!(last.total.counts.total, total, "status counts what the runner's report holds");
    let inside: Vec<u64> = last.points.iter().map(|p| p.second()).filter(|s| (from..to).contains(s)).collect();
    assert!(inside.is_empty(), "no point inside the gap: {inside:?}");
}

/// Seconds from the load's start to the end of a run stopped by its abort rule (measured: see
/// docs/testing.md).
const ABORT_WITHIN: f64 = 15.0;

#[tokio::test]
async fn an_abort_rule_stops_the_run_and_says_why() {
    let ns = "e2e-load-abort";
    let client = lab(ns, true, "web", 1).await;
    let (url, _) = server_with_status(Duration::from_millis(1), 503).await;
    let _operator = Operator::start("load-abort", &[ns]);
    let api = create::<LoadTest>(
        &client,
        ns,
        "failing",
        json!({
            "load": {"target": {"url": url}, "rate": 50, "duration": "5m"},
            "abortWhen": [{"when": "errorRate > 50%", "for": "2s"}],
        }),
    )
    .await;
    let uid = api.get("failing").await.expect("get").uid().expect("uid");
    let job = runner_job(&client, ns, &uid).await;
    let _runner = Runner::start(&job, 0, &token_kubeconfig(ns, "chaoslab-runner"), "failing");
    // A 5-minute plan ends within seconds: the rule fires after 2 failing seconds, which the
    // operator reads in the runner's report (written every 5 s; the operator polls every 2 s).
    let lt = finished(&api, "failing", Duration::from_secs(60)).await;
    let st = lt.status.expect("status");
    let starts_at = st.load_starts_at.as_ref().expect("the load's start").0;
    let ended = st.run.finished_at.as_ref().expect("finishedAt").0;
    let took = ended.duration_since(starts_at).as_secs_f64();
    eprintln!("the abort rule ended the run {took:.1}s after the load's start");
    assert!(took <= ABORT_WITHIN, "ended {took:.1}s after the load's start, more than {ABORT_WITHIN}s");
    assert_eq!((st.run.phase, st.run.verdict), (Some(Phase::Aborted), Some(Verdict::Aborted)), "{:?}", st.run.message);
    let record = st.aborted_by.expect("abortedBy");
    assert_eq!(record.rule, "errorRate > 50%");
    assert_eq!(record.observed, vec!["100%".to_owned(); 2]);
    assert!(st.run.message.unwrap_or_default().contains("errorRate > 50%"));
    let requests = st.requests.expect("requests");
    // No more than the seconds it ran: 50 a second, all answered 503.
    assert!(requests.total > 0 && requests.status5xx == requests.total, "{requests:?}");
    assert!(requests.total <= 50 * (took.ceil() as u64 + 1), "{requests:?} in {took:.1}s");
    // The runners were stopped: their Job is gone.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    wait_for("the runner Job to be deleted", Duration::from_secs(30), || async {
        jobs.get_opt(&job.name_any()).await.ok()?.is_none().then_some(())
    })
    .await;
}
