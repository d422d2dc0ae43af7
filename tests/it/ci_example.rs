//! examples/ci/resilience-gate.yml, the GitHub Actions gate, checked against the real pieces it
//! uses: the chart renders with the workflow's `--set` values and holds the gate's targets, every
//! chaoslab command line it runs is accepted by this binary's parser, and the JUnit file it
//! writes is the one it uploads and publishes.

use crate::support::helm;

use std::{path::Path, process::Command};

use serde_json::Value;

const WORKFLOW: &str = "examples/ci/resilience-gate.yml";

fn workflow() -> Value {
    let text = std::fs::read_to_string(helm::repo_path(WORKFLOW)).expect("the workflow");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{WORKFLOW} is not YAML: {e}"))
}

/// The `run:` scripts of the gate job's steps, with `$GATE`-style variables of `env:` expanded.
fn scripts(workflow: &Value) -> Vec<String> {
    let env = workflow["env"].as_object().cloned().unwrap_or_default();
    let steps = workflow["jobs"]["gate"]["steps"].as_array().expect("jobs.gate.steps");
    steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .map(|script| {
            let mut script = script.replace("\\\n", " ");
            for (key, value) in &env {
                let value = value.as_str().unwrap_or_default();
                script = script.replace(&format!("\"${key}\""), value).replace(&format!("${key}"), value);
            }
            script
        })
        .collect()
}

/// Every line of the scripts that runs `chaoslab` or `helm install`, split into words.
fn command_lines(scripts: &[String], program: &str) -> Vec<Vec<String>> {
    scripts
        .iter()
        .flat_map(|s| s.lines())
        .map(str::trim)
        .filter(|l| l.starts_with(&format!("{program} ")))
        .map(|l| l.split_whitespace().map(|w| w.trim_matches('"').to_owned()).collect())
        .collect()
}

fn flag_value(words: &[String], flag: &str) -> Option<String> {
    words.iter().position(|w| w == flag).and_then(|i| words.get(i + 1)).cloned()
}

#[test]
fn the_chart_installs_what_the_gate_targets() {
    let workflow = workflow();
    let scripts = scripts(&workflow);
    let installs = command_lines(&scripts, "helm");
    assert_eq!(installs.len(), 1, "one helm install in {scripts:?}");
    let install = &installs[0];
    assert_eq!(install[1..3], ["install".to_owned(), "chaoslab".to_owned()]);
    assert_eq!(install[3], "charts/chaoslab", "the chart of this repository");
    let sets: Vec<String> =
        install.windows(2).filter(|w| w[0] == "--set").flat_map(|w| ["--set".to_owned(), w[1].clone()]).collect();
    assert!(sets.contains(&"demo.enabled=true".to_owned()), "{sets:?}");
    let args: Vec<&str> = sets.iter().map(String::as_str).collect();
    let rendered = helm::render(&args);
    // The operator runs the image the workflow builds and loads into kind.
    let operator = rendered
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["namespace"] == helm::NAMESPACE)
        .expect("the operator Deployment");
    assert_eq!(operator["spec"]["template"]["spec"]["containers"][0]["image"], "chaoslab:ci");
    // Every Service the gate's experiments name is one the chart installs, in their namespace.
    let gate = workflow["env"]["GATE"].as_str().expect("env.GATE");
    let text = std::fs::read_to_string(helm::repo_path(gate)).expect("the gate's experiments");
    let manifests = chaoslab::cli::run::manifest::parse(&text, Path::new(gate), None)
        .unwrap_or_else(|e| panic!("chaoslab run refuses the gate: {e}"));
    assert!(!manifests.is_empty());
    for manifest in &manifests {
        let ns = manifest.object.metadata.namespace.clone().expect("the gate names its namespace");
        let spec = &manifest.object.data["spec"];
        let mut services: Vec<&str> = vec![spec["load"]["target"]["service"]["name"].as_str().unwrap_or_default()];
        for fault in spec["faults"].as_array().into_iter().flatten() {
            services.extend(fault["serviceFault"]["service"].as_str());
        }
        for service in services.into_iter().filter(|s| !s.is_empty()) {
            assert!(
                rendered.iter().any(|d| d["kind"] == "Service"
                    && d["metadata"]["name"] == service
                    && d["metadata"]["namespace"] == ns.as_str()),
                "{} names Service {ns}/{service}, which the chart does not install",
                manifest.doc
            );
        }
    }
}

#[test]
fn every_chaoslab_command_the_gate_runs_is_one_this_binary_accepts() {
    let workflow = workflow();
    let scripts = scripts(&workflow);
    let commands = command_lines(&scripts, "chaoslab");
    let subcommands: Vec<&str> = commands.iter().map(|c| c[1].as_str()).collect();
    assert_eq!(subcommands, ["run", "report"], "{commands:?}");
    for command in &commands {
        let help = Command::new(env!("CARGO_BIN_EXE_chaoslab")).args([&command[1], "--help"]).output().expect("help");
        assert!(help.status.success());
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in command.iter().filter(|w| w.starts_with('-')) {
            assert!(
                [" ", ",", "\n"].iter().any(|end| help.contains(&format!("{flag}{end}"))),
                "{flag} is not a flag of chaoslab {}:\n{help}",
                command[1]
            );
        }
    }
    // The run gates: it waits for the verdicts, bounds the wait and aborts when the job is cancelled.
    let run = &commands[0];
    for flag in ["--wait", "--timeout", "--abort-on-interrupt", "--junit"] {
        assert!(run.iter().any(|w| w == flag), "chaoslab run without {flag}");
    }
    // The JUnit file it writes is the one uploaded and published, whatever the verdict.
    let junit = flag_value(run, "--junit").expect("a JUnit path");
    let steps = workflow["jobs"]["gate"]["steps"].as_array().expect("steps");
    let uses = |action: &str| {
        steps
            .iter()
            .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            .unwrap_or_else(|| panic!("no {action} step"))
    };
    let upload = uses("actions/upload-artifact");
    assert!(upload["with"]["path"].as_str().unwrap_or_default().lines().any(|l| l.trim() == junit));
    let publish = uses("mikepenz/action-junit-report");
    assert_eq!(publish["with"]["report_paths"].as_str(), Some(junit.as_str()));
    for step in [upload, publish] {
        assert_eq!(step["if"], "always()", "a failed gate still uploads its results");
    }
}
