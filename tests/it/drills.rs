//! The first curriculum, examples/drills/: every drill is accepted by the API server (its CRD's
//! schema and CEL rules) and by the operator's checks, states its roadmap topic and expected
//! verdict in its header, and every LoadTest drill, run with `chaoslab load -f` against the lab
//! topology (three `chaoslab demo` processes on loopback, with the chart's flags), ends with that
//! verdict. Drills of kinds not run yet carry a `# Runnable after:` line, so none is skipped
//! without saying so.
//!
//! Header lines read here: `# expect: Pass|Fail` and `# Runnable after: <what>`.

use crate::support;
use crate::support::topology;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use chaoslab::{
    api::{AutoscalingCheck, CircuitBreakerTrial, Drill, LoadTest},
    domain::spec_check::SpecCheck,
};
use serde_json::Value;
use support::{files_under, repo_path, validate, yaml_documents};
use topology::{f, load};

struct DrillFile {
    path: PathBuf,
    name: String,
    docs: Vec<Value>,
    expect: String,
    runnable_after: Option<String>,
}

impl DrillFile {
    /// A drill `chaoslab load -f` runs: one LoadTest, and nothing waiting on another issue.
    fn runs_locally(&self) -> bool {
        self.docs.len() == 1 && self.docs[0]["kind"] == "LoadTest" && self.runnable_after.is_none()
    }
}

fn drills() -> Vec<DrillFile> {
    files_under(&repo_path("examples/drills"), "yaml")
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable drill");
            let header = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_owned());
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            let expect = header("# expect: ").unwrap_or_else(|| panic!("{name} has no `# expect:` line"));
            assert!(text.contains("# Roadmap topic: "), "{name} says which roadmap topic it teaches");
            DrillFile { docs: yaml_documents(&path), runnable_after: header("# Runnable after: "), expect, name, path }
        })
        .collect()
}

/// Parsed into its Rust type (so a drill cannot drift from the types) and checked by the operator.
fn checked<K: serde::de::DeserializeOwned + SpecCheck>(doc: &Value) -> Result<(), String> {
    serde_json::from_value::<K>(doc.clone()).map_err(|e| e.to_string())?.check_spec()
}

#[test]
fn every_drill_is_valid_and_states_its_verdict() {
    let _group = crate::support::group("drills");
    let all = drills();
    let names: Vec<&str> = all.iter().map(|d| d.name.as_str()).collect();
    for lesson in [
        "baseline",
        "load",
        "stress",
        "spike",
        "soak",
        "capacity",
        "pod-kill-graceful",
        "pod-kill-ungraceful",
        "latency-without-timeout",
        "latency-with-timeout",
        "retry-storm",
        "circuit-breaker",
        "autoscaling",
        "game-day",
    ] {
        assert!(names.iter().any(|n| n.contains(lesson)), "no drill teaches {lesson}: {names:?}");
    }
    for drill in &all {
        let name = &drill.name;
        assert!(["Pass", "Fail"].contains(&drill.expect.as_str()), "{name}: expect {:?}", drill.expect);
        assert!(!drill.docs.is_empty(), "{name} holds no manifest");
        for doc in &drill.docs {
            assert_eq!(doc["apiVersion"], chaoslab::api::API_VERSION, "{name}: only chaoslab resources");
            assert_eq!(doc["metadata"]["namespace"], "chaoslab-demo", "{name}: in the demo's namespace");
            if let Err(errors) = validate(doc, None) {
                panic!("{name} ({}) is refused by its CRD: {errors:#?}", doc["kind"]);
            }
            let checked = match doc["kind"].as_str().unwrap_or_default() {
                "LoadTest" => checked::<LoadTest>(doc),
                "Drill" => checked::<Drill>(doc),
                "CircuitBreakerTrial" => checked::<CircuitBreakerTrial>(doc),
                "AutoscalingCheck" => checked::<AutoscalingCheck>(doc),
                other => Err(format!("a drill of kind {other} is not expected")),
            };
            if let Err(e) = checked {
                panic!("{name} ({}) fails the operator's checks: {e}", doc["kind"]);
            }
        }
        if drill.runs_locally() {
            let lt: LoadTest = serde_json::from_value(drill.docs[0].clone()).expect("typed");
            let service = lt.spec.load.target.service.as_ref().map(|s| s.name.as_str());
            assert_eq!(service, Some("frontend"), "{name} targets the Service frontend");
            let plan = chaoslab::load::expand(&lt.spec.load, None).expect("plan");
            // Short drills keep the suite fast: at most 60s of load, or, for a capacity search,
            // the step beyond the frontend's most (12 in flight / ~0.09s ≈ 133/s) within 60s.
            let length = match lt.spec.load.preset {
                Some(chaoslab::api::load::Preset::Capacity) => plan
                    .steps()
                    .iter()
                    .find(|s| s.level > 133)
                    .map(|s| s.end)
                    .unwrap_or_else(|| panic!("{name}: the climb never passes 133/s")),
                _ => plan.total_duration(),
            };
            assert!(length <= Duration::from_secs(60), "{name}: {length:?} of load");
        } else {
            assert!(
                drill.runnable_after.as_ref().is_some_and(|r| !r.is_empty()),
                "{name} cannot run with `chaoslab load -f` and has no `# Runnable after:` line"
            );
        }
    }
    let local: Vec<&str> = all.iter().filter(|d| d.runs_locally()).map(|d| d.name.as_str()).collect();
    let later: Vec<&str> = all.iter().filter(|d| !d.runs_locally()).map(|d| d.name.as_str()).collect();
    eprintln!("run by chaoslab load -f: {local:?}\nrunnable later: {later:?}");
    assert!(local.len() >= 6 && later.len() >= 5, "{local:?} {later:?}");
}

/// The JSON figures worth a line of the test's output.
fn figures(doc: &Value) -> String {
    let r = &doc["requests"];
    format!(
        "verdict {} ({}); {} sent, {} ok, {} 5xx; {:.1}/s; p50 {:.1}ms p99 {:.1}ms; Little's law {:.1} in flight; capacity {}",
        doc["verdict"],
        doc["run"]["ended"],
        r["total"],
        r["ok"],
        r["status5xx"],
        f(&doc["achievedRate"]),
        f(&doc["latency"]["p50Ms"]),
        f(&doc["latency"]["p99Ms"]),
        f(&doc["concurrency"]["littlesLaw"]),
        doc["capacity"],
    )
}

#[test]
fn every_loadtest_drill_ends_with_its_stated_verdict() {
    let _group = crate::support::group("drills");
    let started = Instant::now();
    let lab = topology::lab();
    let drills: Vec<DrillFile> = drills().into_iter().filter(DrillFile::runs_locally).collect();
    assert!(drills.len() >= 6);
    let mut report = Vec::new();
    for drill in &drills {
        let took = Instant::now();
        let path = drill.path.to_str().expect("UTF-8 path");
        let (code, doc, output) = load(&["-f", path, &lab.frontend.url, "-o", "json", "-q"]);
        let line = format!("{}: {} in {:.0}s", drill.name, figures(&doc), took.elapsed().as_secs_f64());
        eprintln!("{line}");
        report.push(line);
        let describe = || {
            format!(
                "{}: {}\nstderr: {}\nfrontend:\n{}",
                drill.name,
                serde_json::to_string_pretty(&doc).unwrap_or_default(),
                String::from_utf8_lossy(&output.stderr),
                lab.frontend.logs()
            )
        };
        assert_eq!(doc["verdict"], drill.expect.as_str(), "{}", describe());
        let expected_code = if drill.expect == "Pass" { 0 } else { 1 };
        assert_eq!(code, Some(expected_code), "{}", describe());
        assert!(doc["source"].as_str().is_some_and(|s| s.contains(&drill.name)), "{}", describe());
        let r = &doc["requests"];
        // A failure must be the service's own limit (the frontend shedding with 503), never
        // the machine: no connection errors, no timeouts.
        assert_eq!((r["connect"].as_u64(), r["timeout"].as_u64()), (Some(0), Some(0)), "{}", describe());
        if drill.expect == "Fail" {
            assert!(r["status5xx"].as_u64().is_some_and(|n| n > 0), "{}", describe());
        }
        if doc["preset"] == "capacity" {
            let knee = doc["capacity"]["knee"].as_u64().unwrap_or(0);
            let broke = doc["capacity"]["brokeAt"].as_u64().unwrap_or(0);
            assert!((30..=120).contains(&knee) && broke > knee && broke <= 150, "{}", describe());
        }
        // Leave nothing in flight for the next drill.
        lab.frontend.settle(Duration::from_secs(10));
    }
    let took = started.elapsed();
    eprintln!("{} drills in {took:?}:\n{}", drills.len(), report.join("\n"));
    assert!(took < Duration::from_secs(330), "the drills took {took:?}");
}
