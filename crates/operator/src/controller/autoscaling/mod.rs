//! The AutoscalingCheck controller: checks that the Deployment, its HPA and the metrics the HPA
//! needs are there (a clear refusal, never a hang), then conducts the check with
//! [`crate::trial::autoscale::watch`] in the cluster's world: the load as a child LoadTest, the
//! HPA's and the Deployment's counts sampled every second, the status written as it grows.

pub mod build;

use std::{ops::Range, sync::Arc};

use k8s_openapi::{
    api::{apps::v1::Deployment, autoscaling::v2::HorizontalPodAutoscaler},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{Api, Resource, ResourceExt, api::ListParams, runtime::controller::Action};

use super::{
    Context, Error, abort_requested, conditions, namespace_labels, publish, reconcile_with_finalizer, report,
    trial::{
        JudgedRun, RECHECK, build::end, children, children::Children, cleanup, conclude, finish, interrupted,
        load::ChildLoad, write_own_status,
    },
    write_status,
};
use crate::{
    api::{
        AutoscalingCheck, Phase, Verdict,
        trial::{AutoscalingCheckStatus, ReplicaSample},
    },
    domain::{Note, spec_check::SpecCheck},
    load::{
        Figures,
        stages::{Plan, expand},
    },
    report::{Record, Report},
    trial::{
        autoscale::{ScalingTarget, ScalingWorld, watch},
        drive::WorldError,
    },
};

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
    scaling: ScalingTarget,
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
        target.hpa, check.spec.target.deployment, target.scaling.min_replicas
    );
    st.run.message = Some(message.clone());
    let accepted = "spec valid, namespace opted in, Deployment, HPA and metrics found";
    conditions::accept(&mut st.run, accepted, check.meta().generation, now);
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
        scaling: ScalingTarget {
            plan,
            min_replicas: build::min_replicas(hpa),
            stabilization: build::scale_down_stabilization(hpa),
        },
        hpa: hpa.name_any(),
    }))
}

/// The run: load, samples, scale-down, judgement.
async fn run(check: AutoscalingCheck, target: Target, ctx: Arc<Context>, mut st: AutoscalingCheckStatus) {
    let generation = check.meta().generation;
    let watched = match ClusterScaling::new(&check, &target, &ctx) {
        Ok(mut world) => watch(&check.spec, &target.scaling, &mut world, &mut st).await,
        Err(e) => Err(e),
    };
    match watched {
        Ok(outcome) => {
            end(&mut st.run, outcome.verdict, outcome.message, Timestamp::now(), generation);
            let record = Record::in_cluster(&check.spec.load);
            let mut report =
                Report::of_judged(&check, &st.run, &st.judgement, outcome.load_start, &outcome.seconds, record);
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

/// The check's world in the cluster: the HPA's and the Deployment's counts, the load as a
/// child LoadTest whose runners report, the abort annotation, the status written as it goes.
struct ClusterScaling<'a> {
    check: &'a AutoscalingCheck,
    target: &'a Target,
    ctx: &'a Context,
    api: Api<AutoscalingCheck>,
    hpas: Api<HorizontalPodAutoscaler>,
    deployments: Api<Deployment>,
    kids: Children,
    load: Option<ChildLoad>,
}

impl<'a> ClusterScaling<'a> {
    fn new(check: &'a AutoscalingCheck, target: &'a Target, ctx: &'a Context) -> Result<Self, WorldError> {
        let ns = check.namespace().unwrap_or_default();
        Ok(ClusterScaling {
            check,
            target,
            ctx,
            api: Api::namespaced(ctx.client.clone(), &ns),
            hpas: Api::namespaced(ctx.client.clone(), &ns),
            deployments: Api::namespaced(ctx.client.clone(), &ns),
            kids: children(ctx, check).map_err(|e| WorldError(e.to_string()))?,
            load: None,
        })
    }

    fn load(&mut self) -> Result<&mut ChildLoad, WorldError> {
        self.load.as_mut().ok_or_else(|| WorldError("the load has not started".into()))
    }

    /// The rate the load asks for over seconds `[from, to)`.
    fn rate(&self) -> impl Fn(u64, u64) -> Option<f64> + use<'_, 'a> {
        let (plan, model) = (&self.target.scaling.plan, self.check.spec.load.model);
        move |from, to| plan.target_rate(model, from, to)
    }
}

impl ScalingWorld for ClusterScaling<'_> {
    async fn sample(&mut self) -> Result<ReplicaSample, WorldError> {
        let read = |what: &str, e: kube::Error| WorldError(format!("cannot read the {what}: {e}"));
        let hpa = self.hpas.get(&self.target.hpa).await.map_err(|e| read("HPA", e))?;
        let deployment =
            self.deployments.get(&self.check.spec.target.deployment).await.map_err(|e| read("Deployment", e))?;
        Ok(build::sample(&hpa, &deployment, Timestamp::now()))
    }

    async fn start_load(&mut self) -> Result<(Timestamp, Timestamp), WorldError> {
        let seconds = self.target.scaling.plan.total_duration().as_secs();
        let load = ChildLoad::start(&self.kids, self.check.spec.load.clone(), seconds).await?;
        let started = (load.starts_at, load.ends_at);
        self.load = Some(load);
        Ok(started)
    }

    async fn seconds(&mut self) -> Vec<Option<Figures>> {
        let name = self.check.name_any();
        let Ok(load) = self.load() else { return Vec::new() };
        if let Err(error) = load.read(false).await {
            // The abort rules look again on the next sample; the judgement reads afresh.
            tracing::warn!(check = %name, %error, "runner reports not read");
        }
        let Some(load) = &self.load else { return Vec::new() };
        load.per_second(&self.rate())
    }

    async fn stop_load(&mut self) -> Result<(), WorldError> {
        self.load()?.stop().await
    }

    async fn measured(&mut self) -> Result<Vec<Option<Figures>>, WorldError> {
        self.load()?.read(true).await?;
        let Some(load) = &self.load else { return Ok(Vec::new()) };
        Ok(load.per_second(&self.rate()))
    }

    async fn figures_over(&mut self, seconds: Range<u64>) -> Result<Option<Figures>, WorldError> {
        let Some(load) = &self.load else { return Ok(None) };
        load.figures_over(seconds, &self.rate())
    }

    /// The abort annotation, a deletion (or a new object of the same name), or the operator
    /// stopping. A failed read is not a stop.
    async fn stop_requested(&mut self) -> Option<String> {
        let stopped = self.ctx.trials.stopping().is_cancelled()
            || match self.api.get_opt(&self.check.name_any()).await {
                Ok(None) => true,
                Ok(Some(c)) => {
                    abort_requested(&c) || c.meta().deletion_timestamp.is_some() || c.uid() != self.check.uid()
                }
                Err(_) => false,
            };
        stopped.then(|| "the chaoslab.dev/abort annotation, a deletion or the operator's stop".to_owned())
    }

    async fn progressed(&mut self, st: &AutoscalingCheckStatus) {
        if let Err(error) = write_own_status(&self.api, self.check, st).await {
            tracing::warn!(check = %self.check.name_any(), %error, "the timeline was not written");
        }
    }
}
