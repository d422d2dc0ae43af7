//! Standard conditions on every kind: `Accepted` (the spec is valid, the namespace opted in and
//! the kind is implemented) and `Finished` (terminal, with the verdict as reason).

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

use crate::api::RunStatus;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Phase, Verdict};

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
