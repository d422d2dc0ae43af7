//! PodKill planning from plain values: rounds, resumption after a crash, recovery and verdicts.

use std::collections::BTreeSet;

use super::*;
use crate::api::podkill::{KillMethod, SelectionMode};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn t_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(1_800_000_000_000 + ms).unwrap()
}

fn spec(yaml: &str) -> PodKillSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

fn one_shot() -> PodKillSpec {
    spec("selector: {matchLabels: {app: web}}\nrecoveryDeadline: 30s\n")
}

fn pod(name: &str, owner: &str, created: Timestamp, ready: Option<Timestamp>) -> PodFacts {
    PodFacts {
        name: name.into(),
        uid: format!("uid-{name}"),
        node: Some("node-1".into()),
        controller: (!owner.is_empty()).then(|| owner.to_string()),
        created,
        ready_since: ready,
        running: true,
        terminating: false,
    }
}

fn web(n: usize) -> Vec<PodFacts> {
    (0..n).map(|i| pod(&format!("web-{i}"), "ReplicaSet/web-1", t(-100), Some(t(-90)))).collect()
}

fn step(spec: &PodKillSpec, st: &PodKillStatus, now: Timestamp, pods: &[PodFacts]) -> Step {
    let none = BTreeSet::new();
    advance(spec, st, &Observation { now, pods, gone_owners: &none, abort_requested: false }, 7)
}

/// Start a run and kill what it plans, all accepted at `now`.
fn start_and_kill(spec: &PodKillSpec, now: Timestamp, pods: &[PodFacts]) -> PodKillStatus {
    let s = step(spec, &PodKillStatus::default(), now, pods);
    let mut st = s.status;
    let outcomes: Vec<_> = s.kills.iter().map(|&i| (i, KillOutcome::Killed, now)).collect();
    record_kills(spec, &mut st, &outcomes, now);
    st
}

#[test]
fn a_pending_run_starts_records_its_seed_and_plans_one_kill() {
    let s = step(&one_shot(), &PodKillStatus::default(), t(0), &web(3));
    assert_eq!(s.status.run.phase, Some(Phase::Running));
    assert_eq!(s.status.seed, Some(7), "the fresh seed is recorded");
    assert_eq!(s.status.rounds, Some(1));
    assert_eq!(s.kills.len(), 1);
    let target = &s.status.targets[s.kills[0]];
    assert_eq!(target.action, KillAction::Planned, "planned in status before the kill");
    assert_eq!(target.owner.as_deref(), Some("ReplicaSet/web-1"));
    assert!(s.notes.iter().any(|n| n.reason == "Started"));
    assert!(s.status.run.verdict.is_none());
}

#[test]
fn the_spec_seed_wins_and_repeats_the_same_choice() {
    let seeded = spec("selector: {matchLabels: {app: web}}\nseed: 99\n");
    let a = step(&seeded, &PodKillStatus::default(), t(0), &web(10));
    let b = step(&seeded, &PodKillStatus::default(), t(5), &web(10));
    assert_eq!(a.status.seed, Some(99));
    assert_eq!(a.status.targets[0].pod, b.status.targets[0].pod);
}

#[test]
fn percent_mode_kills_the_rounded_up_share() {
    let half = spec("selector: {matchLabels: {app: web}}\nmode: percent\nvalue: 50\n");
    assert_eq!(step(&half, &PodKillStatus::default(), t(0), &web(5)).kills.len(), 3);
    let all = spec("selector: {matchLabels: {app: web}}\nmode: all\n");
    assert_eq!(step(&all, &PodKillStatus::default(), t(0), &web(4)).kills.len(), 4);
}

#[test]
fn a_ready_replacement_within_the_deadline_passes_with_its_recovery_time() {
    let spec = one_shot();
    let mut pods = web(3);
    let mut st = start_and_kill(&spec, t(0), &pods);
    let killed = st.targets[0].pod.clone();
    assert_eq!(st.targets[0].recovery, Recovery::Waiting);
    assert_eq!(st.run.phase, Some(Phase::Running), "not done while waiting for the replacement");

    // The replacement exists but is not Ready yet: still waiting, replacement named.
    pods.retain(|p| p.name != killed);
    pods.push(pod("web-new", "ReplicaSet/web-1", t(0), None));
    st = step(&spec, &st, t(2), &pods).status;
    assert_eq!(st.targets[0].replacement.as_deref(), Some("web-new"));
    assert_eq!(st.targets[0].recovery, Recovery::Waiting);

    // Ready at t=4, seen live at t=4.250: the operator's millisecond clock counts.
    pods.last_mut().unwrap().ready_since = Some(t(4));
    let s = step(&spec, &st, t_ms(4_250), &pods);
    let target = &s.status.targets[0];
    assert_eq!(target.recovery, Recovery::Recovered);
    assert_eq!(target.recovery_seconds, Some(4.25));
    assert_eq!(s.status.run.phase, Some(Phase::Succeeded));
    assert_eq!(s.status.run.verdict, Some(Verdict::Pass));
    assert_eq!(s.status.max_recovery.as_deref(), Some("4.2s"));
    assert_eq!(s.status.killed, Some(1));
    assert!(s.status.run.message.as_deref().unwrap().contains("slowest"), "{:?}", s.status.run.message);
    assert_eq!(s.requeue_after, None, "a finished run is not requeued");
}

#[test]
fn a_replacement_ready_after_the_deadline_is_named_late_and_fails() {
    let spec = one_shot();
    let st = start_and_kill(&spec, t(0), &web(1));
    let pods = vec![pod("web-new", "ReplicaSet/web-1", t(1), Some(t(40)))];
    let s = step(&spec, &st, t(41), &pods);
    assert_eq!(s.status.targets[0].recovery, Recovery::TimedOut);
    assert_eq!(s.status.targets[0].recovery_seconds, Some(41.0), "seen live at t=41");
    assert!(s.notes.iter().any(|n| n.reason == "RecoveredLate" && n.warning), "{:?}", s.notes);
    assert!(!s.notes.iter().any(|n| n.reason == "Recovered"));
    assert_eq!(s.status.run.verdict, Some(Verdict::Fail));
}

#[test]
fn a_replacement_seen_late_uses_kubernetes_ready_time() {
    let spec = one_shot();
    let mut pods = web(1);
    let st = start_and_kill(&spec, t(0), &pods);
    pods.clear();
    pods.push(pod("web-new", "ReplicaSet/web-1", t(1), Some(t(6))));
    // Seen 60 s after it became Ready (say the operator was restarting): use t=6, not t=66.
    let s = step(&spec, &st, t(66), &pods);
    assert_eq!(s.status.targets[0].recovery_seconds, Some(6.0));
    assert_eq!(s.status.run.verdict, Some(Verdict::Pass));
}

#[test]
fn no_ready_replacement_by_the_deadline_fails_naming_the_pod() {
    let spec = one_shot();
    let st = start_and_kill(&spec, t(0), &web(2));
    let s = step(&spec, &st, t(10), &web(2)[1..]);
    assert_eq!(s.status.run.phase, Some(Phase::Running));
    let next = s.requeue_after.unwrap();
    assert!(next <= POLL, "looks again at the latest after the poll interval: {next:?}");
    let s = step(&spec, &s.status, t(31), &web(2)[1..]);
    assert_eq!(s.status.targets[0].recovery, Recovery::TimedOut);
    assert_eq!(s.status.run.verdict, Some(Verdict::Fail));
    assert!(s.status.run.message.unwrap().contains(&st.targets[0].pod));
}

#[test]
fn a_pod_without_controller_fails_because_nothing_replaces_it() {
    let spec = one_shot();
    let bare = vec![pod("bare", "", t(-10), Some(t(-9)))];
    let st = start_and_kill(&spec, t(0), &bare);
    assert_eq!(st.targets[0].recovery, Recovery::NoOwner);
    assert_eq!(st.run.verdict, Some(Verdict::Fail));
    assert!(st.run.message.unwrap().contains("no controller"));
}

#[test]
fn a_deleted_owner_never_blocks_and_ends_inconclusive() {
    let spec = one_shot();
    let st = start_and_kill(&spec, t(0), &web(1));
    let gone: BTreeSet<String> = ["ReplicaSet/web-1".to_string()].into();
    let s = advance(&spec, &st, &Observation { now: t(1), pods: &[], gone_owners: &gone, abort_requested: false }, 7);
    assert_eq!(s.status.targets[0].recovery, Recovery::OwnerGone);
    assert_eq!(s.status.run.phase, Some(Phase::Succeeded));
    assert_eq!(s.status.run.verdict, Some(Verdict::Inconclusive));
}

#[test]
fn no_matching_pod_ends_inconclusive_at_once() {
    let s = step(&one_shot(), &PodKillStatus::default(), t(0), &[]);
    assert!(s.kills.is_empty());
    assert_eq!(s.status.run.verdict, Some(Verdict::Inconclusive));
    assert!(s.notes.iter().any(|n| n.reason == "NoTargets" && n.warning));
}

#[test]
fn refused_evictions_are_recorded_and_end_inconclusive_when_nothing_was_killed() {
    let mut spec = one_shot();
    spec.method = KillMethod::Evict;
    let s = step(&spec, &PodKillStatus::default(), t(0), &web(2));
    let mut st = s.status;
    let notes = record_kills(
        &spec,
        &mut st,
        &[(
            s.kills[0],
            KillOutcome::Refused("Cannot evict pod as it would violate the pod's disruption budget.".into()),
            t(0),
        )],
        t(0),
    );
    assert_eq!(st.targets[0].action, KillAction::Refused);
    assert!(st.targets[0].reason.as_deref().unwrap().contains("disruption budget"));
    assert_eq!(st.run.verdict, Some(Verdict::Inconclusive));
    assert!(st.run.message.unwrap().contains("1 kill(s) refused"));
    assert!(notes.iter().any(|n| n.reason == "KillRefused" && n.warning));
}

#[test]
fn rounds_follow_the_interval_and_never_run_early() {
    let spec = spec("selector: {matchLabels: {app: web}}\ninterval: 20s\nduration: 50s\n");
    assert_eq!(total_rounds(&spec), 3, "t=0, 20, 40");
    let pods = web(6);
    let st = start_and_kill(&spec, t(0), &pods);
    assert_eq!(st.rounds, Some(1));
    let s = step(&spec, &st, t(19), &pods[1..]);
    assert!(s.kills.is_empty(), "round 2 is not due before t=20");
    assert_eq!(s.requeue_after, Some(Duration::from_secs(1)));
    let s = step(&spec, &s.status, t(20), &pods[1..]);
    assert_eq!(s.kills.len(), 1);
    assert_eq!(s.status.rounds, Some(2));
    assert_eq!(s.status.targets[s.kills[0]].round, 1);
}

#[test]
fn total_rounds_math() {
    let r = |i: &str, d: &str| {
        total_rounds(&spec(&format!("selector: {{matchLabels: {{a: b}}}}\ninterval: {i}\nduration: {d}\n")))
    };
    assert_eq!(r("10s", "10s"), 1);
    assert_eq!(r("10s", "30s"), 3);
    assert_eq!(r("10s", "31s"), 4);
    assert_eq!(total_rounds(&one_shot()), 1);
}

#[test]
fn a_resumed_step_finishes_planned_kills_instead_of_choosing_new_targets() {
    let spec = one_shot();
    let pods = web(5);
    // The operator wrote the plan, then died before killing.
    let planned = step(&spec, &PodKillStatus::default(), t(0), &pods).status;
    let target = planned.targets[0].pod.clone();
    let resumed = step(&spec, &planned, t(3), &pods);
    assert_eq!(resumed.status.targets.len(), 1, "no new target chosen");
    assert_eq!(resumed.kills, vec![0]);
    assert_eq!(resumed.status.targets[0].pod, target);

    // Or it died after the kill: the pod is gone, so it is not killed again.
    let others: Vec<_> = pods.iter().filter(|p| p.name != target).cloned().collect();
    let resumed = step(&spec, &planned, t(3), &others);
    assert!(resumed.kills.is_empty());
    assert_eq!(resumed.status.targets[0].action, KillAction::Gone);
    assert_eq!(resumed.status.targets.len(), 1);
}

#[test]
fn a_sibling_created_in_the_second_of_the_kill_is_not_taken_for_the_replacement() {
    let spec = one_shot();
    // Two pods created in the very second of the kill (a fast cluster): timestamps cannot tell
    // the survivor from a replacement, so the plan records it.
    let pods =
        vec![pod("web-a", "ReplicaSet/web-1", t(0), Some(t(0))), pod("web-b", "ReplicaSet/web-1", t(0), Some(t(0)))];
    let st = start_and_kill(&spec, t_ms(400), &pods);
    let killed = st.targets[0].pod.clone();
    let survivor = if killed == "web-a" { "web-b" } else { "web-a" };
    assert_eq!(st.targets[0].recent_siblings, vec![survivor.to_string()]);
    let s = step(&spec, &st, t_ms(900), &pods.iter().filter(|p| p.name != killed).cloned().collect::<Vec<_>>());
    assert_eq!(s.status.targets[0].replacement, None, "the survivor is not the replacement");
    assert_eq!(s.status.targets[0].recovery, Recovery::Waiting);
    let mut later = vec![pods.iter().find(|p| p.name == survivor).cloned().unwrap()];
    later.push(pod("web-new", "ReplicaSet/web-1", t(0), Some(t(1))));
    let s = step(&spec, &s.status, t_ms(1_300), &later);
    assert_eq!(s.status.targets[0].replacement.as_deref(), Some("web-new"));
    assert_eq!(s.status.run.verdict, Some(Verdict::Pass));
}

#[test]
fn each_killed_target_gets_its_own_replacement() {
    let spec = spec("selector: {matchLabels: {app: web}}\nmode: all\n");
    let st = start_and_kill(&spec, t(0), &web(2));
    let pods =
        vec![pod("web-a", "ReplicaSet/web-1", t(1), Some(t(3))), pod("web-b", "ReplicaSet/web-1", t(1), Some(t(5)))];
    let s = step(&spec, &st, t(30), &pods);
    let replacements: BTreeSet<_> = s.status.targets.iter().filter_map(|t| t.replacement.clone()).collect();
    assert_eq!(replacements.len(), 2, "{:?}", s.status.targets);
    assert_eq!(s.status.run.verdict, Some(Verdict::Pass));
    assert_eq!(s.status.max_recovery_seconds, Some(5.0));
}

#[test]
fn pods_that_existed_before_the_kill_are_not_replacements() {
    let spec = one_shot();
    let pods = web(2);
    let st = start_and_kill(&spec, t(0), &pods);
    let survivor: Vec<_> = pods.iter().filter(|p| p.name != st.targets[0].pod).cloned().collect();
    let s = step(&spec, &st, t(5), &survivor);
    assert_eq!(s.status.targets[0].replacement, None);
    assert_eq!(s.status.targets[0].recovery, Recovery::Waiting);
}

#[test]
fn abort_cancels_planned_kills_and_ends_aborted() {
    let spec = one_shot();
    let planned = step(&spec, &PodKillStatus::default(), t(0), &web(3)).status;
    let none = BTreeSet::new();
    let s = advance(
        &spec,
        &planned,
        &Observation { now: t(1), pods: &web(3), gone_owners: &none, abort_requested: true },
        7,
    );
    assert!(s.kills.is_empty());
    assert_eq!(s.status.run.phase, Some(Phase::Aborted));
    assert_eq!(s.status.run.verdict, Some(Verdict::Aborted));
    assert_eq!(s.status.targets[0].action, KillAction::Cancelled);
}

#[test]
fn dry_run_kills_nothing_and_is_inconclusive() {
    let spec = spec("selector: {matchLabels: {app: web}}\nmode: all\ndryRun: true\n");
    let s = step(&spec, &PodKillStatus::default(), t(0), &web(3));
    assert!(s.kills.is_empty());
    assert!(s.status.targets.iter().all(|t| t.action == KillAction::DryRun));
    assert_eq!(s.status.run.verdict, Some(Verdict::Inconclusive));
    assert!(s.status.run.message.unwrap().contains("3 pod(s) would have been killed"));
}

#[test]
fn terminal_runs_do_not_move() {
    let mut st = PodKillStatus::default();
    st.run.phase = Some(Phase::Succeeded);
    let s = step(&one_shot(), &st, t(0), &web(3));
    assert_eq!(s.status, st);
    assert!(s.kills.is_empty() && s.notes.is_empty() && s.requeue_after.is_none());
}

#[test]
fn terminating_and_not_running_pods_are_never_chosen() {
    let mut pods = web(3);
    pods[0].terminating = true;
    pods[1].running = false;
    let spec = spec("selector: {matchLabels: {app: web}}\nmode: all\n");
    let s = step(&spec, &PodKillStatus::default(), t(0), &pods);
    assert_eq!(s.kills.len(), 1);
    assert_eq!(s.status.targets[0].pod, "web-2");
    let _ = SelectionMode::All;
}
