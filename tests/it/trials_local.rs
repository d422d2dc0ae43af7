//! Judged runs in the local environment: the conductor of `trial::drive` with `LocalWorld`,
//! against `chaoslab demo` processes and a `chaoslab proxy` in front of inventory, all on
//! loopback, each Service its pods behind a balancer (`chaoslab lab`'s topology). The breaker is
//! judged from outside (with it on, the trial passes; off, it fails on the breaker's own
//! expectations), an abort rule reverts the fault at once, what cannot be done here is refused
//! before anything is done, and the curriculum's Drill and CircuitBreakerTrial files end with the
//! verdict they state, the pod kills of lessons 7, 8 and 14 included; lesson 13's AutoscalingCheck
//! runs with the frontend's local HPA scaling its pods.

use crate::support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chaoslab::{
    api::{
        AutoscalingCheck, CircuitBreakerTrial, Drill, Verdict,
        figures::PhaseName,
        trial::{AutoscalingCheckStatus, CircuitBreakerTrialSpec, DrillSpec},
    },
    demo::topology::CATALOG,
    local::{
        LocalTargets, LocalWorld,
        lab::{LabOptions, LabTopology},
        scaling::LocalScaling,
    },
    proxy::admin_client,
    trial::{
        autoscale::{ScalingOutcome, watch},
        drive::{Milestone, TrialOutcome, World as _, conduct},
        plan::{FaultAction, TrialPlan},
    },
};
use k8s_openapi::jiff::SignedDuration;
use support::{repo_path, yaml_documents};

/// The lab's topology as `chaoslab lab` runs it: inventory's 2 pods behind a proxy, catalog's 2
/// calling it through the proxy, the frontend calling catalog.
struct Lab {
    topology: LabTopology,
}

impl Lab {
    /// The topology with catalog's flags in place of the chart's.
    async fn start(catalog: &[&str]) -> Lab {
        let args = BTreeMap::from([("catalog".to_owned(), catalog.iter().map(|a| a.to_string()).collect())]);
        Lab::with(LabOptions { seed: 7, args, abrupt_shutdown: false }).await
    }

    async fn with(options: LabOptions) -> Lab {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_chaoslab"));
        let topology = LabTopology::start(exe, &options).await.unwrap_or_else(|e| panic!("the lab: {e}"));
        Lab { topology }
    }

    fn world(&self) -> LocalWorld {
        LocalWorld::new(self.topology.targets().clone()).expect("a local world")
    }

    fn logs(&self) -> String {
        self.topology.logs()
    }

    /// A JSON answer of the proxy's admin API (`/stats`, `/faults`).
    async fn proxy(&self, path: &str) -> serde_json::Value {
        let admin = &self.topology.targets().proxies["inventory"];
        let body = admin_client::request(admin, http::Method::GET, path, None).await.expect("the proxy answers");
        serde_json::from_slice(&body).expect("JSON")
    }
}

/// Runs `plan` to its outcome, keeping the milestones told on the way.
async fn run(plan: &TrialPlan, lab: &Lab) -> (TrialOutcome, Vec<Milestone>) {
    let mut world = lab.world();
    let mut told = Vec::new();
    let outcome = conduct(plan, &mut world, |m| told.push(m))
        .await
        .unwrap_or_else(|e| panic!("the run failed: {e}\n{}", lab.logs()));
    (outcome, told)
}

/// One line per expectation and phase, for the test's output and its failure messages.
fn describe(outcome: &TrialOutcome) -> String {
    let mut lines = vec![format!("{:?}: {}", outcome.verdict, outcome.message)];
    for e in &outcome.judgement.expectations {
        lines.push(format!(
            "  {} observed {} threshold {} -> {}",
            e.expression,
            e.observed.as_deref().unwrap_or("-"),
            e.threshold.as_deref().unwrap_or("-"),
            if e.passed { "pass" } else { "FAIL" }
        ));
    }
    for p in &outcome.judgement.phases {
        lines.push(format!("  phase {:?}: {:?}/s, errors {:?}, {:?}", p.name, p.throughput, p.error_rate, p.latency));
    }
    for f in &outcome.faults {
        lines.push(format!("  fault {}: observed {:?}: {}", f.name, f.observed, f.effect.as_deref().unwrap_or("-")));
    }
    lines.push(format!("  breaker: {:?}", outcome.breaker));
    lines.push(format!("  recovery: {:?}", outcome.judgement.recovery));
    lines.join("\n")
}

fn passed(outcome: &TrialOutcome, expression: &str) -> bool {
    outcome
        .judgement
        .expectations
        .iter()
        .find(|e| e.expression.starts_with(expression))
        .unwrap_or_else(|| panic!("no expectation {expression}:\n{}", describe(outcome)))
        .passed
}

const SHORT_TRIAL: &str = r#"
load: {target: {service: {name: catalog}}, model: open, rate: 20, timeout: 5s}
dependency:
  service: inventory
  faults: [{type: abort, percent: 100, abort: {status: 503}}]
phases: {warmup: 2s, baseline: 8s, inject: 15s, recover: 12s}
expect: {opensWithin: 5s, openP99Below: 300ms, dependencyCallReductionPercent: 80, closesWithin: 10s}
expectations: ['errorRate <= baseline + 1%']
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_is_judged_from_outside_pass_with_it_fail_without_it() {
    let _group = crate::support::group("trials_local");
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    let spec: CircuitBreakerTrialSpec = serde_saphyr::from_str(SHORT_TRIAL).expect("a trial spec");
    let plan = TrialPlan::circuit_breaker(&spec).expect("a plan");

    let with = Lab::start(CATALOG).await;
    let started = Instant::now();
    let (outcome, told) = run(&plan, &with).await;
    eprintln!("breaker on ({:.0}s):\n{}", started.elapsed().as_secs_f64(), describe(&outcome));
    assert_eq!(outcome.verdict, Verdict::Pass, "{}\n{}", describe(&outcome), with.logs());
    let figures = outcome.breaker.clone().expect("breaker figures");
    let baseline = figures.dependency_calls_baseline.expect("calls in the baseline");
    // 20 requests per second, each one call to inventory (no retry while it answers).
    assert!((16.0..=24.0).contains(&baseline), "{baseline} calls/s in the baseline");
    assert!(figures.dependency_calls_open.is_some_and(|open| open <= baseline * 0.2), "{figures:?}");
    assert!(figures.opens_after.is_some() && figures.closes_after.is_some(), "{figures:?}");
    // The faults were put in and taken out once, in the plan's order.
    let order: Vec<&str> = told
        .iter()
        .map(|m| match m {
            Milestone::LoadStarted { .. } => "load",
            Milestone::Injected { .. } => "inject",
            Milestone::Reverted { .. } => "revert",
            Milestone::Aborted { .. } => "abort",
            Milestone::LoadStopped { .. } => "stop",
        })
        .collect();
    assert_eq!(order, ["load", "inject", "revert", "stop"]);
    let window = &outcome.faults[0];
    let injected_after = window.started_at.as_ref().expect("injected").0.duration_since(outcome.started_at);
    // Injected on the inject phase's first second (10 s after the load's start), within a tick.
    assert!((injected_after.as_secs_f64() - 10.0).abs() < 0.5, "injected {injected_after:?} after the start");
    drop(with);

    // The same trial with the breaker off: calls keep coming (with a retry each), so the trial
    // fails on the breaker's expectations; the fallback still hides the errors.
    let catalog: Vec<&str> =
        CATALOG.iter().map(|a| if *a == "--circuit-breaker=true" { "--circuit-breaker=false" } else { a }).collect();
    let without = Lab::start(&catalog).await;
    let (outcome, _) = run(&plan, &without).await;
    eprintln!("breaker off:\n{}", describe(&outcome));
    assert_eq!(outcome.verdict, Verdict::Fail, "{}", describe(&outcome));
    assert!(!passed(&outcome, "opensWithin"), "{}", describe(&outcome));
    assert!(!passed(&outcome, "dependencyCallReduction"), "{}", describe(&outcome));
    assert!(!passed(&outcome, "closesWithin"), "what never opened never closes: {}", describe(&outcome));
    assert!(passed(&outcome, "errorRate"), "the fallback hides the errors: {}", describe(&outcome));
    assert!(outcome.message.contains("opensWithin"), "the message names what failed: {}", outcome.message);
    let figures = outcome.breaker.expect("breaker figures");
    assert!(figures.opens_after.is_none(), "{figures:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_rule_reverts_the_fault_at_once_and_names_what_fired_it() {
    let _group = crate::support::group("trials_local");
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    // No breaker and no fallback: every request fails while inventory is down.
    let lab = Lab::start(&["--latency", "10ms", "--timeout", "500ms", "--circuit-breaker=false"]).await;
    let spec: DrillSpec = serde_saphyr::from_str(
        r#"
load: {target: {service: {name: catalog}}, model: open, rate: 20, timeout: 5s}
phases: {baseline: 5s, inject: 20s, recover: 5s}
faults:
  - name: inventory-down
    startAfter: 0s
    duration: 20s
    serviceFault: {service: inventory, faults: [{type: abort, percent: 100, abort: {status: 503}}]}
expectations: ['errorRate < 1%']
abortWhen: [{when: 'errorRate > 20%', for: 2s}]
"#,
    )
    .expect("a drill spec");
    let plan = TrialPlan::drill(&spec).expect("a plan");
    let started = Instant::now();
    let (outcome, _) = run(&plan, &lab).await;
    let took = started.elapsed();
    eprintln!("abort ({:.1}s):\n{}", took.as_secs_f64(), describe(&outcome));
    assert_eq!(outcome.verdict, Verdict::Aborted, "{}", describe(&outcome));
    let record = outcome.judgement.aborted_by.clone().expect("the rule that fired");
    assert_eq!(record.rule, "errorRate > 20%");
    assert_eq!(record.observed.len(), 2, "one value per second of `for`: {record:?}");
    assert!(outcome.message.contains("errorRate > 20%"), "{}", outcome.message);
    let reverted = outcome.faults[0].reverted_at.as_ref().expect("reverted").0;
    let gap = reverted.duration_since(record.at.0);
    eprintln!("fired at {} reverted at {reverted}: {gap:?} later", record.at.0);
    // A signed duration: a revert recorded before the rule fired would be negative.
    assert!(!gap.is_negative() && gap < SignedDuration::from_secs(1), "reverted {gap:?} after the rule fired");
    // Two bad seconds, sealed a moment after they end: stopped long before the plan's 30 s.
    assert!(took < Duration::from_secs(15), "{took:?}");
    let faults = lab.proxy("/faults").await;
    assert!(faults["faults"].as_array().is_none_or(Vec::is_empty), "the proxy is a pass-through again: {faults}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_local_environment_cannot_do_is_refused_before_anything_is_done() {
    let _group = crate::support::group("trials_local");
    let lab = Lab::start(CATALOG).await;
    let kill: DrillSpec = serde_saphyr::from_str(
        r#"
load: {target: {service: {name: catalog}}, rate: 10}
phases: {inject: 5s}
faults:
  - {name: kill-one, podKill: {selector: {matchLabels: {app: catalog}}}}
"#,
    )
    .expect("a drill spec");
    // Services known only by their addresses have no pods to kill.
    let targets = LocalTargets { pods: Default::default(), ..lab.topology.targets().clone() };
    let mut world = LocalWorld::new(targets).expect("a local world");
    let error = conduct(&TrialPlan::drill(&kill).expect("plan"), &mut world, |_| {}).await.expect_err("refused");
    assert!(error.0.contains("kill-one") && error.0.contains("no pods run here"), "{error}");
    // A selector the API server would refuse is named before anything is done.
    let bad: DrillSpec = serde_saphyr::from_str(
        r#"
load: {target: {service: {name: catalog}}, rate: 10}
phases: {inject: 5s}
faults:
  - {name: kill-odd, podKill: {selector: {matchExpressions: [{key: app, operator: Within, values: [catalog]}]}}}
"#,
    )
    .expect("a drill spec");
    let mut world = lab.world();
    let error = conduct(&TrialPlan::drill(&bad).expect("plan"), &mut world, |_| {}).await.expect_err("refused");
    assert!(error.0.contains("kill-odd") && error.0.contains("podKill.selector"), "{error}");

    let unknown: DrillSpec = serde_saphyr::from_str(
        r#"
load: {target: {service: {name: checkout}}, rate: 10}
phases: {inject: 5s}
faults:
  - {name: slow, startAfter: 0s, duration: 5s, serviceFault: {service: inventory, faults: [{type: latency, latency: {delay: 1s}}]}}
"#,
    )
    .expect("a drill spec");
    let error = conduct(&TrialPlan::drill(&unknown).expect("plan"), &mut world, |_| {}).await.expect_err("refused");
    assert!(error.0.contains("\"checkout\"") && error.0.contains("catalog, frontend, inventory"), "{error}");
    // Nothing reached the proxy or catalog.
    let stats = lab.proxy("/stats").await;
    assert_eq!(stats["requests"], 0, "{stats}");
}

/// A curriculum lesson: its one resource, its `# expect:` verdict, and the set-up its header asks
/// for on loopback (`# On loopback: chaoslab lab FILE --service-args 'catalog=[...]'
/// --graceful-shutdown=false`), if any.
struct Lesson {
    doc: serde_json::Value,
    expect: Verdict,
    catalog: Option<Vec<String>>,
    /// `--set demo.gracefulShutdown=false` in its header.
    abrupt_shutdown: bool,
}

fn lesson(file: &str) -> Lesson {
    let path = repo_path(&format!("examples/drills/{file}"));
    let text = std::fs::read_to_string(&path).expect("the lesson");
    let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).expect("an expect line");
    let expect = match expect.trim() {
        "Pass" => Verdict::Pass,
        "Fail" => Verdict::Fail,
        other => panic!("{file}: expect {other}"),
    };
    // The cluster's set-up (the helm line) and the laptop's (`chaoslab lab` with the same flags)
    // must say the same: the lab runs from the latter, checked against the former.
    let helm_args = text.lines().find_map(|l| l.split_once("demo.services.catalog.args=")).map(|(_, args)| {
        serde_json::from_str::<Vec<String>>(args.trim().trim_end_matches('\''))
            .unwrap_or_else(|e| panic!("{file}: the catalog args of its helm line are not a JSON list: {e}"))
    });
    let helm_abrupt = text.contains("--set demo.gracefulShutdown=false");
    let lab_line = text.lines().find_map(|l| l.strip_prefix("# On loopback: chaoslab lab "));
    let (mut catalog, mut abrupt_shutdown) = (None, false);
    if let Some(line) = lab_line {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&format!("examples/drills/{file}").as_str()), "{file}: {line}");
        for pair in words.windows(2) {
            if pair[0] == "--service-args" {
                let list = pair[1].trim_matches('\'').strip_prefix("catalog=").expect("catalog's args");
                catalog = Some(serde_json::from_str::<Vec<String>>(list).expect("a JSON list"));
            }
        }
        abrupt_shutdown = words.contains(&"--graceful-shutdown=false");
    }
    assert_eq!(catalog, helm_args, "{file}: the `# On loopback:` line and the helm line give catalog the same flags");
    assert_eq!(abrupt_shutdown, helm_abrupt, "{file}: both lines agree on the graceful shutdown");
    let mut docs = yaml_documents(&path);
    assert_eq!(docs.len(), 1, "{file}");
    Lesson { doc: docs.remove(0), expect, catalog, abrupt_shutdown }
}

/// Two labs at a time at most: each test runs a topology of its own, on two cores.
static TOPOLOGIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs a lesson on a lab of its own (catalog as its header says), checks it ends with the
/// verdict it states, and returns its outcome, its plan and the calls inventory received each
/// second.
async fn run_lesson(file: &str) -> (TrialOutcome, TrialPlan, Vec<Option<u64>>) {
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    let lesson = lesson(file);
    let plan = match lesson.doc["kind"].as_str() {
        Some("Drill") => {
            let drill: Drill = serde_json::from_value(lesson.doc).expect("a Drill");
            TrialPlan::drill(&drill.spec).expect("plan")
        }
        Some("CircuitBreakerTrial") => {
            let trial: CircuitBreakerTrial = serde_json::from_value(lesson.doc).expect("a CircuitBreakerTrial");
            TrialPlan::circuit_breaker(&trial.spec).expect("plan")
        }
        other => panic!("{file}: kind {other:?}"),
    };
    let args = lesson.catalog.into_iter().map(|args| ("catalog".to_owned(), args)).collect();
    let lab = Lab::with(LabOptions { seed: 7, args, abrupt_shutdown: lesson.abrupt_shutdown }).await;
    let started = Instant::now();
    let (outcome, _) = run(&plan, &lab).await;
    let mut world = lab.world();
    let calls = match plan.faults.iter().find(|f| matches!(f.action, FaultAction::Service(_))) {
        Some(fault) => world
            .dependency_calls(fault, outcome.started_at, plan.timeline.load_seconds())
            .await
            .expect("the proxy's counts"),
        None => Vec::new(),
    };
    eprintln!("{file} ({:.0}s):\n{}", started.elapsed().as_secs_f64(), describe(&outcome));
    assert_eq!(outcome.verdict, lesson.expect, "{file}: {}\n{}", describe(&outcome), lab.logs());
    (outcome, plan, calls)
}

/// The mean calls per second inventory received in a phase.
fn mean_calls(plan: &TrialPlan, calls: &[Option<u64>], phase: PhaseName) -> f64 {
    let window = plan.timeline.window(phase).expect("the phase");
    let seen: Vec<u64> = (window.start..window.end).filter_map(|s| calls.get(s as usize).copied().flatten()).collect();
    seen.iter().sum::<u64>() as f64 / seen.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_09_latency_without_a_timeout_fails_on_latency_and_errors() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("09-latency-without-timeout.yaml").await;
    assert!(!passed(&outcome, "p99 < 1s"), "{}", describe(&outcome));
    assert!(!passed(&outcome, "errorRate"), "the frontend's own timeout fails its requests: {}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_10_latency_with_a_timeout_passes() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("10-latency-with-timeout.yaml").await;
    assert!(outcome.judgement.expectations.iter().all(|e| e.passed), "{}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_11_a_retry_storm_fails_and_multiplies_the_calls_to_inventory() {
    let _group = crate::support::group("trials_local");
    let (outcome, plan, calls) = run_lesson("11-retry-storm.yaml").await;
    let baseline = mean_calls(&plan, &calls, PhaseName::Baseline);
    let inject = mean_calls(&plan, &calls, PhaseName::Inject);
    eprintln!("retry storm: inventory got {baseline:.1} calls/s in the baseline, {inject:.1} during the fault");
    // Three retries without a budget: up to 4 attempts per call while inventory is slow.
    assert!(inject >= 3.0 * baseline, "{inject:.1} vs {baseline:.1} calls/s: {}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_12_the_charts_catalog_breaker_passes_its_trial() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("12-circuit-breaker.yaml").await;
    let figures = outcome.breaker.expect("breaker figures");
    assert!(figures.opens_after.is_some() && figures.closes_after.is_some(), "{figures:?}");
}

/// The pod kill's evidence (which pod, its signal and exit, its replacement), after checking that
/// the kill had an effect.
fn kill_evidence(outcome: &TrialOutcome, fault: &str) -> String {
    let window = outcome.faults.iter().find(|f| f.name == fault).expect("the kill's window");
    let evidence = window.effect.clone().unwrap_or_default();
    assert_eq!(window.observed, Some(true), "{evidence}\n{}", describe(outcome));
    eprintln!("{fault}: {evidence}");
    evidence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_07_a_pod_killed_with_a_graceful_shutdown_costs_no_request() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("07-pod-kill-graceful.yaml").await;
    let evidence = kill_evidence(&outcome, "kill-one-catalog");
    // SIGTERM, served on for the shutdown delay, drained, exit 0; a third catalog pod took its place.
    assert!(evidence.contains("(SIGTERM, exited 0 after"), "{evidence}");
    assert!(evidence.contains("replaced by catalog-3, Ready after"), "{evidence}");
    assert!(passed(&outcome, "errorRate"), "{}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_08_a_pod_killed_without_a_graceful_shutdown_fails_on_errors() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("08-pod-kill-ungraceful.yaml").await;
    let evidence = kill_evidence(&outcome, "kill-one-catalog");
    // It exits the moment it gets SIGTERM, as a process killed by it.
    assert!(evidence.contains("(SIGTERM, exited 143 after"), "{evidence}");
    assert!(!passed(&outcome, "errorRate"), "the requests it had in flight are lost: {}", describe(&outcome));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_14_the_game_day_passes_with_both_faults_observed() {
    let _group = crate::support::group("trials_local");
    let (outcome, _, _) = run_lesson("14-game-day.yaml").await;
    kill_evidence(&outcome, "kill-one-catalog");
    let slow = outcome.faults.iter().find(|f| f.name == "slow-inventory").expect("the slow inventory");
    assert_eq!(slow.observed, Some(true), "{slow:?}");
    assert!(outcome.judgement.aborted_by.is_none(), "{}", describe(&outcome));
    let recovery = outcome.judgement.recovery.as_ref().expect("recovery figures");
    eprintln!("game day recovery: {recovery:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_respect_the_budget_and_a_zero_grace_period_is_sigkill() {
    let _group = crate::support::group("trials_local");
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    let lab = Lab::start(CATALOG).await;
    // Both catalog pods in one round: the first eviction leaves its replacement starting, so the
    // budget of one unavailable pod refuses the second. inventory's pods get no grace period.
    let spec: DrillSpec = serde_saphyr::from_str(
        r#"
load: {target: {service: {name: catalog}}, model: open, rate: 10, timeout: 5s}
phases: {baseline: 2s, inject: 4s}
faults:
  - {name: evict-all, startAfter: 1s, podKill: {selector: {matchLabels: {app: catalog}}, mode: all, method: evict}}
  - {name: crash-one, startAfter: 1s, podKill: {selector: {matchLabels: {app: inventory}}, gracePeriod: 0s}}
expectations: ['p99 < 5s']
"#,
    )
    .expect("a drill spec");
    let (outcome, _) = run(&TrialPlan::drill(&spec).expect("a plan"), &lab).await;
    eprintln!("{}", describe(&outcome));
    let evictions = kill_evidence(&outcome, "evict-all");
    assert!(evictions.starts_with("1 pod(s) killed"), "{evictions}");
    assert!(
        evictions.contains("not killed: evicting") && evictions.contains("catalog-3 is not Ready yet"),
        "{evictions}"
    );
    let crash = kill_evidence(&outcome, "crash-one");
    assert!(crash.contains("(SIGKILL, exited 137 after"), "{crash}");
    assert!(crash.contains("replaced by inventory-3, Ready after"), "{crash}");
}

/// Runs an AutoscalingCheck on a lab of its own, the frontend's local HPA scaling its pods.
async fn check_scaling(check: &AutoscalingCheck) -> (ScalingOutcome, AutoscalingCheckStatus) {
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    let lab = Lab::with(LabOptions { seed: 7, ..LabOptions::default() }).await;
    let started = Instant::now();
    let tell = Box::new(move |st: &AutoscalingCheckStatus| {
        eprintln!("{:>5.0}s {}", started.elapsed().as_secs_f64(), st.run.message.as_deref().unwrap_or_default());
    });
    let (mut world, target) = LocalScaling::new(lab.topology.targets(), &check.spec, tell).expect("the target");
    let mut st = AutoscalingCheckStatus::default();
    let outcome = watch(&check.spec, &target, &mut world, &mut st).await.expect("the check runs");
    let results: Vec<String> = st
        .judgement
        .expectations
        .iter()
        .map(|e| format!("{} {:?} {}", if e.passed { "pass" } else { "FAIL" }, e.observed, e.expression))
        .collect();
    eprintln!(
        "{} ({:.0}s): {:?} {}\n{}\ntimeline (desired/ready): {:?}\npeak {:?}, first scale-up {:?}, peak at {:?}, scale-down {:?}, flaps {:?}",
        check.metadata.name.as_deref().unwrap_or_default(),
        started.elapsed().as_secs_f64(),
        outcome.verdict,
        outcome.message,
        results.join("\n"),
        st.timeline.iter().map(|s| (s.desired, s.ready)).collect::<Vec<_>>(),
        st.peak_replicas,
        st.time_to_first_scale_up,
        st.time_to_peak,
        st.time_to_scale_down,
        st.flaps,
    );
    (outcome, st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_13_the_frontends_hpa_scales_up_under_load_and_down_after_its_window() {
    let _group = crate::support::group("trials_local");
    let lesson = lesson("13-autoscaling.yaml");
    let check: AutoscalingCheck = serde_json::from_value(lesson.doc).expect("an AutoscalingCheck");
    let (outcome, st) = check_scaling(&check).await;
    assert_eq!(outcome.verdict, lesson.expect, "{}: {:?}", outcome.message, st.judgement.expectations);
    // From the HPA's minimum, up to at least 3 pods under load, and back to 1 after it.
    let desired: Vec<i32> = st.timeline.iter().map(|s| s.desired).collect();
    assert_eq!(desired.first(), Some(&1), "{desired:?}");
    assert!(desired.iter().any(|d| *d >= 3), "{desired:?}");
    assert_eq!(desired.last(), Some(&1), "{desired:?}");
    assert!(st.peak_replicas.is_some_and(|p| (3..=4).contains(&p)), "{:?}", st.peak_replicas);
    // Not before the HPA's 5-minute scale-down stabilization window has passed.
    let down = st.time_to_scale_down.as_deref().expect("scaled down");
    let down = down.parse::<chaoslab::api::GoDuration>().expect("a duration").as_std();
    assert!(down >= Duration::from_secs(285), "scaled down {down:?} after the load: before the window");
    assert!(outcome.seconds.iter().flatten().count() >= 200, "the load's seconds are kept for the report");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaling_check_whose_load_never_moves_the_hpa_fails_naming_what_it_never_did() {
    let _group = crate::support::group("trials_local");
    let check: AutoscalingCheck = serde_saphyr::from_str(
        "apiVersion: chaoslab.dev/v1alpha1\nkind: AutoscalingCheck\nmetadata: {name: too-little-load}\nspec:\n  target: {deployment: frontend}\n  load: {target: {service: {name: frontend, port: http}}, rate: 3, duration: 35s}\n  expect: {scaleUpWithin: 30s, minPeakReplicas: 2, slo: ['p99 < 500ms']}\n",
    )
    .expect("an AutoscalingCheck");
    let (outcome, st) = check_scaling(&check).await;
    assert_eq!(outcome.verdict, Verdict::Fail, "{}", outcome.message);
    let failed: Vec<&str> =
        st.judgement.expectations.iter().filter(|e| !e.passed).map(|e| e.expression.as_str()).collect();
    assert_eq!(failed, ["scaleUpWithin 30.0s", "minPeakReplicas 2"], "{:?}", st.judgement.expectations);
    let peak = st.judgement.expectations.iter().find(|e| e.expression.starts_with("minPeak")).expect("the peak");
    assert_eq!(peak.observed.as_deref(), Some("1"), "the one replica it kept is its peak");
    assert_eq!(st.timeline.iter().map(|s| s.desired).max(), Some(1), "{:?}", st.timeline);
    let slo = st.judgement.expectations.iter().find(|e| e.expression.contains("p99")).expect("the SLO");
    assert!(slo.passed, "3 requests a second are served well: {slo:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_labs_replicaset_scales_up_and_down_as_the_hpa_asks() {
    let _group = crate::support::group("trials_local");
    let _turn = TOPOLOGIES.acquire().await.expect("the semaphore is never closed");
    let lab = Lab::with(LabOptions::default()).await;
    let frontend = lab.topology.targets().pods.set("frontend").expect("the frontend's pods");
    assert_eq!(frontend.counts(), (1, 1));
    frontend.scale(3);
    let (pods, starting) = frontend.processes();
    assert_eq!((frontend.counts().0, pods.len() + starting), (3, 3), "asked for at once, Ready later");
    let deadline = Instant::now() + Duration::from_secs(30);
    while frontend.counts() != (3, 3) {
        assert!(Instant::now() < deadline, "3 Ready frontends within 30s: {:?}\n{}", frontend.counts(), lab.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Down: the newest pods leave at once (they drain on their own), the oldest stays.
    frontend.scale(1);
    let (pods, starting) = frontend.processes();
    assert_eq!((frontend.counts(), starting), ((1, 1), 0));
    assert_eq!(pods.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["frontend-1"]);
    // Down while new pods are still starting: the Ready one is kept, never fewer Ready than
    // asked for; the next call (the HPA calls every period) deletes the extra ones once Ready.
    frontend.scale(3);
    frontend.scale(1);
    let (pods, starting) = frontend.processes();
    assert_eq!((pods.len(), starting), (1, 2), "frontend-1 kept while two start");
    let deadline = Instant::now() + Duration::from_secs(30);
    while frontend.processes().1 > 0 {
        assert!(Instant::now() < deadline, "the two start within 30s:\n{}", lab.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(frontend.counts(), (1, 3), "asked for 1, 3 Ready until reconciled");
    frontend.scale(1);
    assert_eq!(frontend.counts(), (1, 1));
    assert_eq!(frontend.processes().0.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["frontend-1"]);
    let url = &lab.topology.targets().services["frontend"];
    for _ in 0..5 {
        let body = admin_client::request(url.trim_start_matches("http://"), http::Method::GET, "/", None).await;
        assert!(body.is_ok(), "the one left answers: {body:?}");
    }
}
