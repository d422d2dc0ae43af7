//! The Drill controller: validates a Drill, then conducts it in the cluster with the one engine
//! of [`crate::trial`] (a task per running Drill, driving a [`world::ClusterWorld`]). Status is
//! the run's record: Running with each fault's window as it happens, then the verdict and the
//! judgement. A Drill whose operator restarted mid-run is not resumed: a run cannot be judged
//! from part of its measurements, so its children are ended and the verdict is Error.

pub mod build;
pub mod world;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{controller::Action, finalizer, finalizer::Event as FinalizerEvent},
};
use tokio::{sync::mpsc, task::JoinHandle};

use self::world::ClusterWorld;
use super::{
    Context, Error, FINALIZER, abort_requested, conditions, namespace_labels, namespace_of, publish, write_status,
};
use crate::{
    api::{
        Drill, Phase, Verdict,
        trial::{DrillStatus, FaultWindow},
    },
    domain::{Note, spec_check::SpecCheck},
    trial::{
        drive::{self, Milestone},
        plan::TrialPlan,
    },
};

/// The runs this operator conducts, by the Drill's UID. A Running Drill absent from here was
/// begun by an operator that is gone.
#[derive(Clone, Debug, Default)]
pub struct Runs(Arc<Mutex<HashMap<String, JoinHandle<()>>>>);

impl Runs {
    fn conducting(&self, uid: &str) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(uid).is_some_and(|h| !h.is_finished())
    }

    fn take(&self, uid: &str) -> Option<JoinHandle<()>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(uid)
    }

    fn insert(&self, uid: String, handle: JoinHandle<()>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, handle);
    }
}

/// How soon a Drill being conducted is looked at again (the task writes its status itself).
const RECHECK: Duration = Duration::from_secs(10);
/// The longest a deleted Drill waits for its conductor to revert its faults.
const CLEANUP_WAIT: Duration = Duration::from_secs(90);

pub async fn reconcile(drill: Arc<Drill>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started("Drill");
    let ns = namespace_of(drill.as_ref())?;
    let api: Api<Drill> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, drill, |event| async {
        match event {
            FinalizerEvent::Apply(drill) => apply(&drill, &ctx, &api, &ns).await,
            FinalizerEvent::Cleanup(drill) => cleanup(&drill, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// A deleted Drill: its conductor sees the deletion within a second and reverts what is active;
/// then every child still going is ended (the ServiceFaults restore their Services).
async fn cleanup(drill: &Drill, ctx: &Context) -> Result<Action, Error> {
    let uid = drill.uid().unwrap_or_default();
    if let Some(handle) = ctx.trials.take(&uid)
        && tokio::time::timeout(CLEANUP_WAIT, handle).await.is_err()
    {
        tracing::warn!(drill = %drill.name_any(), "the conductor did not end in time; ending the children");
    }
    let world = ClusterWorld::new(ctx.client.clone(), drill.clone()).map_err(|e| Error::Report(e.0))?;
    world.end_children().await.map_err(|e| Error::Report(e.0))?;
    Ok(Action::await_change())
}

async fn apply(drill: &Drill, ctx: &Arc<Context>, api: &Api<Drill>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let status = drill.status.clone().unwrap_or_default();
    let phase = status.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let uid = drill.uid().unwrap_or_default();
    if phase == Phase::Running {
        if ctx.trials.conducting(&uid) {
            return Ok(Action::requeue(RECHECK));
        }
        return interrupted(drill, ctx, api, status, now).await;
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
        Err((reason, message)) => return finish(drill, ctx, api, status, Verdict::Error, reason, message, now).await,
    };
    if drill.spec.dry_run {
        let message = format!("dry run: would run {}; nothing was done, so nothing was proven", describe(&plan));
        return finish(drill, ctx, api, status, Verdict::Inconclusive, "DryRun", message, now).await;
    }
    if abort_requested(drill) {
        let message = "aborted before it started: nothing was done".to_owned();
        return finish(drill, ctx, api, status, Verdict::Aborted, "Aborted", message, now).await;
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
    let uid = drill.uid().unwrap_or_default();
    let api: Api<Drill> = Api::namespaced(ctx.client.clone(), drill.namespace().as_deref().unwrap_or_default());
    let (told, heard) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(report(drill.clone(), Arc::clone(&ctx), api.clone(), status.clone(), heard));
    let outcome = match ClusterWorld::new(ctx.client.clone(), drill.clone()) {
        Ok(mut world) => {
            let outcome = drive::conduct(&plan, &mut world, |m| {
                let _ = told.send(m);
            })
            .await;
            if outcome.is_err()
                && let Err(error) = world.end_children().await
            {
                tracing::warn!(drill = %name, %error, "ending the children of a failed run");
            }
            outcome
        }
        Err(e) => Err(e),
    };
    drop(told);
    let status = reporter.await.unwrap_or(status);
    let now = Timestamp::now();
    let last = match outcome {
        Ok(outcome) => build::finished(status, outcome, drill.meta().generation),
        Err(e) => build::ended(status, Verdict::Error, e.0, now, drill.meta().generation),
    };
    let verdict = last.run.verdict.unwrap_or(Verdict::Error);
    let message = last.run.message.clone().unwrap_or_default();
    for attempt in 1..=5u32 {
        match write_status(&api, &name, &last).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(drill = %name, attempt, %error, "the verdict could not be written; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let note = if matches!(verdict, Verdict::Pass) {
        Note::normal("Verdict", format!("{verdict:?}: {message}"))
    } else {
        Note::warning("Verdict", format!("{verdict:?}: {message}"))
    };
    publish(ctx.as_ref(), &drill, &[note]).await;
    tracing::info!(drill = %name, ?verdict, %message, "drill judged");
    ctx.trials.take(&uid);
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
        if let Err(error) = write_status(&api, &name, &status).await {
            tracing::warn!(drill = %name, %error, "progress not written");
        }
        publish(ctx.as_ref(), &drill, &[note]).await;
    }
    status
}

/// A Running Drill whose conductor is gone (the operator restarted): every child still going is
/// ended, and the verdict says why.
async fn interrupted(
    drill: &Drill,
    ctx: &Context,
    api: &Api<Drill>,
    status: DrillStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let world = ClusterWorld::new(ctx.client.clone(), drill.clone()).map_err(|e| Error::Report(e.0))?;
    world.end_children().await.map_err(|e| Error::Report(e.0))?;
    let message = "interrupted: the operator restarted during the run, and a run is not judged from part of its \
                   measurements; every fault still active was ended (its ServiceFault or PodKill aborted, the \
                   Service restored) and the load stopped. Delete and apply the Drill again to run it again."
        .to_owned();
    let last = build::ended(status, Verdict::Error, message.clone(), now, drill.meta().generation);
    write_status(api, &drill.name_any(), &last).await?;
    publish(ctx, drill, &[Note::warning("Interrupted", message)]).await;
    Ok(Action::await_change())
}

/// Ends a Drill that never ran: refused, a dry run, or aborted before its start.
#[allow(clippy::too_many_arguments)]
async fn finish(
    drill: &Drill,
    ctx: &Context,
    api: &Api<Drill>,
    status: DrillStatus,
    verdict: Verdict,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = drill.meta().generation;
    let mut st = build::ended(status, verdict, message.clone(), now, generation);
    let accepted = verdict != Verdict::Error;
    conditions::set(&mut st.run.conditions, conditions::ACCEPTED, accepted, reason, &message, generation, now);
    write_status(api, &drill.name_any(), &st).await?;
    let note = if accepted { Note::normal(reason, message) } else { Note::warning(reason, message) };
    publish(ctx, drill, &[note]).await;
    Ok(Action::await_change())
}
