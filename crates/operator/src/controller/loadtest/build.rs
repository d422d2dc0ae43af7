//! What the LoadTest controller creates and concludes, without touching the API: the runner
//! Job, the runners' identity, the target URL, and the status of a finished run judged from the
//! merged runner reports. Pure, so every rule is unit-tested from YAML and plain values.

use std::time::Duration;

use k8s_openapi::{
    api::{
        batch::v1::Job,
        core::v1::{Service, ServiceAccount},
        rbac::v1::RoleBinding,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::{
    api::{
        LoadTest,
        figures::ExpectationResult,
        load::{CapacityResult, LoadModel, LoadTestStatus, Preset, RunnerRecord, StepResult},
    },
    load::{
        Figures,
        protocol::{MergedRun, MergedStep, RUN_LABEL, RunnerConfig},
        stages::Plan,
        verdict::judge,
    },
};

/// The ServiceAccount (and RoleBinding) runner pods use in each namespace.
pub const RUNNER_IDENTITY: &str = "chaoslab-runner";
/// How often a runner replaces its report.
pub const REPORT_EVERY_SECS: u32 = 5;
/// How long runner pods may take to be running before the run is given up.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long after the plan's end (plus the request timeout) runners may take to report.
pub const REPORT_GRACE: Duration = Duration::from_secs(60);

pub use crate::controller::runner_settings::RunnerSettings;

/// A name of at most `max` characters from `name` and part of `uid`, unique per run.
fn short_name(name: &str, uid: &str, suffix: &str, max: usize) -> String {
    let short_uid: String = uid.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    let room = max.saturating_sub(short_uid.len() + suffix.len() + 2);
    let prefix: String = name.chars().take(room).collect();
    format!("{}-{short_uid}-{suffix}", prefix.trim_end_matches('-'))
}

/// The runner Job's name: a DNS label with room for the pod index (pod hostnames are
/// `<job>-<index>`).
pub fn job_name(lt: &LoadTest) -> String {
    short_name(&lt.name_any(), &lt.uid().unwrap_or_default(), "runner", 56)
}

/// The target's base URL: the URL as given, or a Service resolved to its cluster DNS name and
/// port. Errors name the field and what would be allowed.
pub fn target_url(lt: &LoadTest, service: Option<&Service>) -> Result<String, String> {
    let target = &lt.spec.load.target;
    if let Some(url) = &target.url {
        return Ok(url.clone());
    }
    let Some(reference) = &target.service else {
        return Err("spec.load.target needs one of url and service".into());
    };
    let Some(svc) = service else {
        return Err(format!("spec.load.target.service: Service {:?} does not exist in this namespace", reference.name));
    };
    let ports = svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let port = match &reference.port {
        None => ports.first().map(|p| p.port),
        Some(IntOrString::Int(n)) => ports.iter().find(|p| p.port == *n).map(|p| p.port),
        Some(IntOrString::String(name)) => ports.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.port),
    };
    let Some(port) = port else {
        let known: Vec<String> =
            ports.iter().map(|p| p.name.clone().map_or(p.port.to_string(), |n| format!("{n} ({})", p.port))).collect();
        return Err(format!(
            "spec.load.target.service.port: Service {:?} has no port {}; its ports are: {}",
            reference.name,
            reference.port.as_ref().map_or("at all".into(), |p| match p {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => format!("{s:?}"),
            }),
            if known.is_empty() { "none".into() } else { known.join(", ") }
        ));
    };
    let ns = lt.namespace().unwrap_or_default();
    let path = reference.path.as_deref().unwrap_or("");
    Ok(format!("http://{}.{ns}.svc:{port}{}", reference.name, path.trim_end_matches('/')))
}

/// What every runner is told.
pub fn runner_config(lt: &LoadTest, plan: &Plan, base_url: &str) -> RunnerConfig {
    RunnerConfig {
        load_test: lt.name_any(),
        namespace: lt.namespace().unwrap_or_default(),
        uid: lt.uid().unwrap_or_default(),
        runners: lt.spec.load.runners.parallelism,
        base_url: base_url.to_owned(),
        profile: lt.spec.load.clone(),
        plan_start: plan.start,
        stages: plan.stages.clone(),
        report_every_secs: REPORT_EVERY_SECS,
    }
}

/// The Indexed Job of runner pods: N pods started together, each runner `JOB_COMPLETION_INDEX`
/// of N. A runner pod that fails is replaced (twice per index) and resumes from its report.
pub fn runner_job(lt: &LoadTest, config: &RunnerConfig, settings: &RunnerSettings) -> Result<Job, String> {
    let owner = lt.controller_owner_ref(&()).ok_or("the LoadTest has no UID yet")?;
    let n = config.runners;
    let config_json = serde_json::to_string(config).map_err(|e| format!("runner configuration: {e}"))?;
    // The Job outlives the plan by the start allowance and the reporting grace, never forever.
    let deadline = START_TIMEOUT + plan_length(config) + lt.spec.load.timeout.as_std() + REPORT_GRACE;
    let uid = lt.uid().unwrap_or_default();
    let labels = json!({
        RUN_LABEL: uid,
        "app.kubernetes.io/name": "chaoslab-runner",
        "app.kubernetes.io/component": "load-runner",
        "app.kubernetes.io/part-of": "chaoslab",
        "app.kubernetes.io/managed-by": "chaoslab-operator",
    });
    let resources = lt.spec.load.runners.resources.clone().map(|r| json!(r)).unwrap_or_else(
        || json!({"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}}),
    );
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(lt),
            "namespace": lt.namespace(),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": n,
            "parallelism": n,
            "backoffLimitPerIndex": 2,
            "activeDeadlineSeconds": deadline.as_secs(),
            "template": {
                "metadata": { "labels": labels },
                "spec": {
                    "serviceAccountName": RUNNER_IDENTITY,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "runner",
                        "image": settings.image,
                        "args": ["runner"],
                        "env": [
                            { "name": "CHAOSLAB_RUNNER", "value": config_json },
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        ],
                        "resources": resources,
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                    }],
                },
            },
        },
    });
    serde_json::from_value(job).map_err(|e| format!("runner Job: {e}"))
}

/// The runners' ServiceAccount and its binding to the runner ClusterRole, in `namespace`.
pub fn runner_identity(namespace: &str, settings: &RunnerSettings) -> Result<(ServiceAccount, RoleBinding), String> {
    let labels = json!({"app.kubernetes.io/part-of": "chaoslab", "app.kubernetes.io/managed-by": "chaoslab-operator"});
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": { "name": RUNNER_IDENTITY, "namespace": namespace, "labels": labels },
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": RUNNER_IDENTITY, "namespace": namespace, "labels": labels },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": settings.role },
        "subjects": [{ "kind": "ServiceAccount", "name": RUNNER_IDENTITY, "namespace": namespace }],
    });
    Ok((
        serde_json::from_value(sa).map_err(|e| format!("runner ServiceAccount: {e}"))?,
        serde_json::from_value(binding).map_err(|e| format!("runner RoleBinding: {e}"))?,
    ))
}

fn plan_length(config: &RunnerConfig) -> Duration {
    config.stages.iter().map(|s| s.duration.as_std()).sum()
}

/// How a run ended, as far as the runners go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every runner ran the plan to its end.
    Complete,
    /// The run was stopped early by an abort request.
    Aborted,
    /// An abort rule (`spec.abortWhen`) fired; `status.abortedBy` says which and why.
    AbortRule,
    /// Thresholds were certain to fail (`abortOnFail`) or the capacity search found its break.
    StoppedEarly,
    /// A runner crashed, failed or never reported: the load was not what was asked.
    RunnerTrouble,
}

/// The status figures of a run from the merged reports: totals, thresholds, steps, capacity and
/// the verdict with its message. `seconds` is the length the rates are computed over.
pub fn conclude(
    lt: &LoadTest,
    plan: &Plan,
    merged: &MergedRun,
    seconds: f64,
    ending: Ending,
    runners: &[RunnerRecord],
) -> (LoadTestStatus, crate::api::Verdict, String) {
    use crate::api::Verdict;
    let open = lt.spec.load.model == LoadModel::Open;
    let target = open.then(|| plan.mean_level());
    let window = merged.total.figures(seconds, target);
    let figures = &window.figures;
    let mut st = LoadTestStatus {
        achieved_rate: Some(round(figures.achieved_rate, 2)),
        target_rate: target.map(|t| round(t, 2)),
        error_rate: Some(round(figures.error_rate, 6)),
        latency: Some(merged.total.latency_summary()),
        requests: Some(merged.total.counts.clone()),
        littles_law_concurrency: Some(round(window.concurrency, 2)),
        runners: runners.to_vec(),
        ..Default::default()
    };
    let capacity = lt.spec.load.preset == Some(Preset::Capacity);
    let mut held_levels = Vec::new();
    for step in &merged.steps {
        let f = step_figures(step, open);
        let held = if capacity { step_held(lt, step, open) } else { None };
        if let Some(h) = held {
            held_levels.push((step.level, h));
        }
        st.steps.push(StepResult {
            level: step.level,
            from: step.from,
            to: step.to,
            achieved_rate: round(f.achieved_rate, 2),
            error_rate: round(f.error_rate, 6),
            p50_ms: ms(f.p50),
            p99_ms: ms(f.p99),
            held,
        });
    }

    if capacity {
        st.capacity = Some(crate::load::summary::capacity_of(&held_levels));
    }
    let (_, results) = judge_all(&lt.spec.thresholds, figures);
    st.thresholds = results;

    let sent = figures.total;
    let (verdict, message) = match ending {
        Ending::Aborted => (Verdict::Aborted, format!("aborted on request after {sent} requests")),
        Ending::AbortRule => (Verdict::Aborted, "aborted by an abortWhen rule (see status.abortedBy)".to_owned()),
        Ending::RunnerTrouble => {
            let trouble: Vec<String> = runners
                .iter()
                .filter(|r| matches!(r.state.as_str(), "Crashed" | "Failed" | "Missing"))
                .map(|r| {
                    format!(
                        "runner {} {}{}",
                        r.index,
                        r.state.to_lowercase(),
                        r.message.as_ref().map_or(String::new(), |m| format!(": {m}"))
                    )
                })
                .collect();
            (Verdict::Error, format!("the load was not what was asked: {}", trouble.join("; ")))
        }
        _ if let Some(why) = crate::load::verdict::no_success(sent, merged.total.counts.ok)
            && !st.thresholds.iter().any(|r| !r.passed && r.message.is_none()) =>
        {
            (Verdict::Inconclusive, why)
        }
        _ if capacity => {
            let nominal = lt.spec.load.rate.or(lt.spec.load.vus).unwrap_or_default();
            let (verdict, _, note) = crate::load::summary::capacity_verdict(&held_levels, nominal);
            let found = match &st.capacity {
                Some(CapacityResult { knee: Some(k), broke_at: Some(b) }) => format!("knee {k}, broke at {b}"),
                Some(CapacityResult { knee: Some(k), broke_at: None }) => format!("knee {k}, nothing broke"),
                Some(CapacityResult { knee: None, broke_at: Some(b) }) => format!("broke at the first level, {b}"),
                _ => "no level judged".to_owned(),
            };
            (verdict, format!("capacity: {found}; {note}"))
        }
        _ => threshold_verdict(&st.thresholds),
    };
    // Seconds a runner did not measure are said next to the verdict, not hidden in a record.
    let message = if merged.gaps.is_empty() {
        message
    } else {
        let gaps: Vec<String> =
            merged.gaps.iter().map(|(runner, from, to)| format!("runner {runner} {from}s–{to}s")).collect();
        format!("{message} (not measured while restarting: {})", gaps.join(", "))
    };
    (st, verdict, message)
}

/// Pass when every threshold held; Fail when one failed on a measured value; Inconclusive when
/// one could not be judged (and none failed outright).
fn threshold_verdict(results: &[ExpectationResult]) -> (crate::api::Verdict, String) {
    use crate::api::Verdict;
    let verdict = crate::load::verdict::verdict_of(results);
    if verdict == Verdict::Pass {
        let text = if results.is_empty() {
            "the load ran; no thresholds were given".to_owned()
        } else {
            format!(
                "every threshold held: {}",
                results.iter().map(|r| r.expression.as_str()).collect::<Vec<_>>().join(", ")
            )
        };
        return (Verdict::Pass, text);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed && r.message.is_none())
        .map(|r| format!("{} (observed {})", r.expression, r.observed.as_deref().unwrap_or("?")))
        .collect();
    if verdict == Verdict::Fail {
        return (Verdict::Fail, format!("threshold failed: {}", failed.join(", ")));
    }
    let unjudged: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {}", r.expression, r.message.as_deref().unwrap_or("")))
        .collect();
    (Verdict::Inconclusive, format!("could not judge {}", unjudged.join("; ")))
}

/// The first abort rule that fires on the merged time series, with its record. Only points every
/// runner has sealed are judged; a rule's `for` counts whole points (one second each up to an
/// hour-long plan).
pub fn fired_abort_rule(
    rules: &[crate::api::figures::AbortRule],
    merged: &MergedRun,
    plan: &Plan,
    open: bool,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<crate::api::figures::AbortRecord> {
    let sealed: Vec<&crate::load::protocol::Point> =
        merged.points.iter().filter(|p| p.second() + u64::from(p.seconds()) <= merged.sealed).collect();
    let resolution = u64::from(sealed.first().map_or(1, |p| p.seconds()).max(1));
    let figures: Vec<Figures> = sealed
        .iter()
        .map(|p| {
            let mid = Duration::from_secs_f64(p.second() as f64 + f64::from(p.seconds()) / 2.0);
            p.figures(open.then(|| plan.level_at(mid)))
        })
        .collect();
    rules.iter().find_map(|rule| {
        let points = rule.r#for.as_std().as_secs().div_ceil(resolution);
        crate::load::verdict::abort_fires(&rule.when, points, &figures).map(|observed| {
            crate::api::figures::AbortRecord {
                rule: rule.when.clone(),
                observed,
                at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            }
        })
    })
}

/// The figures of one level over its judged seconds; the open model's target is the level.
fn step_figures(step: &MergedStep, open: bool) -> Figures {
    step.bucket.figures(step.to.saturating_sub(step.from) as f64, open.then_some(f64::from(step.level))).figures
}

/// Capacity: whether every threshold held at this level, once every runner sealed it and
/// something was sent; `None` until then. The operator stops at the first `Some(false)`.
pub fn step_held(lt: &LoadTest, step: &MergedStep, open: bool) -> Option<bool> {
    let f = step_figures(step, open);
    (step.complete && f.total > 0).then(|| judge_all(&lt.spec.thresholds, &f).0)
}

/// Judges every threshold on `figures`; whether all held.
pub fn judge_all(thresholds: &[String], figures: &Figures) -> (bool, Vec<ExpectationResult>) {
    let results: Vec<ExpectationResult> = thresholds.iter().map(|t| judge(t, figures, None)).collect();
    (results.iter().all(|r| r.passed), results)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 3)
}

/// The owner reference's UID of `obj` matches `lt`: the object is this run's.
pub fn owned_by<K: Resource>(obj: &K, lt: &LoadTest) -> bool {
    let uid = lt.uid();
    obj.meta().owner_references.iter().flatten().any(|o| Some(&o.uid) == uid.as_ref())
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
