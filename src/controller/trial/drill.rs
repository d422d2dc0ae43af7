//! The Drill controller: validates a Drill, then conducts it in the cluster with the one engine
//! of [`crate::trial`] (a task per running Drill, driving a [`ClusterWorld`]). Status is the
//! run's record: Running with each fault's window as it happens, then the verdict and the
//! judgement.

use std::sync::Arc;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{controller::Action, finalizer, finalizer::Event as FinalizerEvent},
};
use tokio::sync::mpsc;

use super::{
    RECHECK, build, build::Owner, children::Children, cleanup, conclude, finish, interrupted, world::ClusterWorld,
    write_own_status,
};
use crate::{
    api::{
        Drill, Phase, Verdict,
        trial::{DrillStatus, FaultWindow},
    },
    controller::{
        Context, Error, FINALIZER, abort_requested, conditions, namespace_labels, namespace_of, publish, write_status,
    },
    domain::{Note, spec_check::SpecCheck},
    trial::{
        drive::{self, Milestone},
        plan::TrialPlan,
    },
};

pub async fn reconcile(drill: Arc<Drill>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started("Drill");
    let ns = namespace_of(drill.as_ref())?;
    let api: Api<Drill> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, drill, |event| async {
        match event {
            FinalizerEvent::Apply(drill) => apply(&drill, &ctx, &api, &ns).await,
            FinalizerEvent::Cleanup(drill) => cleanup(drill.as_ref(), &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(drill: &Drill, ctx: &Arc<Context>, api: &Api<Drill>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let status = drill.status.clone().unwrap_or_default();
    let phase = status.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let uid = drill.uid().unwrap_or_default();
    // A task conducts it (a stale cached Pending object must not start a second one).
    if ctx.trials.conducting(&uid) {
        return Ok(Action::requeue(RECHECK));
    }
    if phase == Phase::Running {
        return interrupted(drill, ctx, api, now).await;
    }
    // Validate: the namespace guard first (a refusal must never act), then the spec and the plan.
    let labels = namespace_labels(&ctx.client, ns).await?;
    let checked = ctx
        .guard
        .check(ns, &labels)
        .map_err(|r| (r.reason(), r.to_string()))
        .and_then(|()| drill.check_spec().map_err(|m| ("InvalidSpec", m)))
        .and_then(|()| TrialPlan::drill(&drill.spec).map_err(|e| ("InvalidSpec", format!("spec.{e}"))));
    let plan = match checked {
        Ok(plan) => plan,
        Err((reason, message)) => return finish(drill, ctx, api, Verdict::Error, reason, message, now).await,
    };
    if drill.spec.dry_run {
        let message = format!("dry run: would run {}; nothing was done, so nothing was proven", describe(&plan));
        return finish(drill, ctx, api, Verdict::Inconclusive, "DryRun", message, now).await;
    }
    if abort_requested(drill) {
        let message = "aborted before it started: nothing was done".to_owned();
        return finish(drill, ctx, api, Verdict::Aborted, "Aborted", message, now).await;
    }
    let mut st = status;
    st.run.phase = Some(Phase::Running);
    st.run.started_at = Some(Time(now));
    st.run.message = Some(format!("starting {}; the load's runners are starting", describe(&plan)));
    st.faults = plan.faults.iter().map(|f| FaultWindow::pending(f.name())).collect();
    let generation = drill.meta().generation;
    let accepted = "spec valid and namespace opted in";
    conditions::set(&mut st.run.conditions, conditions::ACCEPTED, true, "Accepted", accepted, generation, now);
    conditions::refresh(&mut st.run, generation, now);
    write_status(api, &drill.name_any(), &st).await?;
    publish(ctx, drill, &[Note::normal("Started", format!("conducting {}", describe(&plan)))]).await;
    let handle = tokio::spawn(conduct(drill.clone(), plan, Arc::clone(ctx), st));
    ctx.trials.insert(uid, handle);
    Ok(Action::requeue(RECHECK))
}

/// `5s warmup, 10s baseline, 30s inject (2 faults), 10s recover at 50/s`
fn describe(plan: &TrialPlan) -> String {
    let phases: Vec<String> =
        plan.timeline.windows.iter().map(|w| format!("{}s {}", w.end - w.start, w.name.as_str())).collect();
    let level = match (plan.load.rate, plan.load.vus) {
        (Some(rate), _) => format!("{rate} req/s"),
        (None, Some(vus)) => format!("{vus} VUs"),
        _ => "the stages' load".to_owned(),
    };
    format!("{} with {} fault(s) under {level}", phases.join(", "), plan.faults.len())
}

/// The run, from the load's start to the verdict in status.
async fn conduct(drill: Drill, plan: TrialPlan, ctx: Arc<Context>, status: DrillStatus) {
    let name = drill.name_any();
    let api: Api<Drill> = Api::namespaced(ctx.client.clone(), drill.namespace().as_deref().unwrap_or_default());
    let (told, heard) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(report(drill.clone(), Arc::clone(&ctx), api.clone(), status.clone(), heard));
    let outcome = match Owner::of(&drill) {
        Ok(owner) => {
            let children = Children::new(ctx.client.clone(), owner);
            let mut world = ClusterWorld::new(children.clone(), ctx.trials.stopping().clone());
            let outcome = drive::conduct(&plan, &mut world, |m| {
                let _ = told.send(m);
            })
            .await;
            // Whatever the outcome, nothing of the run goes on after it: a fault whose clearing
            // failed, or whose child outlived the conductor's own deadline, is ended here too.
            if let Err(error) = children.end_all().await {
                tracing::warn!(drill = %name, %error, "ending the children of the run");
            }
            outcome
        }
        Err(e) => Err(drive::WorldError(e)),
    };
    drop(told);
    let status = reporter.await.unwrap_or(status);
    let now = Timestamp::now();
    let last = match outcome {
        Ok(outcome) => build::finished(status, outcome, drill.meta().generation),
        Err(e) => {
            let mut last = status;
            build::end(&mut last.run, Verdict::Error, e.0, now, drill.meta().generation);
            last
        }
    };
    conclude(&drill, &ctx, last).await;
}

/// Writes each milestone to status and as an Event while the run lasts; the status it ends
/// with is where the verdict is added.
async fn report(
    drill: Drill,
    ctx: Arc<Context>,
    api: Api<Drill>,
    mut status: DrillStatus,
    mut heard: mpsc::UnboundedReceiver<Milestone>,
) -> DrillStatus {
    let name = drill.name_any();
    while let Some(milestone) = heard.recv().await {
        let note = match &milestone {
            Milestone::LoadStarted { at } => {
                status.run.message = Some(format!("the load started at {at}"));
                Note::normal("LoadStarted", format!("the load started at {at}"))
            }
            Milestone::Injected { fault, at } => {
                if let Some(w) = status.faults.iter_mut().find(|w| &w.name == fault) {
                    w.started_at = Some(Time(*at));
                }
                status.run.message = Some(format!("fault {fault} injected at {at}"));
                Note::normal("FaultInjected", format!("fault {fault} injected at {at}"))
            }
            Milestone::Reverted { fault, at } => {
                if let Some(w) = status.faults.iter_mut().find(|w| &w.name == fault) {
                    w.reverted_at = Some(Time(*at));
                }
                status.run.message = Some(format!("fault {fault} reverted at {at}"));
                Note::normal("FaultReverted", format!("fault {fault} reverted at {at}"))
            }
            Milestone::Aborted { rule, observed } => {
                let message = if observed.is_empty() {
                    format!("aborting: {rule}")
                } else {
                    format!("aborting: `{rule}` fired (observed {})", observed.join(", "))
                };
                status.run.message = Some(message.clone());
                Note::warning("Aborting", message)
            }
            Milestone::LoadStopped { at } => {
                status.run.message = Some(format!("the load stopped at {at}; judging after cooldown"));
                Note::normal("LoadStopped", format!("the load stopped at {at}"))
            }
        };
        if let Err(error) = write_own_status(&api, &drill, &status).await {
            tracing::warn!(drill = %name, %error, "progress not written");
        }
        publish(ctx.as_ref(), &drill, &[note]).await;
    }
    status
}
