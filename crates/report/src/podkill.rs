//! The report of a PodKill: every target of every round with its kill and its replacement's
//! Ready, the slowest recovery, and the recovery deadline as the one expectation it is judged by.

use kube::core::Selector;

use super::{PodKillFigures, Record, Report};
use crate::api::{
    PodKill, Verdict,
    figures::ExpectationResult,
    podkill::{KillAction, PodKillStatus},
};

impl Report {
    /// The report of `pk` once `status` holds its verdict. The time axis starts when the run
    /// left Pending.
    pub fn of_pod_kill(pk: &PodKill, status: &PodKillStatus) -> Report {
        let selector =
            Selector::try_from(pk.spec.selector.clone()).map(|s| s.to_string()).unwrap_or_else(|e| e.0.to_string());
        let record = Record {
            environment: "cluster".into(),
            target: format!("pods matching {selector}"),
            load: String::new(),
            concurrency_limit: None,
            seed: status.seed.and_then(|s| u64::try_from(s).ok()),
            chaoslab_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let deadline = pk.spec.recovery_deadline.to_string();
        let killed = status.targets.iter().any(|t| t.action == KillAction::Killed);
        // The verdict judges every replacement's Ready against the deadline; shown as the one
        // expectation so the report reads like the other kinds'. A run that killed nothing was
        // not judged on it.
        let expectation = killed.then(|| ExpectationResult {
            expression: format!("every replacement Ready within {deadline}"),
            observed: status.max_recovery.as_ref().map(|m| format!("slowest {m}")),
            threshold: Some(deadline.clone()),
            passed: status.run.verdict == Some(Verdict::Pass),
            // Aborted, Inconclusive (an owner gone) or Error: the deadline was not what decided.
            message: match status.run.verdict {
                Some(Verdict::Pass | Verdict::Fail) => None,
                other => {
                    Some(format!("not judged: the run ended {}", other.map(Verdict::as_str).unwrap_or("undecided")))
                }
            },
        });
        Report {
            expectations: expectation.into_iter().collect(),
            pod_kill: Some(PodKillFigures {
                targets: status.targets.clone(),
                killed: status.killed,
                recovery_deadline: deadline,
                max_recovery_seconds: status.max_recovery_seconds,
            }),
            ..Report::of_run(pk, &status.run, status.run.started_at.clone(), record)
        }
        .settled()
    }
}
