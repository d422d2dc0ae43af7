//! The LoadTest controller: starts the runner Job, gives every runner the same start time once
//! all are running, follows their reports, and writes the merged figures and the verdict.
//!
//! Lifecycle: Pending → (Job created) Running without `loadStartsAt` → (every runner pod running)
//! `loadStartsAt` set → (every runner reported the end, or the deadline passed) Succeeded,
//! Failed or Aborted. Each step is written to status before the next is taken, so an operator
//! restart resumes where it stood.

pub mod build;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        batch::v1::Job,
        core::v1::{ConfigMap, Pod, Service, ServiceAccount},
        rbac::v1::RoleBinding,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Resource, ResourceExt, api::ListParams, runtime::controller::Action};

use self::build::{Ending, REPORT_GRACE, START_TIMEOUT};
use super::{
    Context, Error, abort_requested, conditions, create_if_absent, delete_if_present, elapsed, namespace_labels,
    publish, reconcile_with_finalizer, report, write_status,
};
use crate::{
    api::{LoadTest, Phase, Verdict, load::LoadTestStatus, load::RunnerRecord},
    domain::expression::Expression,
    domain::{Note, spec_check::SpecCheck},
    load::{
        protocol::{MergedRun, REPORT_KEY, RUN_LABEL, RunnerReport, RunnerState, per_second},
        stages::{Plan, expand},
        summary::{DEFAULT_ABORT_GRACE, certain_failure},
    },
    report::Report,
};

/// How soon a running LoadTest is looked at again: reports arrive every few seconds.
const POLL: Duration = Duration::from_secs(2);
/// Margin between "every runner is running" and the start, so each sees the start time first.
const START_MARGIN: Duration = Duration::from_secs(3);

pub async fn reconcile(lt: Arc<LoadTest>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        lt,
        &ctx,
        async |lt: Arc<LoadTest>, api: &Api<LoadTest>, ns: &str| apply(&lt, &ctx, api, ns).await,
        async |lt: Arc<LoadTest>, _api: &Api<LoadTest>, ns: &str| cleanup(&lt, &ctx, ns).await,
    )
    .await
}

/// A deleted LoadTest stops its runners at once (the Job goes, its pods get SIGTERM and write a
/// last report); the Job and reports would also go by garbage collection, only later.
async fn cleanup(lt: &LoadTest, ctx: &Context, ns: &str) -> Result<Action, Error> {
    stop_runners(ctx, ns, lt).await?;
    Ok(Action::await_change())
}

async fn stop_runners(ctx: &Context, ns: &str, lt: &LoadTest) -> Result<(), Error> {
    delete_if_present(&Api::<Job>::namespaced(ctx.client.clone(), ns), &build::job_name(lt)).await
}

async fn apply(lt: &LoadTest, ctx: &Context, api: &Api<LoadTest>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let status = lt.status.clone().unwrap_or_default();
    let phase = status.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    // Validate: the namespace guard first (a refusal must never start load), then the spec.
    let labels = namespace_labels(&ctx.client, ns).await?;
    let checked = ctx
        .guard
        .check(ns, &labels)
        .map_err(|r| (r.reason(), r.to_string()))
        .and_then(|()| lt.check_spec().map_err(|m| ("InvalidSpec", m)))
        .and_then(|()| expand(&lt.spec.load, None).map_err(|e| ("InvalidSpec", format!("spec.{e}"))));
    let plan = match checked {
        Ok(plan) => plan,
        Err((reason, message)) => {
            if phase == Phase::Running {
                stop_runners(ctx, ns, lt).await?;
            }
            return refuse(lt, ctx, api, status, reason, message, now).await;
        }
    };
    if phase == Phase::Pending {
        return start(lt, ctx, api, ns, status, &plan, now).await;
    }
    follow(lt, ctx, api, ns, status, &plan, now).await
}

/// Pending → Running: the runners' identity, the target resolved, the Job created.
async fn start(
    lt: &LoadTest,
    ctx: &Context,
    api: &Api<LoadTest>,
    ns: &str,
    mut st: LoadTestStatus,
    plan: &Plan,
    now: Timestamp,
) -> Result<Action, Error> {
    let service = match &lt.spec.load.target.service {
        Some(s) => Api::<Service>::namespaced(ctx.client.clone(), ns).get_opt(&s.name).await?,
        None => None,
    };
    let base_url = match build::target_url(lt, service.as_ref()) {
        Ok(url) => url,
        Err(message) => return refuse(lt, ctx, api, st, "TargetNotFound", message, now).await,
    };
    let settings = &ctx.runner;
    let built = build::runner_identity(ns, settings).and_then(|identity| {
        let config = build::runner_config(lt, plan, &base_url);
        Ok((identity, build::runner_job(lt, &config, settings)?))
    });
    let ((sa, binding), job) = match built {
        Ok(b) => b,
        Err(message) => return refuse(lt, ctx, api, st, "InvalidSpec", message, now).await,
    };
    create_if_absent(&Api::<ServiceAccount>::namespaced(ctx.client.clone(), ns), &sa).await?;
    create_if_absent(&Api::<RoleBinding>::namespaced(ctx.client.clone(), ns), &binding).await?;
    create_if_absent(&Api::<Job>::namespaced(ctx.client.clone(), ns), &job).await?;

    let n = lt.spec.load.runners.parallelism;
    st.run.phase = Some(Phase::Running);
    st.run.started_at = Some(Time(now));
    st.run.message = Some(format!("starting {n} runner pod(s); the load starts when every one is running"));
    st.stages = plan.stages.clone();
    st.start_level = Some(plan.start);
    st.target_url = Some(base_url);
    st.runners = (0..n).map(|index| RunnerRecord { index, state: "Pending".into(), ..Default::default() }).collect();
    conditions::accept(&mut st.run, "spec valid and namespace opted in", lt.meta().generation, now);
    write_status(api, &lt.name_any(), &st).await?;
    let note = Note::normal("Started", format!("created runner Job {} with {n} runner(s)", build::job_name(lt)));
    publish(ctx, lt, &[note]).await;
    Ok(Action::requeue(POLL))
}

/// Running: wait for the runners, set the start, follow the reports, conclude.
async fn follow(
    lt: &LoadTest,
    ctx: &Context,
    api: &Api<LoadTest>,
    ns: &str,
    mut st: LoadTestStatus,
    plan: &Plan,
    now: Timestamp,
) -> Result<Action, Error> {
    let n = lt.spec.load.runners.parallelism;
    let uid = lt.uid().unwrap_or_default();
    let selector = format!("{RUN_LABEL}={uid}");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns).list(&ListParams::default().labels(&selector)).await?;
    let job = Api::<Job>::namespaced(ctx.client.clone(), ns).get_opt(&build::job_name(lt)).await?;
    let reports = read_reports(&ctx.client, ns, &selector, lt).await?;
    let failed_indexes = job.as_ref().and_then(|j| j.status.as_ref()).and_then(|s| s.failed_indexes.clone());
    let crashed = parse_indexes(failed_indexes.as_deref().unwrap_or(""));
    let records = runner_records(n, &pods.items, &reports, &crashed);

    if abort_requested(lt) {
        stop_runners(ctx, ns, lt).await?;
        return conclude(lt, ctx, api, st, plan, &reports, records, Ending::Aborted, now).await;
    }

    let Some(starts_at) = st.load_starts_at.as_ref().map(|t| t.0) else {
        let running = pods.items.iter().filter(|p| pod_phase(p) == "Running").count();
        let started = st.run.started_at.as_ref().map_or(now, |t| t.0);
        if running >= n as usize {
            let at = now + SignedDuration::try_from(START_MARGIN).unwrap_or_default();
            st.load_starts_at = Some(Time(at));
            st.runners = records;
            st.run.message = Some(format!("every runner is running; the load starts at {at}"));
            write_status(api, &lt.name_any(), &st).await?;
            publish(ctx, lt, &[Note::normal("LoadStarting", format!("{n} runner(s) start together at {at}"))]).await;
            return Ok(Action::requeue(POLL));
        }
        if elapsed(started, now) > START_TIMEOUT || job_failed(job.as_ref()) {
            stop_runners(ctx, ns, lt).await?;
            let message = format!(
                "only {running} of {n} runner pods were running after {}s: {}",
                elapsed(started, now).as_secs(),
                describe_pods(&pods.items)
            );
            return finish_error(lt, ctx, api, st, records, message, now).await;
        }
        if st.runners != records {
            st.runners = records;
            write_status(api, &lt.name_any(), &st).await?;
        }
        return Ok(Action::requeue(POLL));
    };

    let finished = |r: &RunnerReport| matches!(r.state, RunnerState::Done | RunnerState::Stopped | RunnerState::Failed);
    let all_reported = (0..n).all(|i| reports.get(&i).is_some_and(finished) || crashed.contains(&i));
    let deadline = plan.total_duration() + lt.spec.load.timeout.as_std() + REPORT_GRACE;
    if all_reported {
        let trouble = !crashed.is_empty() || reports.values().any(|r| r.state != RunnerState::Done);
        let ending = if trouble { Ending::RunnerTrouble } else { Ending::Complete };
        return conclude(lt, ctx, api, st, plan, &reports, records, ending, now).await;
    }
    if now > starts_at && elapsed(starts_at, now) > deadline {
        stop_runners(ctx, ns, lt).await?;
        let records = records
            .into_iter()
            .map(|mut r| {
                if !matches!(r.state.as_str(), "Done" | "Stopped" | "Failed" | "Crashed") {
                    r.message = Some(format!("no final report {}s after the plan's end", REPORT_GRACE.as_secs()));
                    r.state = "Missing".into();
                }
                r
            })
            .collect();
        return conclude(lt, ctx, api, st, plan, &reports, records, Ending::RunnerTrouble, now).await;
    }

    // Still running: show the figures so far, and stop early when a rule or the thresholds say so.
    let merged = MergedRun::merge(reports.values())?;
    let open = lt.spec.load.model == crate::api::load::LoadModel::Open;
    if let Some(record) = build::fired_abort_rule(&lt.spec.abort_when, &merged, plan, open, now) {
        stop_runners(ctx, ns, lt).await?;
        st.aborted_by = Some(record);
        return conclude(lt, ctx, api, st, plan, &reports, records, Ending::AbortRule, now).await;
    }
    if let Some((ending, why)) = early_stop(lt, &merged, plan, elapsed(starts_at, now)) {
        stop_runners(ctx, ns, lt).await?;
        tracing::info!(name = %lt.name_any(), %why, "stopping the run early");
        st.run.message = Some(why);
        return conclude(lt, ctx, api, st, plan, &reports, records, ending, now).await;
    }
    let seconds = merged.sealed as f64;
    if seconds > 0.0 {
        let (live, _, _) = build::conclude(lt, plan, &merged, seconds, Ending::Complete, &records);
        st.achieved_rate = live.achieved_rate;
        st.error_rate = live.error_rate;
        st.latency = live.latency;
        st.requests = live.requests;
        st.run.message = Some(format!("{}s of {}s measured", merged.sealed, plan.total_duration().as_secs()));
    }
    st.runners = records;
    // Polled every 2 s: write only what changed (new sealed seconds, a runner's state).
    if lt.status.as_ref() != Some(&st) {
        write_status(api, &lt.name_any(), &st).await?;
    }
    Ok(Action::requeue(POLL))
}

/// Whether a running LoadTest should stop before its plan ends: the capacity search has found
/// the level that broke (judged on complete steps only), or `abortOnFail` and, after the grace
/// period, a threshold can no longer hold whatever the rest of the run brings — the same rule
/// as `chaoslab load`, on the merged reports.
fn early_stop(lt: &LoadTest, merged: &MergedRun, plan: &Plan, since_start: Duration) -> Option<(Ending, String)> {
    use crate::api::load::{LoadModel, Preset};
    let model = lt.spec.load.model;
    if lt.spec.load.preset == Some(Preset::Capacity) {
        let open = model == LoadModel::Open;
        let broke = merged.steps.iter().find(|s| build::step_held(lt, s, open) == Some(false));
        return broke.map(|s| (Ending::StoppedEarly, format!("capacity: a threshold broke at level {}", s.level)));
    }
    if !lt.spec.abort_on_fail || lt.spec.thresholds.is_empty() {
        return None;
    }
    let grace = lt.spec.abort_grace_period.map_or(DEFAULT_ABORT_GRACE, |g| g.as_std());
    if since_start < grace || Duration::from_secs(merged.sealed) <= grace {
        return None;
    }
    // The spec checks already refused thresholds that do not parse.
    let thresholds: Vec<(String, Expression)> =
        lt.spec.thresholds.iter().filter_map(|t| t.parse().ok().map(|e| (t.clone(), e))).collect();
    certain_failure(&thresholds, &merged.total, merged.sealed, plan, model)
        .map(|(_, reason)| (Ending::StoppedEarly, format!("stopped early (abortOnFail): {reason}")))
}

#[allow(clippy::too_many_arguments)]
async fn conclude(
    lt: &LoadTest,
    ctx: &Context,
    api: &Api<LoadTest>,
    st: LoadTestStatus,
    plan: &Plan,
    reports: &BTreeMap<u32, RunnerReport>,
    records: Vec<RunnerRecord>,
    ending: Ending,
    now: Timestamp,
) -> Result<Action, Error> {
    let merged = MergedRun::merge(reports.values())?;
    let seconds = match ending {
        Ending::Complete => plan.total_duration().as_secs_f64(),
        _ => merged.sealed as f64,
    };
    let (mut fresh, verdict, mut message) = build::conclude(lt, plan, &merged, seconds, ending, &records);
    if ending == Ending::StoppedEarly
        && let Some(why) = st.run.message.as_ref()
    {
        message = format!("{message} — {why}");
    }
    if let Some(record) = st.aborted_by.as_ref().filter(|_| ending == Ending::AbortRule) {
        message = format!(
            "aborted: `{}` held for {} second(s) in a row (observed {})",
            record.rule,
            record.observed.len(),
            record.observed.join(", ")
        );
    }
    fresh.run = st.run;
    fresh.stages = st.stages;
    fresh.start_level = st.start_level;
    fresh.load_starts_at = st.load_starts_at;
    fresh.target_url = st.target_url;
    fresh.aborted_by = st.aborted_by;
    fresh.run.phase = Some(match ending {
        Ending::Aborted | Ending::AbortRule => Phase::Aborted,
        Ending::StoppedEarly if lt.spec.load.preset != Some(crate::api::load::Preset::Capacity) => Phase::Aborted,
        Ending::RunnerTrouble => Phase::Failed,
        _ => Phase::Succeeded,
    });
    fresh.run.verdict = Some(verdict);
    fresh.run.message = Some(message.clone());
    fresh.run.finished_at = Some(Time(now));
    let generation = lt.meta().generation;
    conditions::refresh(&mut fresh.run, generation, now);
    // The report is written before the status that refers to it, from the same figures.
    let open = lt.spec.load.model == crate::api::load::LoadModel::Open;
    let rate = |from: u64, to: u64| open.then(|| plan.level_at(Duration::from_secs_f64((from + to) as f64 / 2.0)));
    let seconds = per_second(&merged.points, merged.sealed, &rate);
    fresh.run.report_ref = report::file(ctx, lt, &Report::of_load_test(lt, &fresh, &seconds)).await;
    write_status(api, &lt.name_any(), &fresh).await?;
    let note = match verdict {
        Verdict::Pass => Note::normal("Passed", message),
        Verdict::Inconclusive => Note::warning("Inconclusive", message),
        Verdict::Aborted => Note::warning("Aborted", message),
        Verdict::Fail => Note::warning("Failed", message),
        Verdict::Error => Note::warning("RunnerError", message),
    };
    publish(ctx, lt, &[note]).await;
    Ok(Action::await_change())
}

async fn finish_error(
    lt: &LoadTest,
    ctx: &Context,
    api: &Api<LoadTest>,
    mut st: LoadTestStatus,
    records: Vec<RunnerRecord>,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    st.runners = records;
    st.run.phase = Some(Phase::Failed);
    st.run.verdict = Some(Verdict::Error);
    st.run.message = Some(message.clone());
    st.run.finished_at = Some(Time(now));
    conditions::refresh(&mut st.run, lt.meta().generation, now);
    write_status(api, &lt.name_any(), &st).await?;
    publish(ctx, lt, &[Note::warning("RunnersNotStarted", message)]).await;
    Ok(Action::await_change())
}

/// A run that may not go on: Failed before it started, Aborted when it was running.
async fn refuse(
    lt: &LoadTest,
    ctx: &Context,
    api: &Api<LoadTest>,
    mut st: LoadTestStatus,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let verdict = if st.run.phase == Some(Phase::Running) { Verdict::Aborted } else { Verdict::Error };
    conditions::refuse(&mut st.run, verdict, reason, &message, lt.meta().generation, now);
    write_status(api, &lt.name_any(), &st).await?;
    publish(ctx, lt, &[Note::warning(reason, message)]).await;
    Ok(Action::await_change())
}

/// The reports of this run's runners by index. A report that cannot be read is logged and left
/// out: its runner then shows as not reported rather than failing the whole reconcile.
pub(crate) async fn read_reports(
    client: &kube::Client,
    ns: &str,
    selector: &str,
    lt: &LoadTest,
) -> Result<BTreeMap<u32, RunnerReport>, Error> {
    let maps = Api::<ConfigMap>::namespaced(client.clone(), ns).list(&ListParams::default().labels(selector)).await?;
    let mut out = BTreeMap::new();
    for cm in maps.items.iter().filter(|cm| build::owned_by(*cm, lt)) {
        let Some(bytes) = cm.binary_data.as_ref().and_then(|d| d.get(REPORT_KEY)) else { continue };
        match RunnerReport::decode(&bytes.0) {
            Ok(report) => {
                out.insert(report.runner, report);
            }
            Err(error) => tracing::warn!(configmap = %cm.name_any(), %error, "unreadable runner report"),
        }
    }
    Ok(out)
}

fn runner_records(n: u32, pods: &[Pod], reports: &BTreeMap<u32, RunnerReport>, crashed: &[u32]) -> Vec<RunnerRecord> {
    (0..n)
        .map(|index| {
            // The newest pod of this index (a replaced runner has an older, failed one).
            let pod = pods
                .iter()
                .filter(|p| pod_index(p) == Some(index))
                .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let report = reports.get(&index);
            let state = if crashed.contains(&index) {
                "Crashed".to_owned()
            } else if let Some(r) = report {
                format!("{:?}", r.state)
            } else {
                pod.map(pod_phase).filter(|p| *p == "Running").unwrap_or("Pending").to_owned()
            };
            RunnerRecord {
                index,
                pod: pod.map(ResourceExt::name_any),
                state,
                attempts: report.map(|r| r.attempt),
                sent: report.map(|r| r.total.counts.total),
                message: report.and_then(|r| {
                    let gaps: Vec<String> = r.gaps.iter().map(|(a, b)| format!("{a}s–{b}s")).collect();
                    match (&r.message, gaps.is_empty()) {
                        (m, true) => m.clone(),
                        (m, false) => Some(format!(
                            "{}not measured (runner starting late or restarting): {}",
                            m.as_ref().map_or(String::new(), |m| format!("{m}; ")),
                            gaps.join(", ")
                        )),
                    }
                }),
            }
        })
        .collect()
}

fn pod_index(pod: &Pod) -> Option<u32> {
    pod.annotations().get("batch.kubernetes.io/job-completion-index").and_then(|i| i.parse().ok())
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn describe_pods(pods: &[Pod]) -> String {
    if pods.is_empty() {
        return "no runner pod exists (is the Job's ServiceAccount or quota refusing them?)".into();
    }
    pods.iter().map(|p| format!("{} {}", p.name_any(), pod_phase(p))).collect::<Vec<_>>().join(", ")
}

fn job_failed(job: Option<&Job>) -> bool {
    job.and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

/// The Job's `failedIndexes` ("1,3-5") as a list.
fn parse_indexes(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_indexes_parse_like_the_job_controller_writes_them() {
        assert_eq!(parse_indexes("1,3-5"), vec![1, 3, 4, 5]);
        assert_eq!(parse_indexes(""), Vec::<u32>::new());
        assert_eq!(parse_indexes("0"), vec![0]);
    }
}
