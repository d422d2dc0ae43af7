//! `chaoslab load` end to end: the built binary against a loopback HTTP server started here —
//! exit codes, the JSON document's figures against what the server saw, a capacity search that
//! finds a knee below the level where the server starts refusing, abortOnFail and Ctrl-C, and
//! LoadTest manifests run with `-f` (their target, their thresholds, their abort rules).

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::{Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How the server answers the `n`-th request (from 1) of the current wall-clock second.
type Behaviour = Arc<dyn Fn(u64) -> (u16, Duration) + Send + Sync>;

/// A loopback HTTP/1.1 server on its own thread and runtime, counting what it answered.
struct Server {
    url: String,
    hits: Arc<AtomicU64>,
}

fn serve(behaviour: impl Fn(u64) -> (u16, Duration) + Send + Sync + 'static) -> Server {
    let behaviour: Behaviour = Arc::new(behaviour);
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
            let start = Instant::now();
            let window = Arc::new(Mutex::new((0u64, 0u64)));
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (behaviour, hits, window) = (behaviour.clone(), counted.clone(), window.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let (behaviour, hits, window) = (behaviour.clone(), hits.clone(), window.clone());
                        async move {
                            hits.fetch_add(1, Ordering::Relaxed);
                            let n = {
                                let mut w = window.lock().expect("lock");
                                let second = start.elapsed().as_secs();
                                if w.0 != second {
                                    *w = (second, 0);
                                }
                                w.1 += 1;
                                w.1
                            };
                            let (status, delay) = behaviour(n);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let response = Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .expect("response");
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).expect("the test server starts");
    Server { url: format!("http://{addr}/"), hits }
}

fn chaoslab(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chaoslab"));
    command.arg("load").args(args).stdin(Stdio::null());
    command
}

fn run(args: &[&str]) -> Output {
    chaoslab(args).output().expect("run chaoslab")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))
}

/// No Pass without a success: against a port where nothing listens, with no thresholds, every
/// request fails to connect; the run is Inconclusive (exit 2) and says why.
#[test]
fn a_run_with_no_success_is_inconclusive() {
    let _group = crate::support::group("cli_load");
    // A port that was just free: bound, then released, so connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/");
    let output = run(&[&url, "--rate", "20", "--duration", "1s", "-o", "json"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["verdict"], "Inconclusive");
    let sent = doc["requests"]["total"].as_u64().expect("total");
    assert!(sent >= 15, "sent {sent} of 20");
    assert_eq!(doc["requests"]["connect"].as_u64(), Some(sent), "every request refused");
    let note = doc["note"].as_str().expect("a note says why");
    assert!(note.contains("no request succeeded") && note.contains(&format!("{sent} sent")), "{note}");
}

#[test]
fn a_passing_run_exits_0_with_figures_that_match_the_server() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (200, Duration::ZERO));
    let output = run(&[
        &server.url,
        "--rate",
        "100",
        "--duration",
        "3s",
        "--threshold",
        "p99 < 1s",
        "--threshold",
        "errorRate < 1%",
        "--threshold",
        "achievedRate >= 95%",
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["model"], "open");
    assert_eq!(doc["latencyFrom"], "intendedStart");
    assert_eq!(doc["verdict"], "Pass");
    assert_eq!(doc["run"]["ended"], "completed");
    let total = doc["requests"]["total"].as_u64().expect("total");
    // The open model schedules rate × duration requests, to within rounding.
    assert!((295..=301).contains(&total), "sent {total}, planned 300");
    assert_eq!(doc["requests"]["ok"].as_u64(), Some(total));
    assert_eq!(server.hits.load(Ordering::Relaxed), total, "every request sent reached the server once");
    assert!((f(&doc["achievedRate"]) - 100.0).abs() <= 2.0, "{}", doc["achievedRate"]);
    assert_eq!(f(&doc["targetRate"]), 100.0);
    assert_eq!(f(&doc["errorRate"]), 0.0);
    let latency = &doc["latency"];
    assert!(f(&latency["p50Ms"]) > 0.0 && f(&latency["p50Ms"]) <= f(&latency["p99Ms"]));
    assert!(f(&latency["p99Ms"]) <= f(&latency["maxMs"]));
    assert!(f(&doc["serviceTime"]["p50Ms"]) <= f(&latency["p50Ms"]) + 0.01, "service time is part of latency");
    // Little's law: requests in flight = arrival rate × mean time in the system.
    let littles = f(&doc["concurrency"]["littlesLaw"]);
    let expected = f(&doc["achievedRate"]) * f(&latency["meanMs"]) / 1000.0;
    assert!(littles > 0.0 && (littles - expected).abs() <= 0.01 + expected * 0.01, "{littles} vs {expected}");
    let thresholds = doc["thresholds"].as_array().expect("thresholds");
    assert_eq!(thresholds.len(), 3);
    assert!(thresholds.iter().all(|t| t["passed"] == true), "{thresholds:?}");
    let seconds = doc["seconds"].as_array().expect("seconds");
    assert_eq!(seconds.len(), 3, "one line per second of intended start");
    let per_second: u64 = seconds.iter().map(|s| s["requests"]["total"].as_u64().expect("n")).sum();
    assert_eq!(per_second, total);
    assert_eq!(doc["plan"]["stages"][0]["duration"], "3s");
    // No progress line when stdout is not a terminal.
    assert!(!output.stderr.contains(&b'\r'), "{}", describe(&output));
}

#[test]
fn a_failing_threshold_exits_1_and_the_table_says_which() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (200, Duration::from_millis(30)));
    let output = run(&[
        &server.url,
        "--rate",
        "20",
        "--duration",
        "2s",
        "--threshold",
        "p50 < 10ms",
        "--threshold",
        "errorRate < 1%",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("FAIL  p50 < 10ms"), "{text}");
    assert!(text.contains("pass  errorRate < 1%"), "{text}");
    assert!(text.contains("coordinated-omission free"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("verdict") && l.trim_end().ends_with("Fail")), "{text}");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let _group = crate::support::group("cli_load");
    for (args, says) in [
        (&["--rate", "10", "--vus", "5", "--duration", "1s"][..], &["--rate", "--vus"][..]),
        (&["--rate", "10"][..], &["--duration"][..]),
        (&["--rate", "10", "--duration", "1s", "--threshold", "p99 <"][..], &["--threshold", "missing value"][..]),
        (&["--rate", "10", "--preset", "capacity"][..], &["--threshold"][..]),
        (&["--vus", "2", "--duration", "1s", "--threshold", "achievedRate >= 99%"][..], &["closed model"][..]),
    ] {
        let mut all = vec!["http://127.0.0.1:9/"];
        all.extend(args);
        let output = run(&all);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        for needle in says {
            assert!(stderr.contains(needle), "{args:?}: stderr should name {needle}: {stderr}");
        }
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

#[test]
fn capacity_finds_a_knee_below_the_level_where_the_server_degrades() {
    let _group = crate::support::group("cli_load");
    // At most 15 requests per wall-clock second are served; more get 503. The capacity preset
    // around 100/s with D = 100s climbs 10/s, 20/s, … in holds of 10s: 10/s holds, 20/s breaks.
    let server = serve(|n| (if n > 15 { 503 } else { 200 }, Duration::ZERO));
    let started = Instant::now();
    let output = run(&[
        &server.url,
        "--rate",
        "100",
        "--preset",
        "capacity",
        "--duration",
        "100s",
        "--threshold",
        "errorRate < 1%",
        "-o",
        "json",
    ]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "a level at or below L broke: {}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["capacity"]["knee"], 10, "{}", doc["capacity"]);
    assert_eq!(doc["capacity"]["brokeAt"], 20, "{}", doc["capacity"]);
    assert_eq!(doc["run"]["ended"], "capacityStopped");
    assert_eq!(doc["verdict"], "Fail");
    assert_eq!(doc["thresholdsAt"], 20, "the results are those of the level that broke");
    let steps = doc["steps"].as_array().expect("steps");
    assert_eq!(steps[0]["held"], true);
    assert_eq!(steps[1]["held"], false);
    assert!(f(&steps[1]["errorRate"]) > 0.1, "{}", steps[1]);
    assert!(steps[2]["held"].is_null(), "nothing above the break is judged");
    // The plan climbs for 220s; the search stops once level 20's hold has been judged (22s).
    assert!(f(&doc["run"]["seconds"]) < 26.0, "{}", doc["run"]);
    assert!(took < Duration::from_secs(35), "took {took:?}");
}

#[test]
fn abort_on_fail_stops_a_run_that_cannot_pass() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (500, Duration::ZERO));
    let output = run(&[
        &server.url,
        "--rate",
        "50",
        "--duration",
        "30s",
        "--threshold",
        "errorRate < 1%",
        "--abort-on-fail",
        "--abort-grace",
        "1s",
        "-o",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["verdict"], "Aborted");
    assert_eq!(doc["run"]["ended"], "aborted");
    assert!(doc["run"]["stop"].as_str().is_some_and(|s| s.contains("can no longer hold")), "{}", doc["run"]);
    assert!(f(&doc["run"]["seconds"]) < 6.0, "stopped long before 30s: {}", doc["run"]);
    assert_eq!(doc["requests"]["status5xx"], doc["requests"]["total"]);
}

#[test]
fn the_closed_model_runs_virtual_users_and_has_no_target_rate() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (200, Duration::from_millis(10)));
    let output = run(&[&server.url, "--vus", "2", "--duration", "2s", "--threshold", "rps > 10", "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["model"], "closed");
    assert_eq!(doc["latencyFrom"], "send");
    assert!(doc["targetRate"].is_null());
    let total = doc["requests"]["total"].as_u64().expect("total");
    // Two users, 10ms answers: at most 2 × 2s / 10ms = 400 requests; a loaded machine sends fewer.
    assert!((40..=410).contains(&total), "{total}");
    assert_eq!(doc["concurrency"]["vus"], 2);
    // Little's law: about two requests outstanding at any time.
    let concurrency = f(&doc["concurrency"]["littlesLaw"]);
    assert!((1.0..=2.5).contains(&concurrency), "{concurrency}");
}

#[test]
fn ctrl_c_stops_the_run_and_still_prints_the_summary() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (200, Duration::ZERO));
    let child = chaoslab(&[&server.url, "--rate", "20", "--duration", "60s", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Interrupt once 30 requests (1.5 s of the schedule) reached the server, however slowly the
    // binary started on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.hits.load(Ordering::Relaxed) < 30 {
        assert!(Instant::now() < deadline, "the run sent {} requests in 30 s", server.hits.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["run"]["ended"], "interrupted");
    let ran = f(&doc["run"]["seconds"]);
    assert!((1.4..10.0).contains(&ran), "{ran}");
    let total = doc["requests"]["total"].as_u64().expect("total");
    assert!(total >= 20 && (total as f64) <= 20.0 * ran + 2.0, "{total} requests in {ran}s");
}

/// A LoadTest manifest in a temporary file, removed when dropped.
struct Manifest(std::path::PathBuf);

impl Manifest {
    fn new(name: &str, yaml: &str) -> Manifest {
        let dir = std::env::temp_dir().join(format!("chaoslab-cli-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, yaml).expect("write manifest");
        Manifest(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("UTF-8 path")
    }
}

impl Drop for Manifest {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn loadtest(target: &str, rest: &str) -> String {
    format!(
        "apiVersion: chaoslab.dev/v1alpha1\nkind: LoadTest\nmetadata: {{name: lt, namespace: lab}}\nspec:\n  load:\n    target: {target}\n{rest}"
    )
}

#[test]
fn a_manifest_runs_its_spec_and_is_judged_by_its_thresholds() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (200, Duration::ZERO));
    let m = Manifest::new(
        "pass.yaml",
        &loadtest(
            &format!("{{url: '{}'}}", server.url),
            "    rate: 50\n    duration: 2s\n    runners: {parallelism: 4}\n  thresholds: ['p99 < 1s', 'errorRate < 1%', 'achievedRate >= 95%']\n",
        ),
    );
    let output = run(&["-f", m.path(), "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["verdict"], "Pass");
    assert_eq!(doc["url"], server.url.as_str());
    assert!(doc["source"].as_str().is_some_and(|s| s.ends_with("pass.yaml (LoadTest lab/lt)")), "{}", doc["source"]);
    let total = doc["requests"]["total"].as_u64().expect("total");
    // The whole rate from one process, whatever runners.parallelism says.
    assert!((98..=101).contains(&total), "{total}");
    assert_eq!(server.hits.load(Ordering::Relaxed), total);
    assert_eq!(doc["thresholds"].as_array().map(Vec::len), Some(3));

    // A Service target: the URL argument is where it is reached, with the spec's path.
    let m = Manifest::new(
        "service.yaml",
        &loadtest(
            "{service: {name: web, port: 8080, path: /api/}}",
            "    rate: 10\n    duration: 1s\n  thresholds: ['errorRate < 1%']\n",
        ),
    );
    let base = server.url.trim_end_matches('/');
    let output = run(&["-f", m.path(), base, "-o", "json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(json_of(&output)["url"], format!("{base}/api"));
    let text = run(&["-f", m.path(), base]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().any(|l| l.starts_with("from") && l.contains("service.yaml (LoadTest lab/lt)")), "{text}");
}

#[test]
fn a_manifests_abort_rule_stops_the_run() {
    let _group = crate::support::group("cli_load");
    let server = serve(|_| (500, Duration::ZERO));
    let m = Manifest::new(
        "abort.yaml",
        &loadtest(
            &format!("{{url: '{}'}}", server.url),
            "    rate: 40\n    duration: 30s\n  thresholds: ['p99 < 1s']\n  abortWhen: [{when: 'errorRate > 50%', for: 2s}]\n",
        ),
    );
    let started = Instant::now();
    let output = run(&["-f", m.path(), "-o", "json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let doc = json_of(&output);
    assert_eq!(doc["verdict"], "Aborted");
    assert_eq!(doc["run"]["ended"], "aborted");
    assert_eq!(doc["abortedBy"]["rule"], "errorRate > 50%");
    assert_eq!(doc["abortedBy"]["observed"], serde_json::json!(["100%", "100%"]), "{}", doc["abortedBy"]);
    assert!(doc["run"]["stop"].as_str().is_some_and(|s| s.contains("abortWhen")), "{}", doc["run"]);
    assert!(f(&doc["run"]["seconds"]) < 6.0, "stopped after 2 bad seconds: {}", doc["run"]);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_manifest_with_conflicting_flags_or_a_bad_spec_exits_2_saying_why() {
    let _group = crate::support::group("cli_load");
    let m = Manifest::new("svc.yaml", &loadtest("{service: {name: frontend}}", "    rate: 10\n    duration: 1s\n"));
    let bad = Manifest::new("bad.yaml", &loadtest("{url: 'http://127.0.0.1:9/'}", "    rate: 10\n"));
    for (args, says) in [
        (vec!["-f", m.path(), "http://127.0.0.1:9", "--rate", "5"], "'--file <PATH>' cannot be used with '--rate"),
        (vec!["-f", m.path(), "http://127.0.0.1:9", "--threshold", "p99 < 1s"], "cannot be used with"),
        (vec!["-f", m.path()], "give the base URL"),
        (vec!["-f", bad.path()], "load.duration is required"),
        (vec!["-f", "/nonexistent/lt.yaml"], "cannot read it"),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?}: stderr should say {says:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
}
