//! PodKill's rules, with no API client: given the spec, the status so far and what the cluster
//! looks like now, decide the next status, which pods to kill, and the verdict.
//!
//! The controller writes the plan (targets marked `Planned`) to status before it kills, so a
//! restarted operator finishes the planned kills instead of choosing new targets: no round
//! ever kills more pods than its mode allows.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{MicroTime, Time},
    jiff::{SignedDuration, Timestamp},
};

use crate::{
    api::{
        Phase, Verdict,
        common::{human_duration, seconds},
        podkill::{KillAction, KillTarget, PodKillSpec, PodKillStatus, Recovery},
    },
    domain::{
        Note,
        selection::{choose, target_count},
    },
};

/// What the planner needs to know of a pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    /// The controlling owner as `Kind/name`, e.g. `ReplicaSet/web-7d9c`.
    pub controller: Option<String>,
    pub created: Timestamp,
    /// When the Ready condition last became True, if it is True now.
    pub ready_since: Option<Timestamp>,
    /// Phase Running and not being deleted: a pod a round may choose.
    pub running: bool,
    pub terminating: bool,
}

/// The cluster as the controller saw it for this step.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    pub now: Timestamp,
    /// Pods matching the selector now.
    pub pods: &'a [PodFacts],
    /// Controllers (`Kind/name`) of waiting targets that the API server says no longer exist.
    pub gone_owners: &'a BTreeSet<String>,
    /// The abort annotation is set.
    pub abort_requested: bool,
}

/// The result of one planning step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub status: PodKillStatus,
    /// Indices into `status.targets` of the pods to kill now.
    pub kills: Vec<usize>,
    pub notes: Vec<Note>,
    /// When to look again even if nothing changes (next round, next recovery deadline).
    pub requeue_after: Option<Duration>,
}

/// What the API server answered to one kill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillOutcome {
    Killed,
    /// Eviction refused (PodDisruptionBudget: 429) or the delete was forbidden.
    Refused(String),
    /// The pod no longer existed (404) or has another UID now (a new pod, same name).
    Gone,
}

/// How often a running PodKill looks at its targets at the latest, even without pod events.
pub const POLL: Duration = Duration::from_secs(10);
/// A Ready transition the operator sees within this long of Kubernetes recording it counts as
/// seen live, so the operator's own millisecond clock is used instead of the condition's
/// second-precision time.
const LIVE_WINDOW: Duration = Duration::from_secs(2);

/// How many rounds the spec asks for: one, or one every interval while within the duration.
/// The spec's label selector as kube's `Selector`: the check the API server's schema cannot
/// express (an unknown operator, values with Exists).
pub fn label_selector(spec: &PodKillSpec) -> Result<kube::core::Selector, String> {
    kube::core::Selector::try_from(spec.selector.clone()).map_err(|e| {
        format!(
            "spec.selector is not a valid label selector ({}): operators are In, NotIn, Exists and DoesNotExist",
            e.0
        )
    })
}

pub fn total_rounds(spec: &PodKillSpec) -> u32 {
    match (spec.interval, spec.duration) {
        (Some(interval), Some(duration)) if !interval.as_std().is_zero() => {
            let n = duration.as_std().as_nanos().div_ceil(interval.as_std().as_nanos());
            u32::try_from(n.max(1)).unwrap_or(u32::MAX)
        }
        _ => 1,
    }
}

pub fn plus(ts: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| ts.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

/// `to - from`, or zero when `to` is earlier.
pub fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// Advance a PodKill by one step. `fresh_seed` is used only when the run starts without a seed.
pub fn advance(spec: &PodKillSpec, status: &PodKillStatus, obs: &Observation<'_>, fresh_seed: i64) -> Step {
    let mut st = status.clone();
    let mut notes = Vec::new();
    let mut kills = Vec::new();
    let now = obs.now;
    let phase = st.run.phase.unwrap_or_default();
    if phase.is_terminal() {
        return Step { status: st, kills, notes, requeue_after: None };
    }
    if obs.abort_requested {
        abort(&mut st, now, "aborted by the chaoslab.dev/abort annotation", &mut notes);
        return Step { status: st, kills, notes, requeue_after: None };
    }
    if phase == Phase::Pending {
        let seed = spec.seed.unwrap_or(fresh_seed);
        st.run.phase = Some(Phase::Running);
        st.run.started_at = Some(Time(now));
        st.run.message = Some(format!("running {} round(s)", total_rounds(spec)));
        st.seed = Some(seed);
        st.rounds = Some(0);
        notes.push(Note::normal("Started", format!("PodKill started: {} round(s), seed {seed}", total_rounds(spec))));
    }
    let started = st.run.started_at.as_ref().map(|t| t.0).unwrap_or(now);

    // Kills planned by an earlier step whose outcome was never recorded (the operator stopped in
    // between): finish them if the pod is still there, never choose a replacement target.
    for (i, t) in st.targets.iter_mut().enumerate() {
        if t.action != KillAction::Planned {
            continue;
        }
        match obs.pods.iter().find(|p| p.uid == t.uid) {
            Some(p) if !p.terminating => kills.push(i),
            _ => {
                t.action = KillAction::Gone;
                t.reason = Some("the pod was gone when the planned kill was resumed".into());
            }
        }
    }

    // The next round, when due.
    let total = total_rounds(spec);
    let rounds = st.rounds.unwrap_or(0);
    let interval = spec.interval.map(|d| d.as_std()).unwrap_or(Duration::ZERO);
    let due = plus(started, interval * rounds);
    if rounds < total && now >= due {
        let already: BTreeSet<&str> = st.targets.iter().map(|t| t.uid.as_str()).collect();
        let candidates: Vec<&PodFacts> =
            obs.pods.iter().filter(|p| p.running && !p.terminating && !already.contains(p.uid.as_str())).collect();
        let count = target_count(spec.mode, spec.value, candidates.len());
        let seed = st.seed.unwrap_or(fresh_seed) as u64;
        let chosen = choose(&candidates, |p| p.name.as_str(), count, seed, rounds);
        let mut names = Vec::new();
        for i in chosen {
            let p = candidates[i];
            names.push(p.name.clone());
            let recent_siblings = obs
                .pods
                .iter()
                .filter(|s| s.uid != p.uid && s.controller.is_some() && s.controller == p.controller)
                .filter(|s| s.created.as_second() >= now.as_second())
                .map(|s| s.name.clone())
                .take(100)
                .collect();
            if !spec.dry_run {
                kills.push(st.targets.len());
            }
            st.targets.push(KillTarget {
                round: rounds,
                pod: p.name.clone(),
                uid: p.uid.clone(),
                node: p.node.clone(),
                owner: p.controller.clone(),
                recent_siblings,
                action: if spec.dry_run { KillAction::DryRun } else { KillAction::Planned },
                ..Default::default()
            });
        }
        st.rounds = Some(rounds + 1);
        let round_label = format!("round {}/{total}", rounds + 1);
        notes.push(if names.is_empty() {
            Note::warning("NoTargets", format!("{round_label}: no Running pod matched the selector"))
                .about(round_label.clone())
        } else {
            let verb = if spec.dry_run { "would kill" } else { "killing" };
            Note::normal(
                "RoundStarted",
                format!(
                    "{round_label}: {verb} {} of {} matching pod(s): {}",
                    names.len(),
                    candidates.len(),
                    names.join(", ")
                ),
            )
            .about(round_label.clone())
        });
    }

    track_recovery(spec, &mut st, obs, &mut notes);
    summarize(&mut st);
    if kills.is_empty() {
        conclude(spec, &mut st, now, &mut notes);
    }
    let requeue_after = next_look(spec, &st, now);
    Step { status: st, kills, notes, requeue_after }
}

/// Record what the API server answered to the kills of a step (target index, answer, and when
/// the answer came), then judge if the run is done at `now`.
pub fn record_kills(
    spec: &PodKillSpec,
    st: &mut PodKillStatus,
    outcomes: &[(usize, KillOutcome, Timestamp)],
    now: Timestamp,
) -> Vec<Note> {
    let mut notes = Vec::new();
    for (i, outcome, at) in outcomes {
        let Some(t) = st.targets.get_mut(*i) else {
            continue;
        };
        match outcome {
            KillOutcome::Killed => {
                t.action = KillAction::Killed;
                t.killed_at = Some(MicroTime(*at));
                t.recovery = if t.owner.is_some() { Recovery::Waiting } else { Recovery::NoOwner };
                notes.push(
                    Note::normal(
                        "Killed",
                        format!("killed pod {} (owner {})", t.pod, t.owner.as_deref().unwrap_or("none")),
                    )
                    .about(t.pod.clone()),
                );
            }
            KillOutcome::Refused(reason) => {
                t.action = KillAction::Refused;
                t.reason = Some(reason.clone());
                notes.push(Note::warning("KillRefused", format!("pod {}: {reason}", t.pod)).about(t.pod.clone()));
            }
            KillOutcome::Gone => {
                t.action = KillAction::Gone;
                t.reason = Some("the pod was gone before it could be killed".into());
            }
        }
    }
    summarize(st);
    conclude(spec, st, now, &mut notes);
    notes
}

/// Stop the run: planned kills are cancelled, nothing more happens.
pub fn abort(st: &mut PodKillStatus, now: Timestamp, why: &str, notes: &mut Vec<Note>) {
    for t in st.targets.iter_mut().filter(|t| t.action == KillAction::Planned) {
        t.action = KillAction::Cancelled;
    }
    for t in st.targets.iter_mut().filter(|t| t.recovery == Recovery::Waiting) {
        t.recovery = Recovery::NotApplicable;
        t.reason = Some("recovery not awaited: the run was aborted".into());
    }
    summarize(st);
    st.run.phase = Some(Phase::Aborted);
    st.run.verdict = Some(Verdict::Aborted);
    st.run.finished_at = Some(Time(now));
    st.run.message = Some(format!("{why} after {} round(s)", st.rounds.unwrap_or(0)));
    notes.push(Note::warning("Aborted", st.run.message.clone().unwrap_or_default()));
}

fn track_recovery(spec: &PodKillSpec, st: &mut PodKillStatus, obs: &Observation<'_>, notes: &mut Vec<Note>) {
    let deadline = spec.recovery_deadline.as_std();
    let mut used: BTreeSet<String> = st.targets.iter().filter_map(|t| t.replacement.clone()).collect();
    for t in st.targets.iter_mut() {
        if t.action != KillAction::Killed || t.recovery != Recovery::Waiting {
            continue;
        }
        let Some(killed_at) = t.killed_at.as_ref().map(|m| m.0) else {
            continue;
        };
        let owner = t.owner.clone().unwrap_or_default();
        if obs.gone_owners.contains(&owner) {
            t.recovery = Recovery::OwnerGone;
            notes.push(Note::warning(
                "OwnerGone",
                format!("pod {}: its owner {owner} was deleted; recovery cannot be judged", t.pod),
            ));
            continue;
        }
        // The replacement: the owner's earliest pod created since the kill (timestamps are to the
        // second, so the kill's second counts) that no other target claimed.
        let killed_second = killed_at.as_second();
        let replacement = obs
            .pods
            .iter()
            .filter(|p| p.controller.as_deref() == Some(owner.as_str()) && p.uid != t.uid)
            .filter(|p| p.created.as_second() >= killed_second && !p.terminating)
            .filter(|p| !t.recent_siblings.contains(&p.name))
            .filter(|p| t.replacement.as_deref() == Some(p.name.as_str()) || !used.contains(&p.name))
            .min_by_key(|p| (p.created, p.name.clone()));
        if let Some(p) = replacement {
            if t.replacement.is_none() {
                used.insert(p.name.clone());
                t.replacement = Some(p.name.clone());
            }
            if let Some(ready_since) = p.ready_since {
                let seen_live = elapsed(ready_since, obs.now) <= LIVE_WINDOW;
                let ready_at = if seen_live { obs.now } else { ready_since }.max(killed_at);
                let took = elapsed(killed_at, ready_at);
                t.replacement_ready_at = Some(MicroTime(ready_at));
                t.recovery_seconds = Some(seconds(took));
                let message = format!("pod {} replaced by {} Ready after {}", t.pod, p.name, human_duration(took));
                if took <= deadline {
                    t.recovery = Recovery::Recovered;
                    notes.push(Note::normal("Recovered", message).about(t.pod.clone()));
                } else {
                    t.recovery = Recovery::TimedOut;
                    let late = format!("{message}, past the {} deadline", human_duration(deadline));
                    notes.push(Note::warning("RecoveredLate", late).about(t.pod.clone()));
                }
                continue;
            }
        }
        if elapsed(killed_at, obs.now) > deadline {
            t.recovery = Recovery::TimedOut;
            notes.push(
                Note::warning(
                    "RecoveryTimedOut",
                    format!("pod {}: no Ready replacement within {}", t.pod, human_duration(deadline)),
                )
                .about(t.pod.clone()),
            );
        }
    }
}

/// Refresh the derived figures: pods killed and the slowest recovery.
fn summarize(st: &mut PodKillStatus) {
    st.killed = Some(st.targets.iter().filter(|t| t.action == KillAction::Killed).count() as u32);
    let max = st
        .targets
        .iter()
        .filter_map(|t| t.recovery_seconds)
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    st.max_recovery_seconds = max;
    st.max_recovery = max.map(|s| human_duration(Duration::from_secs_f64(s)));
}

/// Judge the run once every round has run and every kill has come out.
fn conclude(spec: &PodKillSpec, st: &mut PodKillStatus, now: Timestamp, notes: &mut Vec<Note>) {
    if st.run.phase != Some(Phase::Running) || st.rounds.unwrap_or(0) < total_rounds(spec) {
        return;
    }
    if st.targets.iter().any(|t| t.action == KillAction::Planned || t.recovery == Recovery::Waiting) {
        return;
    }
    let (verdict, message) = verdict(spec, &st.targets);
    st.run.phase = Some(Phase::Succeeded);
    st.run.verdict = Some(verdict);
    st.run.finished_at = Some(Time(now));
    st.run.message = Some(message.clone());
    let note = format!("{}: {message}", verdict.as_str());
    notes.push(if verdict == Verdict::Pass { Note::normal("Finished", note) } else { Note::warning("Finished", note) });
}

/// The verdict over all targets, with the sentence that explains it.
pub fn verdict(spec: &PodKillSpec, targets: &[KillTarget]) -> (Verdict, String) {
    let deadline = human_duration(spec.recovery_deadline.as_std());
    if targets.is_empty() {
        return (Verdict::Inconclusive, "no Running pod matched the selector, so nothing was tested".into());
    }
    if spec.dry_run {
        return (Verdict::Inconclusive, format!("dry run: {} pod(s) would have been killed", targets.len()));
    }
    let pods =
        |r: Recovery| -> Vec<&str> { targets.iter().filter(|t| t.recovery == r).map(|t| t.pod.as_str()).collect() };
    let killed = targets.iter().filter(|t| t.action == KillAction::Killed).count();
    let refused = targets.iter().filter(|t| t.action == KillAction::Refused).count();
    let refused_note =
        if refused > 0 { format!("; {refused} kill(s) refused (see targets[].reason)") } else { String::new() };
    if killed == 0 {
        return (Verdict::Inconclusive, format!("no pod was killed{refused_note}, so recovery was not tested"));
    }
    let timed_out = pods(Recovery::TimedOut);
    let no_owner = pods(Recovery::NoOwner);
    if !timed_out.is_empty() || !no_owner.is_empty() {
        let mut parts = Vec::new();
        if !timed_out.is_empty() {
            parts.push(format!("no Ready replacement within {deadline} for {}", timed_out.join(", ")));
        }
        if !no_owner.is_empty() {
            parts.push(format!("nothing replaces {} (no controller)", no_owner.join(", ")));
        }
        return (Verdict::Fail, format!("{}{refused_note}", parts.join("; ")));
    }
    let owner_gone = pods(Recovery::OwnerGone);
    if !owner_gone.is_empty() {
        return (
            Verdict::Inconclusive,
            format!(
                "the owner of {} was deleted during the run, so its recovery could not be judged{refused_note}",
                owner_gone.join(", ")
            ),
        );
    }
    let slowest = targets.iter().filter_map(|t| t.recovery_seconds).fold(0.0_f64, f64::max);
    (
        Verdict::Pass,
        format!(
            "{killed} pod(s) killed, every one replaced and Ready within {deadline} (slowest {}){refused_note}",
            human_duration(Duration::from_secs_f64(slowest))
        ),
    )
}

/// When to look at a run again: the next round or recovery deadline, at most `POLL` away; never
/// for a finished run.
pub fn next_look(spec: &PodKillSpec, st: &PodKillStatus, now: Timestamp) -> Option<Duration> {
    if st.run.phase.is_none_or(|p| p.is_terminal()) {
        return None;
    }
    let mut next = POLL;
    let started = st.run.started_at.as_ref().map(|t| t.0).unwrap_or(now);
    let rounds = st.rounds.unwrap_or(0);
    if rounds < total_rounds(spec) {
        let interval = spec.interval.map(|d| d.as_std()).unwrap_or(Duration::ZERO);
        next = next.min(elapsed(now, plus(started, interval * rounds)));
    }
    let deadline = spec.recovery_deadline.as_std();
    for t in st.targets.iter().filter(|t| t.recovery == Recovery::Waiting) {
        if let Some(k) = &t.killed_at {
            // Just past the deadline, so the step that runs then sees it expired.
            next = next.min(elapsed(now, plus(k.0, deadline)) + Duration::from_millis(100));
        }
    }
    Some(next.max(Duration::from_millis(100)))
}

#[cfg(test)]
#[path = "podkill_tests.rs"]
mod tests;
