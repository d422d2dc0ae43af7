//! Standard conditions on every kind: `Accepted` (the spec is valid, the namespace opted in and
//! the kind is implemented) and `Finished` (terminal, with the verdict as reason).

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::api::{Phase, RunStatus, Verdict};

pub const ACCEPTED: &str = "Accepted";
pub const FINISHED: &str = "Finished";

/// Set a condition, keeping its transition time when its status does not change.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if ok { "True" } else { "False" };
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Bring `observedGeneration` and the `Finished` condition in line with phase and verdict.
pub fn refresh(run: &mut RunStatus, generation: Option<i64>, now: Timestamp) {
    run.observed_generation = generation;
    let phase = run.phase.unwrap_or_default();
    let (ok, reason) = match (phase.is_terminal(), run.verdict) {
        (true, Some(v)) => (true, v.as_str()),
        (true, None) => (true, phase.as_str()),
        (false, _) => (false, phase.as_str()),
    };
    let message = run.message.clone().unwrap_or_default();
    set(&mut run.conditions, FINISHED, ok, reason, &message, generation, now);
}

/// Where a verdict leaves the run: judged runs succeed (Pass, Fail and Inconclusive are all
/// answers), an abort is Aborted, an error is Failed.
pub fn phase_of(verdict: Verdict) -> Phase {
    match verdict {
        Verdict::Aborted => Phase::Aborted,
        Verdict::Error => Phase::Failed,
        _ => Phase::Succeeded,
    }
}

/// Ends a run with `verdict` and why: its phase, its end and the Finished condition follow.
pub fn end(run: &mut RunStatus, verdict: Verdict, message: String, now: Timestamp, generation: Option<i64>) {
    run.phase = Some(phase_of(verdict));
    run.verdict = Some(verdict);
    run.message = Some(message);
    run.finished_at = Some(Time(now));
    refresh(run, generation, now);
}

/// The spec was checked and the namespace opted in: the `Accepted` condition says so and why.
pub fn accept(run: &mut RunStatus, message: &str, generation: Option<i64>, now: Timestamp) {
    set(&mut run.conditions, ACCEPTED, true, "Accepted", message, generation, now);
    refresh(run, generation, now);
}

/// A run that will not go on, for `reason` (a CamelCase word) and `message`: it ends with
/// `verdict` (Error before it started, Aborted once it ran) and `Accepted` turns false.
pub fn refuse(
    run: &mut RunStatus,
    verdict: Verdict,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    set(&mut run.conditions, ACCEPTED, false, reason, message, generation, now);
    end(run, verdict, message.to_owned(), now, generation);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut c = Vec::new();
        set(&mut c, ACCEPTED, true, "Accepted", "ok", Some(1), t(0));
        set(&mut c, ACCEPTED, true, "Accepted", "still ok", Some(2), t(10));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t(0)));
        assert_eq!(c[0].message, "still ok");
        set(&mut c, ACCEPTED, false, "InvalidSpec", "bad", Some(3), t(20));
        assert_eq!(c[0].last_transition_time, Time(t(20)));
        assert_eq!(c[0].status, "False");
    }

    #[test]
    fn finished_follows_phase_and_verdict() {
        let mut run = RunStatus { phase: Some(Phase::Running), ..Default::default() };
        refresh(&mut run, Some(4), t(0));
        let f = run.conditions.iter().find(|c| c.type_ == FINISHED).unwrap();
        assert_eq!((f.status.as_str(), f.reason.as_str()), ("False", "Running"));
        run.phase = Some(Phase::Succeeded);
        run.verdict = Some(Verdict::Fail);
        run.message = Some("web-1 not replaced".into());
        refresh(&mut run, Some(4), t(5));
        let f = run.conditions.iter().find(|c| c.type_ == FINISHED).unwrap();
        assert_eq!((f.status.as_str(), f.reason.as_str(), f.message.as_str()), ("True", "Fail", "web-1 not replaced"));
        assert_eq!(run.observed_generation, Some(4));
    }
}
