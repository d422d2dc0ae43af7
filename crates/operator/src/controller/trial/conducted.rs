//! The controller of the conducted kinds, Drill and CircuitBreakerTrial: validates a run, then
//! conducts it in the cluster with the one engine of [`crate::trial`] (a task per running run,
//! driving a [`ClusterWorld`]). Status is the run's record: Running with each fault's window as
//! it happens, then the verdict and the judgement.

use std::sync::Arc;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Api, ResourceExt, runtime::controller::Action};
use tokio::sync::mpsc;

use super::{
    ConductedRun, RECHECK, build, build::Owner, children::Children, cleanup, conclude, finish, interrupted,
    world::ClusterWorld, write_own_status,
};
use crate::{
    api::{Phase, Verdict, figures::PhaseName, trial::FaultWindow},
    controller::{
        Context, Error, abort_requested, conditions, namespace_labels, publish, reconcile_with_finalizer, report,
        write_status,
    },
    domain::Note,
    report::{Record, Report},
    trial::{
        drive::{self, Milestone, World as _},
        plan::TrialPlan,
        timeline::Window,
    },
};

pub async fn reconcile<K: ConductedRun>(drill: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    reconcile_with_finalizer(
        drill,
        &ctx,
        async |drill: Arc<K>, api: &Api<K>, ns: &str| apply(drill.as_ref(), &ctx, api, ns).await,
        async |drill: Arc<K>, _api: &Api<K>, _ns: &str| cleanup(drill.as_ref(), &ctx).await,
    )
    .await
}

async fn apply<K: ConductedRun>(drill: &K, ctx: &Arc<Context>, api: &Api<K>, ns: &str) -> Result<Action, Error> {
    let now = Timestamp::now();
    let mut status = drill.current();
    let phase = K::run_of(&mut status).phase.unwrap_or_default();
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
        .and_then(|()| drill.plan().map_err(|e| ("InvalidSpec", format!("spec.{e}"))));
    let plan = match checked {
        Ok(plan) => plan,
        Err((reason, message)) => return finish(drill, ctx, api, Verdict::Error, reason, message, now).await,
    };
    if drill.dry_run() {
        let message = format!("dry run: would run {}; nothing was done, so nothing was proven", describe(&plan));
        return finish(drill, ctx, api, Verdict::Inconclusive, "DryRun", message, now).await;
    }
    if abort_requested(drill) {
        let message = "aborted before it started: nothing was done".to_owned();
        return finish(drill, ctx, api, Verdict::Aborted, "Aborted", message, now).await;
    }
    let mut st = status;
    if let Some(windows) = K::windows_of(&mut st) {
        *windows = plan.faults.iter().map(|f| FaultWindow::pending(f.name())).collect();
    }
    let run = K::run_of(&mut st);
    run.phase = Some(Phase::Running);
    run.started_at = Some(Time(now));
    run.message = Some(format!("starting {}; the load's runners are starting", describe(&plan)));
    let generation = drill.meta().generation;
    let accepted = "spec valid and namespace opted in";
    conditions::set(&mut run.conditions, conditions::ACCEPTED, true, "Accepted", accepted, generation, now);
    conditions::refresh(run, generation, now);
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
async fn conduct<K: ConductedRun>(drill: K, plan: TrialPlan, ctx: Arc<Context>, status: K::Status) {
    let name = drill.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), drill.namespace().as_deref().unwrap_or_default());
    let (told, heard) = mpsc::unbounded_channel();
    let reporter = tokio::spawn(follow(
        drill.clone(),
        Arc::clone(&ctx),
        api.clone(),
        status.clone(),
        heard,
        plan.timeline.windows.clone(),
    ));
    let (outcome, seconds) = match Owner::of(&drill) {
        Ok(owner) => {
            let children = Children::new(ctx.client.clone(), owner);
            let mut world = ClusterWorld::<K>::new(children.clone(), ctx.trials.stopping().clone());
            let outcome = drive::conduct(&plan, &mut world, |m| {
                let _ = told.send(m);
            })
            .await;
            // Whatever the outcome, nothing of the run goes on after it: a fault whose clearing
            // failed, or whose child outlived the conductor's own deadline, is ended here too.
            if let Err(error) = children.end_all().await {
                tracing::warn!(drill = %name, %error, "ending the children of the run");
            }
            let seconds = world.seconds().await;
            (outcome, seconds)
        }
        Err(e) => (Err(drive::WorldError(e)), Vec::new()),
    };
    drop(told);
    let status = reporter.await.unwrap_or(status);
    let now = Timestamp::now();
    let mut last = status;
    match outcome {
        Ok(outcome) => {
            build::end(
                K::run_of(&mut last),
                outcome.verdict,
                outcome.message.clone(),
                outcome.finished_at,
                drill.meta().generation,
            );
            let mut report = Report::of_trial(K::KIND, &name, &outcome, &seconds, Record::in_cluster(&plan.load));
            report.namespace = drill.namespace();
            K::run_of(&mut last).report_ref = report::file(&ctx, &drill, &report).await;
            K::record(&mut last, outcome);
        }
        Err(e) => build::end(K::run_of(&mut last), Verdict::Error, e.0, now, drill.meta().generation),
    }
    conclude(&drill, &ctx, last).await;
}

/// Writes each milestone to status and as an Event while the run lasts; the status it ends
/// with is where the verdict is added.
async fn follow<K: ConductedRun>(
    drill: K,
    ctx: Arc<Context>,
    api: Api<K>,
    mut status: K::Status,
    mut heard: mpsc::UnboundedReceiver<Milestone>,
    phases: Vec<Window>,
) -> K::Status {
    let name = drill.name_any();
    let mut announcer: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(milestone) = heard.recv().await {
        let note = match &milestone {
            Milestone::LoadStarted { at } => {
                announcer = Some(tokio::spawn(announce_phases(drill.clone(), Arc::clone(&ctx), phases.clone(), *at)));
                K::run_of(&mut status).message = Some(format!("the load started at {at}"));
                Note::normal("LoadStarted", format!("the load started at {at}"))
            }
            Milestone::Injected { fault, at } => {
                if let Some(w) = K::windows_of(&mut status).and_then(|ws| ws.iter_mut().find(|w| &w.name == fault)) {
                    w.started_at = Some(Time(*at));
                }
                K::run_of(&mut status).message = Some(format!("fault {fault} injected at {at}"));
                Note::normal("FaultInjected", format!("fault {fault} injected at {at}")).about(fault.clone())
            }
            Milestone::Reverted { fault, at } => {
                if let Some(w) = K::windows_of(&mut status).and_then(|ws| ws.iter_mut().find(|w| &w.name == fault)) {
                    w.reverted_at = Some(Time(*at));
                }
                K::run_of(&mut status).message = Some(format!("fault {fault} reverted at {at}"));
                Note::normal("FaultReverted", format!("fault {fault} reverted at {at}")).about(fault.clone())
            }
            Milestone::Aborted { rule, observed } => {
                let message = if observed.is_empty() {
                    format!("aborting: {rule}")
                } else {
                    format!("aborting: `{rule}` fired (observed {})", observed.join(", "))
                };
                K::run_of(&mut status).message = Some(message.clone());
                Note::warning("Aborting", message)
            }
            Milestone::LoadStopped { at } => {
                K::run_of(&mut status).message = Some(format!("the load stopped at {at}; judging after cooldown"));
                Note::normal("LoadStopped", format!("the load stopped at {at}"))
            }
        };
        if let Err(error) = write_own_status(&api, &drill, &status).await {
            tracing::warn!(drill = %name, %error, "progress not written");
        }
        publish(ctx.as_ref(), &drill, &[note]).await;
    }
    if let Some(mut announcer) = announcer {
        // The last phase ends as the run does: give its Event a moment, then stop waiting for
        // phases an early end (an abort) will never reach.
        if tokio::time::timeout(std::time::Duration::from_secs(3), &mut announcer).await.is_err() {
            announcer.abort();
        }
    }
    status
}

/// An Event as each phase starts and ends (`InjectStarted`, `InjectEnded`, ..., with its
/// seconds of the load), so a dashboard shows the phases as annotations. One reason per phase
/// and edge: kube's Recorder folds Events of the same reason into one series, keeping the first
/// note.
async fn announce_phases<K: ConductedRun>(run: K, ctx: Arc<Context>, phases: Vec<Window>, load_start: Timestamp) {
    for (second, reason, message) in phase_edges(&phases) {
        let at = drive::at(load_start, std::time::Duration::from_secs(second));
        if let Ok(wait) = std::time::Duration::try_from(at.duration_since(Timestamp::now())) {
            tokio::time::sleep(wait).await;
        }
        publish(ctx.as_ref(), &run, &[Note::normal(reason, message)]).await;
    }
}

/// Each phase's start and end, in time order: (second of the load, reason, message).
fn phase_edges(phases: &[Window]) -> Vec<(u64, &'static str, String)> {
    let mut edges = Vec::new();
    for phase in phases {
        let (started, ended) = match phase.name {
            PhaseName::Warmup => ("WarmupStarted", "WarmupEnded"),
            PhaseName::Baseline => ("BaselineStarted", "BaselineEnded"),
            PhaseName::Inject => ("InjectStarted", "InjectEnded"),
            PhaseName::Recover => ("RecoverStarted", "RecoverEnded"),
            PhaseName::Cooldown => ("CooldownStarted", "CooldownEnded"),
        };
        let seconds = format!("seconds {}–{} of the run", phase.start, phase.end);
        edges.push((phase.start, started, format!("{} started: {seconds}", phase.name.as_str())));
        edges.push((phase.end, ended, format!("{} ended: {seconds}", phase.name.as_str())));
    }
    // A phase ends as the next starts: its end is told first.
    edges.sort_by_key(|(second, reason, _)| (*second, !reason.ends_with("Ended")));
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_is_told_as_it_starts_and_ends_in_time_order() {
        let window = |name, start, end| Window { name, start, end };
        let phases =
            [window(PhaseName::Baseline, 0, 4), window(PhaseName::Inject, 4, 16), window(PhaseName::Recover, 16, 20)];
        let edges: Vec<(u64, &str)> = phase_edges(&phases).into_iter().map(|(s, r, _)| (s, r)).collect();
        assert_eq!(
            edges,
            [
                (0, "BaselineStarted"),
                (4, "BaselineEnded"),
                (4, "InjectStarted"),
                (16, "InjectEnded"),
                (16, "RecoverStarted"),
                (20, "RecoverEnded"),
            ]
        );
        assert_eq!(phase_edges(&phases)[3].2, "inject ended: seconds 4–16 of the run");
    }
}
