//! The AutoscalingCheck controller: checks that the Deployment, its HPA and the metrics the HPA
//! needs are there (a clear refusal, never a hang), then runs the load as a child LoadTest,
//! samples desired and ready replicas every second into a bounded timeline, follows scale-down
//! after the load, and judges with [`crate::trial::scaling`].

pub mod build;

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{Api, Resource, ResourceExt, api::ListParams, runtime::controller::Action};
use tokio::time::{Instant, sleep};

use super::{
    Context, Error, abort_requested, conditions, namespace_labels, publish, reconcile_with_finalizer, report,
    trial::{
        JudgedRun, RECHECK, build::end, children, cleanup, conclude, finish, interrupted, load::ChildLoad,
        write_own_status,
    },
    write_status,
};
use crate::{
    api::{
        AutoscalingCheck, Phase, Verdict,
        figures::AbortRecord,
        load::LoadModel,
        trial::{AutoscalingCheckStatus, ReplicaSample},
    },
    domain::{Note, spec_check::SpecCheck},
    load::{
        Figures,
        stages::{Plan, expand},
    },
    report::{Record, Report},
    trial::{
        conduct::fired,
        drive::{WorldError, at},
        judge::verdict_of,
        scaling::{self, ScalingRun},
    },
};

/// How often replicas are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Replica samples that may fail in a row (transient API errors) before the check ends in Error.
const MAX_FAILED_READS: u32 = 30;
/// How long scale-down is watched when the spec does not say (the HPA's default window is 5m).
const DEFAULT_OBSERVE_SCALE_DOWN: Duration = Duration::from_secs(360);

pub async fn reconcile(check: Arc<AutoscalingCheck>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        check,
        &ctx,
        async |check: Arc<AutoscalingCheck>, api: &Api<AutoscalingCheck>, ns: &str| apply(&check, &ctx, api, ns).await,
        async |check: Arc<AutoscalingCheck>, _api: &Api<AutoscalingCheck>, _ns: &str| {
            cleanup(check.as_ref(), &ctx).await
        },
    )
    .await
}

/// What the check found before it started.
struct Target {
    plan: Plan,
    min_replicas: i32,
    stabilization: Duration,
    hpa: String,
}

async fn apply(
    check: &AutoscalingCheck,
    ctx: &Arc<Context>,
    api: &Api<AutoscalingCheck>,
    ns: &str,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let mut st = check.current();
    let phase = st.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    // A task conducts it (a stale cached Pending object must not start a second one).
    if ctx.trials.conducting(&check.uid().unwrap_or_default()) {
        return Ok(Action::requeue(RECHECK));
    }
    if phase == Phase::Running {
        return interrupted(check, ctx, api, now).await;
    }
    let labels = namespace_labels(&ctx.client, ns).await?;
    let checked = ctx
        .guard
        .check(ns, &labels)
        .map_err(|r| (r.reason(), r.to_string()))
        .and_then(|()| check.check_spec().map_err(|m| ("InvalidSpec", m)))
        .and_then(|()| expand(&check.spec.load, None).map_err(|e| ("InvalidSpec", format!("spec.{e}"))));
    let plan = match checked {
        Ok(plan) => plan,
        Err((reason, message)) => return finish(check, ctx, api, Verdict::Error, reason, message, now).await,
    };
    let target = match preflight(check, ctx, ns, plan).await? {
        Ok(target) => target,
        Err((reason, message)) => return finish(check, ctx, api, Verdict::Error, reason, message, now).await,
    };
    if abort_requested(check) {
        let message = "aborted before it started: nothing was done".to_owned();
        return finish(check, ctx, api, Verdict::Aborted, "Aborted", message, now).await;
    }
    st.run.phase = Some(Phase::Running);
    st.run.started_at = Some(Time(now));
    let message = format!(
        "the load's runners are starting; watching HPA {} scale Deployment {} (min {} replicas)",
        target.hpa, check.spec.target.deployment, target.min_replicas
    );
    st.run.message = Some(message.clone());
    let generation = check.meta().generation;
    let accepted = "spec valid, namespace opted in, Deployment, HPA and metrics found";
    conditions::set(&mut st.run.conditions, conditions::ACCEPTED, true, "Accepted", accepted, generation, now);
    conditions::refresh(&mut st.run, generation, now);
    write_status(api, &check.name_any(), &st).await?;
    publish(ctx, check, &[Note::normal("Started", message)]).await;
    let handle = tokio::spawn(run(check.clone(), target, Arc::clone(ctx), st));
    ctx.trials.insert(check.uid().unwrap_or_default(), handle);
    Ok(Action::requeue(RECHECK))
}

/// The Deployment, its HPA and the metrics API the HPA reads: each missing one is a refusal
/// that names it.
async fn preflight(
    check: &AutoscalingCheck,
    ctx: &Context,
    ns: &str,
    plan: Plan,
) -> Result<Result<Target, (&'static str, String)>, Error> {
    let target = &check.spec.target;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    if deployments.get_opt(&target.deployment).await?.is_none() {
        let message = format!("spec.target.deployment: no Deployment named {:?} in namespace {ns}", target.deployment);
        return Ok(Err(("TargetNotFound", message)));
    }
    let hpas = Api::<HorizontalPodAutoscaler>::namespaced(ctx.client.clone(), ns).list(&ListParams::default()).await?;
    let hpa = match build::hpa_for(target, &hpas.items) {
        Ok(hpa) => hpa,
        Err(message) => return Ok(Err(("NoAutoscaler", message))),
    };
    if build::needs_resource_metrics(hpa) {
        let groups = ctx.client.list_api_groups().await?;
        if !groups.groups.iter().any(|g| g.name == "metrics.k8s.io") {
            let message = format!(
                "the HPA {} scales on CPU or memory, but this cluster serves no resource metrics API (metrics.k8s.io): install metrics-server",
                hpa.name_any()
            );
            return Ok(Err(("NoMetricsAPI", message)));
        }
    }
    Ok(Ok(Target {
        plan,
        min_replicas: build::min_replicas(hpa),
        stabilization: build::scale_down_stabilization(hpa),
        hpa: hpa.name_any(),
    }))
}

/// The run: load, samples, scale-down, judgement.
async fn run(check: AutoscalingCheck, target: Target, ctx: Arc<Context>, mut st: AutoscalingCheckStatus) {
    let generation = check.meta().generation;
    match sample_the_run(&check, &target, &ctx, &mut st).await {
        Ok(measured) => {
            let record = Record::in_cluster(&check.spec.load);
            let mut report =
                Report::of_judged(&check, &st.run, &st.judgement, measured.load_start, &measured.seconds, record);
            report.replicas = st.timeline.clone();
            st.run.report_ref = report::file(&ctx, &check, &report).await;
        }
        Err(e) => {
            if let Ok(children) = children(&ctx, &check)
                && let Err(error) = children.end_all().await
            {
                tracing::warn!(check = %check.name_any(), %error, "ending the children of a failed check");
            }
            end(&mut st.run, Verdict::Error, e.0, Timestamp::now(), generation);
        }
    }
    conclude(&check, &ctx, st).await;
}

/// Samples the replicas every second under the load and while scale-down is watched, then
/// judges the run into `st`.
async fn sample_the_run(
    check: &AutoscalingCheck,
    target: &Target,
    ctx: &Context,
    st: &mut AutoscalingCheckStatus,
) -> Result<Measured, WorldError> {
    let sampled = sample(check, target, ctx, st).await?;
    judge(check, target, st, sampled)
}

/// What sampling the run left to judge.
struct Sampled {
    load: ChildLoad,
    load_start: Timestamp,
    /// When the load ended (its plan's end, or earlier on an abort).
    load_end: Timestamp,
    /// When watching the scale-down ended.
    observed_until: Timestamp,
    aborted: Option<AbortRecord>,
}

/// The target rate of seconds `from..to` of the load (open model), from its plan.
fn planned_rate(target: &Target, open: bool) -> impl Fn(u64, u64) -> Option<f64> + '_ {
    move |from: u64, to: u64| open.then(|| target.plan.level_at(Duration::from_secs_f64((from + to) as f64 / 2.0)))
}

/// Starts the load and records the replica timeline into `st` until the load has stopped and
/// the count is back at the minimum (or never went up, or the watch is over, or a person
/// stopped the run).
async fn sample(
    check: &AutoscalingCheck,
    target: &Target,
    ctx: &Context,
    st: &mut AutoscalingCheckStatus,
) -> Result<Sampled, WorldError> {
    let name = check.name_any();
    let ns = check.namespace().unwrap_or_default();
    let api: Api<AutoscalingCheck> = Api::namespaced(ctx.client.clone(), &ns);
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(ctx.client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let kids = children(ctx, check).map_err(|e| WorldError(e.to_string()))?;
    let read = |what: &str, e: kube::Error| WorldError(format!("cannot read the {what}: {e}"));
    let take_sample = || async {
        let hpa = hpas.get(&target.hpa).await.map_err(|e| read("HPA", e))?;
        let deployment = deployments.get(&check.spec.target.deployment).await.map_err(|e| read("Deployment", e))?;
        Ok::<_, WorldError>(build::sample(&hpa, &deployment, Timestamp::now()))
    };
    // The count before the load: what a scale-up is measured from.
    build::record(&mut st.timeline, take_sample().await?);
    let seconds = target.plan.total_duration().as_secs();
    let mut load = ChildLoad::start(&kids, check.spec.load.clone(), seconds).await?;
    let load_start = load.starts_at;
    let rate = planned_rate(target, check.spec.load.model == LoadModel::Open);
    let observe = check.spec.observe_scale_down_for.map_or(DEFAULT_OBSERVE_SCALE_DOWN, |d| d.as_std());
    let mut load_end = load.ends_at;
    let mut observed_until = at(load_end, observe);
    let mut aborted: Option<AbortRecord> = None;
    let mut load_stopped = false;
    let mut scaled_up = false;
    let mut written = st.timeline.len();
    let mut full = false;
    let mut failed_reads = 0u32;
    loop {
        let tick = Instant::now();
        // A sample that cannot be read (a transient API error) is skipped; many in a row end
        // the check.
        let sample = match take_sample().await {
            Ok(sample) => {
                failed_reads = 0;
                sample
            }
            Err(error) if failed_reads < MAX_FAILED_READS => {
                failed_reads += 1;
                tracing::warn!(check = %name, %error, failed_reads, "a replica sample was not read");
                sleep(SAMPLE_EVERY.saturating_sub(tick.elapsed())).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let now = sample.at.0;
        let first = st.timeline.first().map_or(sample.desired, |s| s.desired);
        scaled_up |= sample.desired > first;
        let back_down = scaled_up && sample.desired <= target.min_replicas;
        if !full && !build::record(&mut st.timeline, sample) {
            tracing::warn!(check = %name, "the replica timeline is full; no more samples are kept");
            full = true;
        }
        // A person's stop, under load or while scale-down is watched.
        if aborted.is_none() && person_stopped(check, &api, ctx).await {
            let rule = "the chaoslab.dev/abort annotation, a deletion or the operator's stop".to_owned();
            aborted = Some(AbortRecord { rule, observed: Vec::new(), at: Time(now) });
        }
        if !load_stopped {
            if let Err(error) = load.read(false).await {
                // The abort rules look again on the next sample; the judgement reads afresh.
                tracing::warn!(check = %name, %error, "runner reports not read");
            }
            if aborted.is_none() {
                aborted = fired(&check.spec.abort_when, &load.per_second(&rate), now);
            }
            if aborted.is_some() || now >= load.ends_at {
                load.stop().await?;
                load_stopped = true;
                load_end = load_end.min(now);
                observed_until = at(load_end, observe);
            }
        }
        if st.timeline.len() != written {
            written = st.timeline.len();
            st.run.message = Some(progress(st.timeline.last(), load_start, load_stopped));
            if let Err(error) = write_own_status(&api, check, &*st).await {
                tracing::warn!(check = %name, %error, "the timeline was not written");
            }
        }
        // After the load: until the count is back at the minimum, or never went up, or the
        // watch is over, or a person stopped it.
        if load_stopped && (back_down || !scaled_up || aborted.is_some() || now >= observed_until) {
            observed_until = observed_until.min(now);
            break;
        }
        sleep(SAMPLE_EVERY.saturating_sub(tick.elapsed())).await;
    }
    load.read(true).await?;
    Ok(Sampled { load, load_start, load_end, observed_until, aborted })
}

/// Whether a person stopped the check: the abort annotation, a deletion (or a new object of the
/// same name), or the operator stopping. A failed read is not a stop.
async fn person_stopped(check: &AutoscalingCheck, api: &Api<AutoscalingCheck>, ctx: &Context) -> bool {
    ctx.trials.stopping().is_cancelled()
        || match api.get_opt(&check.name_any()).await {
            Ok(None) => true,
            Ok(Some(c)) => abort_requested(&c) || c.meta().deletion_timestamp.is_some() || c.uid() != check.uid(),
            Err(_) => false,
        }
}

/// Judges the sampled run: the scaling figures and expectations, the verdict, into `st`.
fn judge(
    check: &AutoscalingCheck,
    target: &Target,
    st: &mut AutoscalingCheckStatus,
    sampled: Sampled,
) -> Result<Measured, WorldError> {
    let Sampled { load, load_start, load_end, observed_until, aborted } = sampled;
    let rate = planned_rate(target, check.spec.load.model == LoadModel::Open);
    let steady = build::steady_windows(&target.plan, load_start)
        .into_iter()
        .map(|(from, to)| (from, to.min(load_end)))
        .filter(|(from, to)| from < to)
        .collect();
    let scaling_run = ScalingRun {
        load_start,
        load_end,
        observed_until,
        min_replicas: target.min_replicas,
        scale_down_stabilization: target.stabilization,
        steady,
    };
    let judged = scaling::figures(&st.timeline, &scaling_run);
    let (from, to) = judged.scale_up_window;
    let seconds_of = |t: Timestamp| Duration::try_from(t.duration_since(load_start)).unwrap_or_default().as_secs();
    let scale_up_load = load.figures_over(seconds_of(from)..seconds_of(to).max(seconds_of(from) + 1), &rate)?;
    let judged = scaling::judge(judged, &scaling_run, &check.spec.expect, scale_up_load.as_ref());
    build::figures_into(st, &judged);
    let (mut verdict, mut message) = verdict_of(&judged.expectations, &[]);
    if let Some(record) = &aborted {
        verdict = Verdict::Aborted;
        message = if record.observed.is_empty() {
            format!("aborted by {}", record.rule)
        } else {
            format!("aborted by the rule `{}` (observed {})", record.rule, record.observed.join(", "))
        };
    }
    st.judgement.expectations = judged.expectations;
    st.judgement.aborted_by = aborted;
    end(&mut st.run, verdict, message, Timestamp::now(), check.meta().generation);
    Ok(Measured { load_start, seconds: load.per_second(&rate) })
}

/// What the load measured, for the report.
struct Measured {
    load_start: Timestamp,
    seconds: Vec<Option<Figures>>,
}

/// `3 desired, 2 ready, 42s into the load`
fn progress(last: Option<&ReplicaSample>, load_start: Timestamp, load_stopped: bool) -> String {
    let (desired, ready) = last.map_or((0, 0), |s| (s.desired, s.ready));
    let secs = Duration::try_from(Timestamp::now().duration_since(load_start)).unwrap_or_default().as_secs();
    let when = if load_stopped { "watching scale-down" } else { "under load" };
    format!("{desired} desired, {ready} ready, {secs}s after the load's start ({when})")
}
