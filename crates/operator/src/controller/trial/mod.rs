//! Judged runs in the cluster, whatever their kind: the runs this operator conducts (a task per
//! run), their children, and how a run ends without a judgement (refused, a dry run, aborted
//! before its start, or interrupted by an operator restart). A Running run whose conductor is
//! gone is not resumed: a run is not judged from part of its measurements, so its children are
//! ended and the verdict is Error. The kinds' controllers are [`conducted`] and
//! [`crate::controller::autoscaling`].

pub mod build;
pub mod children;
pub mod conducted;
pub mod load;
pub mod world;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::{Api, ResourceExt, runtime::controller::Action};
use serde::Serialize;

use self::{build::Owner, children::Children};
use super::abort_requested;
pub use super::runs::Runs;
use super::{Context, Error, conditions, publish, write_status};
use crate::{
    api::{
        AutoscalingCheck, CircuitBreakerTrial, Drill, Experiment, RunStatus, Verdict,
        trial::{AutoscalingCheckStatus, CircuitBreakerTrialStatus, DrillStatus, FaultWindow},
    },
    domain::{Note, spec_check::SpecCheck},
    load::stages::PlanError,
    trial::{drive::TrialOutcome, plan::TrialPlan},
};

/// A kind whose runs are conducted by a task and judged: where its lifecycle status is.
pub trait JudgedRun: Experiment {
    type Status: Serialize + Clone + Default + Send + Sync + 'static;
    /// The status as it stands (empty before the first write).
    fn current(&self) -> Self::Status;
    fn run_of(status: &mut Self::Status) -> &mut RunStatus;
}

/// The judged kinds differ here only by their status type.
macro_rules! judged_run {
    ($($kind:ident => $status:ident),+ $(,)?) => {$(
        impl JudgedRun for $kind {
            type Status = $status;

            fn current(&self) -> $status {
                self.status.clone().unwrap_or_default()
            }

            fn run_of(status: &mut $status) -> &mut RunStatus {
                &mut status.run
            }
        }
    )+};
}
judged_run!(
    Drill => DrillStatus,
    CircuitBreakerTrial => CircuitBreakerTrialStatus,
    AutoscalingCheck => AutoscalingCheckStatus,
);

/// A kind conducted by the one engine of [`crate::trial`]: its plan and what its status keeps of
/// an outcome.
pub trait ConductedRun: JudgedRun + SpecCheck {
    fn plan(&self) -> Result<TrialPlan, PlanError>;
    /// Resolve and record the plan without acting.
    fn dry_run(&self) -> bool {
        false
    }
    /// Where each fault's window is kept as it happens, if the kind keeps them.
    fn windows_of(status: &mut Self::Status) -> Option<&mut Vec<FaultWindow>>;
    /// The judgement and the kind's own figures of a finished run (the lifecycle is set apart).
    fn record(status: &mut Self::Status, outcome: TrialOutcome);
    /// Reads the kind's own latest object, for a person's stop.
    fn stop_asked(current: &Self) -> bool {
        abort_requested(current)
    }
}

impl ConductedRun for Drill {
    fn plan(&self) -> Result<TrialPlan, PlanError> {
        TrialPlan::drill(&self.spec)
    }

    fn dry_run(&self) -> bool {
        self.spec.dry_run
    }

    fn windows_of(status: &mut DrillStatus) -> Option<&mut Vec<FaultWindow>> {
        Some(&mut status.faults)
    }

    fn record(status: &mut DrillStatus, outcome: TrialOutcome) {
        status.judgement = outcome.judgement;
        status.faults = outcome.faults;
    }
}

impl ConductedRun for CircuitBreakerTrial {
    fn plan(&self) -> Result<TrialPlan, PlanError> {
        TrialPlan::circuit_breaker(&self.spec)
    }

    fn windows_of(_: &mut CircuitBreakerTrialStatus) -> Option<&mut Vec<FaultWindow>> {
        None
    }

    fn record(status: &mut CircuitBreakerTrialStatus, outcome: TrialOutcome) {
        status.judgement = outcome.judgement;
        status.breaker = outcome.breaker;
    }
}

/// How soon a run being conducted is looked at again (its task writes its status itself).
pub const RECHECK: Duration = Duration::from_secs(10);
/// The longest a deleted run waits for its conductor to revert its faults.
const CLEANUP_WAIT: Duration = Duration::from_secs(90);

/// The children of `run`.
pub fn children<K: Experiment>(ctx: &Context, run: &K) -> Result<Children, Error> {
    Ok(Children::new(
        ctx.client.clone(),
        Owner::of(run).map_err(|message| Error::Build { step: "naming the run's children", message })?,
    ))
}

/// A deleted run: its conductor sees the deletion within a second and reverts what is active;
/// then every child still going is ended (the ServiceFaults restore their Services).
pub async fn cleanup<K: Experiment>(run: &K, ctx: &Context) -> Result<Action, Error> {
    let uid = run.uid().unwrap_or_default();
    if let Some(mut handle) = ctx.trials.take(&uid)
        && tokio::time::timeout(CLEANUP_WAIT, &mut handle).await.is_err()
    {
        // It must not go on (and write to a run of the same name created later).
        handle.abort();
        tracing::warn!(kind = K::KIND, name = %run.name_any(), "the conductor did not end in time; ending the children");
    }
    children(ctx, run)?.end_all().await?;
    Ok(Action::await_change())
}

/// A Running run whose conductor is gone (the operator restarted): every child still going is
/// ended, and the verdict says why.
pub async fn interrupted<K: JudgedRun>(run: &K, ctx: &Context, api: &Api<K>, now: Timestamp) -> Result<Action, Error> {
    children(ctx, run)?.end_all().await?;
    let message = format!(
        "interrupted: the operator that conducted this run is gone (a restart, a crash or a lost leadership), and a \
         run is not judged from part of its measurements; every child still going was ended (faults reverted, \
         Services restored, the load stopped). Delete and apply the {} again to run it again.",
        K::KIND
    );
    let mut last = run.current();
    build::end(K::run_of(&mut last), Verdict::Error, message.clone(), now, run.meta().generation);
    write_status(api, &run.name_any(), &last).await?;
    publish(ctx, run, &[Note::warning("Interrupted", message)]).await;
    Ok(Action::await_change())
}

/// Ends a run that never started: refused, a dry run, or aborted before its start.
#[allow(clippy::too_many_arguments)]
pub async fn finish<K: JudgedRun>(
    run: &K,
    ctx: &Context,
    api: &Api<K>,
    verdict: Verdict,
    reason: &'static str,
    message: String,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = run.meta().generation;
    let mut st = run.current();
    let lifecycle = K::run_of(&mut st);
    build::end(lifecycle, verdict, message.clone(), now, generation);
    let accepted = verdict != Verdict::Error;
    conditions::set(&mut lifecycle.conditions, conditions::ACCEPTED, accepted, reason, &message, generation, now);
    write_status(api, &run.name_any(), &st).await?;
    let note = if accepted { Note::normal(reason, message) } else { Note::warning(reason, message) };
    publish(ctx, run, &[note]).await;
    Ok(Action::await_change())
}

/// Writes `status` to `run`, unless the object of that name is another one now (deleted and
/// created again): a run's task never writes onto its successor.
pub async fn write_own_status<K: JudgedRun>(api: &Api<K>, run: &K, status: &K::Status) -> Result<(), Error> {
    let name = run.name_any();
    match api.get_opt(&name).await? {
        Some(current) if current.uid() == run.uid() => write_status(api, &name, status).await,
        _ => {
            tracing::info!(kind = K::KIND, %name, "the run is gone; its status is not written");
            Ok(())
        }
    }
}

/// Writes a run's last status (retried: the verdict is what the run was for), then its Event,
/// and forgets the run.
pub async fn conclude<K: JudgedRun>(run: &K, ctx: &Context, mut last: K::Status) {
    let name = run.name_any();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), run.namespace().as_deref().unwrap_or_default());
    for attempt in 1..=5u32 {
        match write_own_status(&api, run, &last).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(kind = K::KIND, %name, attempt, %error, "the verdict could not be written; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    let lifecycle = K::run_of(&mut last);
    let verdict = lifecycle.verdict.unwrap_or(Verdict::Error);
    let message = lifecycle.message.clone().unwrap_or_default();
    let text = format!("{}: {message}", verdict.as_str());
    let note = if verdict == Verdict::Pass { Note::normal("Verdict", text) } else { Note::warning("Verdict", text) };
    publish(ctx, run, &[note]).await;
    tracing::info!(kind = K::KIND, %name, verdict = verdict.as_str(), %message, "judged");
    ctx.trials.take(&run.uid().unwrap_or_default());
}
