use std::time::Duration;

use super::*;
use crate::api::figures::PhasePlan;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// One second (or window) with this p99 and error rate at 100 req/s.
fn fig(p99_ms: u64, error_rate: f64) -> Figures {
    Figures {
        p50: ms(p99_ms / 2),
        p90: ms(p99_ms),
        p95: ms(p99_ms),
        p99: ms(p99_ms),
        p999: ms(p99_ms),
        max: ms(p99_ms),
        mean: ms(p99_ms / 2),
        error_rate,
        achieved_rate: 100.0,
        target_rate: Some(100.0),
        rps: 100.0,
        dropped: 0,
        total: 100,
    }
}

/// baseline 10s, inject 10s, recover 20s: a run where p99 is 20ms, breaks to 500ms from the
/// 3rd second of inject, and comes back 4s after the fault ends.
fn recorded() -> (Timeline, Measured) {
    let plan: PhasePlan = serde_saphyr::from_str("{baseline: 10s, inject: 10s, recover: 20s}").unwrap();
    let timeline = Timeline::new(&plan);
    let seconds: Vec<Option<Figures>> = (0..40)
        .map(|s| match s {
            12..=23 => Some(fig(500, 0.05)),
            _ => Some(fig(20, 0.0)),
        })
        .collect();
    let measured = Measured {
        phases: vec![
            (PhaseName::Baseline, fig(20, 0.0)),
            (PhaseName::Inject, fig(480, 0.04)),
            (PhaseName::Recover, fig(300, 0.01)),
        ],
        seconds,
    };
    (timeline, measured)
}

fn rule(within: u64) -> RecoveryRule {
    RecoveryRule {
        slo: vec!["p99 < 100ms".into(), "errorRate < 1%".into()],
        hold: 5,
        within: Some(Duration::from_secs(within)),
    }
}

fn effect(observed: bool) -> Vec<Effect> {
    vec![Effect { fault: "slow".into(), observed, evidence: "412 requests crossed the proxy".into() }]
}

#[test]
fn detection_and_recovery_are_measured_from_the_series() {
    let (t, m) = recorded();
    let r = recovery(t.inject().start..20, &m.seconds, &rule(60), m.phase(PhaseName::Baseline));
    assert_eq!(r.time_to_detect_seconds, Some(2.0), "inject starts at 10, the SLO breaks at 12");
    assert_eq!(r.time_to_recover_seconds, Some(4.0), "the fault ends at 20, 24..29 hold");
    assert_eq!(r.time_to_recover.as_deref(), Some("4.0s"));
}

#[test]
fn detection_counts_from_the_first_faults_start_not_from_inject() {
    // A fault that starts 1s into inject (startAfter: 1s): the SLO breaks a second after it.
    let (_, m) = recorded();
    let r = recovery(11..20, &m.seconds, &rule(60), m.phase(PhaseName::Baseline));
    assert_eq!(r.time_to_detect_seconds, Some(1.0));
}

#[test]
fn recovery_needs_the_slo_to_hold_for_the_whole_run_of_seconds() {
    let (t, mut m) = recorded();
    // A single bad second at 26 restarts the count: 24, 25 hold, 26 breaks, 27..31 hold.
    m.seconds[26] = Some(fig(500, 0.0));
    let r = recovery(t.inject().start..20, &m.seconds, &rule(60), None);
    assert_eq!(r.time_to_recover_seconds, Some(7.0));
    // Seconds that were not measured never count as holding.
    m.seconds[28] = None;
    assert_eq!(recovery(t.inject().start..20, &m.seconds, &rule(60), None).time_to_recover_seconds, Some(9.0));
    // Never recovered within the run.
    let bad: Vec<Option<Figures>> = (0..40).map(|s| Some(if s < 10 { fig(20, 0.0) } else { fig(500, 0.0) })).collect();
    assert_eq!(recovery(t.inject().start..20, &bad, &rule(60), None).time_to_recover_seconds, None);
}

#[test]
fn relative_slos_resolve_against_the_baseline() {
    let (t, m) = recorded();
    let relative = RecoveryRule { slo: vec!["p99 <= 2x baseline".into()], hold: 3, within: None };
    let r = recovery(t.inject().start..20, &m.seconds, &relative, m.phase(PhaseName::Baseline));
    assert_eq!((r.time_to_detect_seconds, r.time_to_recover_seconds), (Some(2.0), Some(4.0)));
}

#[test]
fn expectations_are_judged_on_inject_against_the_baseline() {
    let (t, m) = recorded();
    let expectations = vec!["p99 <= 30x baseline".to_owned(), "errorRate <= baseline + 5%".to_owned()];
    let j = judge(&m, &expectations, Some(&rule(10)), t.inject().start..20, &effect(true));
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.message);
    assert_eq!(j.expectations.len(), 3);
    assert_eq!(j.expectations[0].threshold.as_deref(), Some("600ms"), "30 x the baseline's 20ms");
    let timing = &j.expectations[2];
    assert_eq!(timing.expression, "recoveredWithin 10.0s");
    assert_eq!((timing.observed.as_deref(), timing.passed), (Some("4.0s"), true));
    assert_eq!(j.recovery.unwrap().time_to_detect_seconds, Some(2.0));
}

#[test]
fn a_failed_expectation_is_named_with_its_observed_value() {
    let (t, m) = recorded();
    let j = judge(&m, &["p99 <= 2x baseline".to_owned()], Some(&rule(3)), t.inject().start..20, &effect(true));
    assert_eq!(j.verdict, Verdict::Fail);
    assert!(j.message.contains("p99 <= 2x baseline (observed 480ms)"), "{}", j.message);
    assert!(j.message.contains("recoveredWithin 3.0s (observed 4.0s)"), "{}", j.message);
}

#[test]
fn no_observable_effect_is_inconclusive_even_when_everything_held() {
    let (t, m) = recorded();
    let j = judge(&m, &["p99 < 10s".to_owned()], None, t.inject().start..20, &effect(false));
    assert_eq!(j.verdict, Verdict::Inconclusive);
    assert!(j.message.contains("no observable effect (slow: 412 requests crossed the proxy)"), "{}", j.message);
    // One fault with an effect is enough.
    let mut two = effect(false);
    two.push(Effect { fault: "kill".into(), observed: true, evidence: "1 pod killed".into() });
    assert_eq!(judge(&m, &["p99 < 10s".to_owned()], None, t.inject().start..20, &two).verdict, Verdict::Pass);
}

#[test]
fn nothing_measured_during_inject_is_inconclusive() {
    let (t, mut m) = recorded();
    m.phases.retain(|(n, _)| *n != PhaseName::Inject);
    let j = judge(&m, &["p99 < 10s".to_owned()], None, t.inject().start..20, &effect(true));
    assert_eq!(j.verdict, Verdict::Inconclusive);
    assert!(j.message.contains("no request was measured during inject"));
}

#[test]
fn phase_results_carry_each_window_and_its_figures() {
    let (t, m) = recorded();
    let start = Timestamp::from_second(1_800_000_000).unwrap();
    let phases = phase_results(&t, start, &m);
    assert_eq!(phases.len(), 3);
    assert_eq!(phases[1].name, PhaseName::Inject);
    assert_eq!(phases[1].started_at.0, Timestamp::from_second(1_800_000_010).unwrap());
    assert_eq!(phases[1].finished_at.as_ref().unwrap().0, Timestamp::from_second(1_800_000_020).unwrap());
    assert_eq!(phases[1].latency.as_ref().unwrap().p99_ms, 480.0);
    assert_eq!(phases[1].error_rate, Some(0.04));
}
