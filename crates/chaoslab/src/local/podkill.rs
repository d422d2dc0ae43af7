//! A judged run's pod kill on loopback: the PodKill's choice of targets (selector, mode, value,
//! seed) and its rounds, carried out on the lab's pods, and the evidence of what it did.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pods::{LocalPods, PodRef};
use crate::{
    api::podkill::{KillMethod, PodKillSpec},
    domain::selection::{choose, target_count},
};

/// What one target of one round came to.
#[derive(Clone, Debug)]
enum Done {
    /// Killed: the index of the kill's record in its set.
    Killed {
        set: usize,
        index: usize,
    },
    Refused {
        pod: String,
        why: String,
    },
    /// `dryRun`: chosen, not killed.
    Chosen {
        pod: String,
    },
    NoneMatched {
        round: u32,
    },
}

/// A pod kill in progress: its rounds so far and the task running the later ones.
#[derive(Debug)]
pub struct LocalPodKill {
    pods: LocalPods,
    done: Arc<Mutex<Vec<Done>>>,
    stop: CancellationToken,
    rounds: Option<JoinHandle<()>>,
}

impl LocalPodKill {
    /// Runs the first round now and, with `interval` and `duration`, the later ones every
    /// `interval` until `duration` or `until` (the fault's slot) is over, whichever is first.
    /// A selector that cannot be read is an error naming it.
    pub fn start(pods: &LocalPods, spec: &PodKillSpec, seed: u64, until: Duration) -> Result<LocalPodKill, String> {
        pods.matching(&spec.selector).map_err(|e| format!("podKill.{e}"))?;
        let done = Arc::new(Mutex::new(round(pods, spec, seed, 0)));
        let stop = CancellationToken::new();
        let rounds = match (spec.interval, spec.duration) {
            (Some(interval), Some(duration)) if !interval.0.is_zero() => {
                let (pods, spec, done, stop) = (pods.clone(), spec.clone(), done.clone(), stop.clone());
                let end = tokio::time::Instant::now() + duration.0.min(until);
                Some(tokio::spawn(async move {
                    let mut next = 1u32;
                    loop {
                        let at = tokio::time::Instant::now() + interval.0;
                        if at >= end {
                            return;
                        }
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep_until(at) => {}
                        }
                        let outcome = round(&pods, &spec, seed, next);
                        done.lock().unwrap_or_else(PoisonError::into_inner).extend(outcome);
                        next += 1;
                    }
                }))
            }
            _ => None,
        };
        Ok(LocalPodKill { pods: pods.clone(), done, stop, rounds })
    }

    /// Stops the rounds still due (a kill cannot be undone).
    pub fn stop(&mut self) {
        self.stop.cancel();
        if let Some(rounds) = self.rounds.take() {
            rounds.abort();
        }
    }

    /// Whether a pod was killed, and what each round did: the pods, their signals and exits,
    /// their replacements and how long those took to be Ready.
    pub fn evidence(&self) -> (bool, String) {
        let done = self.done.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut killed = 0;
        let lines: Vec<String> = done
            .iter()
            .map(|d| match d {
                Done::Killed { set, index } => match self.pods.kill(*set, *index) {
                    Some(k) => {
                        killed += 1;
                        let exit = match (k.exit_code, k.exited_after) {
                            (Some(code), Some(after)) => format!("exited {code} after {:.1}s", after.as_secs_f64()),
                            _ => "still stopping".into(),
                        };
                        let replacement = match (&k.replacement, k.replacement_ready_after, &k.replacement_error) {
                            (Some(name), Some(after), _) => {
                                format!("replaced by {name}, Ready after {:.2}s", after.as_secs_f64())
                            }
                            (_, _, Some(error)) => format!("its replacement never became Ready: {error}"),
                            _ => "its replacement not Ready yet".into(),
                        };
                        format!("{} killed ({}, {exit}), {replacement}", k.pod, k.signal)
                    }
                    None => "a kill without a record".into(),
                },
                Done::Refused { pod, why } => format!("{pod} not killed: {why}"),
                Done::Chosen { pod } => format!("{pod} chosen (dry run: not killed)"),
                Done::NoneMatched { round } => format!("round {round}: no running pod matched the selector"),
            })
            .collect();
        let summary = format!("{killed} pod(s) killed on loopback: {}", lines.join("; "));
        (killed > 0, summary)
    }
}

impl Drop for LocalPodKill {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One round: the targets the mode asks for among the running pods the selector matches,
/// chosen from the seed as the operator's PodKill chooses, and killed by the method.
fn round(pods: &LocalPods, spec: &PodKillSpec, seed: u64, round: u32) -> Vec<Done> {
    let matched: Vec<PodRef> = pods.matching(&spec.selector).unwrap_or_default();
    let count = target_count(spec.mode, spec.value, matched.len());
    if count == 0 {
        return vec![Done::NoneMatched { round }];
    }
    let grace = spec.grace_period.map(|g| g.0);
    let evict = spec.method == KillMethod::Evict;
    choose(&matched, |p| p.name.as_str(), count, seed, round)
        .into_iter()
        .map(|i| {
            let pod = &matched[i];
            if spec.dry_run {
                return Done::Chosen { pod: pod.name.clone() };
            }
            match pods.delete(pod, grace, evict) {
                Ok(index) => Done::Killed { set: pod.set, index },
                Err(why) => Done::Refused { pod: pod.name.clone(), why: why.to_string() },
            }
        })
        .collect()
}
