//! Judging an AutoscalingCheck from the replica timeline it recorded: time to the first
//! scale-up, the peak of ready replicas and when it was reached, the SLO while scaling up,
//! the scale-down after the load, and flaps (direction changes of the desired count while the
//! load is steady). Pure: the environment samples the HPA and the Deployment, this module judges.
//!
//! Definitions (docs/api.md, AutoscalingCheck): the **first scale-up** is the first sample after
//! the load's start whose desired count is above the count at the start; the **peak** is the
//! most ready replicas seen; **scaled down** is the first sample after the load's end whose
//! desired count is at the HPA's minimum.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::{
    api::{
        common::human_duration,
        figures::ExpectationResult,
        trial::{ReplicaSample, ScalingExpectations},
    },
    load::verdict::{Figures, judge as judge_expression},
    trial::judge::timing,
};

/// The scale-down stabilization window an HPA uses when its `behavior` names none.
pub const DEFAULT_SCALE_DOWN_STABILIZATION: Duration = Duration::from_secs(300);

/// What the check observed besides the samples.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRun {
    pub load_start: Timestamp,
    pub load_end: Timestamp,
    /// Until when replicas were watched after the load (`observeScaleDownFor`).
    pub observed_until: Timestamp,
    /// The HPA's `minReplicas` (1 when unset).
    pub min_replicas: i32,
    /// The HPA's `behavior.scaleDown.stabilizationWindowSeconds`, or the default.
    pub scale_down_stabilization: Duration,
    /// When the load was steady (no stage changing its level), where flaps are counted.
    pub steady: Vec<(Timestamp, Timestamp)>,
}

/// The figures and the expectations' results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScalingJudged {
    pub expectations: Vec<ExpectationResult>,
    pub peak_replicas: Option<i32>,
    pub time_to_first_scale_up: Option<Duration>,
    pub time_to_peak: Option<Duration>,
    pub time_to_scale_down: Option<Duration>,
    pub flaps: u32,
    /// The window the SLO is judged on: the load's start to the peak (or to the load's end).
    pub scale_up_window: (Timestamp, Timestamp),
}

fn at_offset(start: Timestamp, offset: Duration) -> Timestamp {
    k8s_openapi::jiff::SignedDuration::try_from(offset).ok().and_then(|o| start.checked_add(o).ok()).unwrap_or(start)
}

fn since(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

/// Direction changes of the desired count among `samples` (in time order).
fn direction_changes<'a>(samples: impl Iterator<Item = &'a ReplicaSample>) -> u32 {
    let mut last: Option<i32> = None;
    let mut direction = 0i32;
    let mut changes = 0;
    for sample in samples {
        if let Some(previous) = last {
            let step = (sample.desired - previous).signum();
            if step != 0 {
                if direction != 0 && step != direction {
                    changes += 1;
                }
                direction = step;
            }
        }
        last = Some(sample.desired);
    }
    changes
}

/// The figures of the check, without the SLO (which needs the load's figures over
/// [`ScalingJudged::scale_up_window`]): call [`judge`] with them.
pub fn figures(samples: &[ReplicaSample], run: &ScalingRun) -> ScalingJudged {
    let at = |s: &ReplicaSample| s.at.0;
    let initial = samples.iter().rev().find(|s| at(s) <= run.load_start).or(samples.first()).map(|s| s.desired);
    let during_and_after: Vec<&ReplicaSample> = samples.iter().filter(|s| at(s) >= run.load_start).collect();
    let first_up = initial
        .and_then(|initial| during_and_after.iter().find(|s| s.desired > initial))
        .map(|s| since(run.load_start, at(s)));
    // The count in force at the load's start counts too: a timeline keeps changes only, so a
    // count that never changed has no sample after the start.
    let in_force = samples.iter().rev().find(|s| at(s) <= run.load_start);
    let from_start: Vec<&ReplicaSample> = in_force.into_iter().chain(during_and_after.iter().copied()).collect();
    let peak = from_start.iter().map(|s| s.ready).max();
    let peak_at = peak.and_then(|p| from_start.iter().find(|s| s.ready == p).map(|s| at(s).max(run.load_start)));
    // Only what scaled up can scale down: a count that never left the minimum proves nothing.
    let scaled_down = first_up.and_then(|up| {
        let from = run.load_end.max(at_offset(run.load_start, up));
        samples
            .iter()
            .filter(|s| at(s) >= from && at(s) <= run.observed_until)
            .find(|s| s.desired <= run.min_replicas)
            .map(|s| since(run.load_end, at(s)))
    });
    // Each steady window starts from the count it was entered with (the last sample before it).
    let flaps = run
        .steady
        .iter()
        .map(|(from, to)| {
            let entered = samples.iter().rev().find(|s| at(s) < *from);
            direction_changes(entered.into_iter().chain(samples.iter().filter(|s| at(s) >= *from && at(s) <= *to)))
        })
        .sum();
    // The SLO is judged from the load's start to a peak reached under it; a count that never
    // rose (pods Pending, an HPA that never acts) is judged over the whole load.
    let scale_up_end = peak_at.filter(|p| *p > run.load_start && *p <= run.load_end).unwrap_or(run.load_end);
    ScalingJudged {
        expectations: Vec::new(),
        peak_replicas: peak,
        time_to_first_scale_up: first_up,
        time_to_peak: peak_at.map(|p| since(run.load_start, p)),
        time_to_scale_down: scaled_down,
        flaps,
        scale_up_window: (run.load_start, scale_up_end),
    }
}

/// Judges `expect` on the figures of [`figures`] and the load's figures over the scale-up
/// window (`None` when no request was measured there).
pub fn judge(
    mut judged: ScalingJudged,
    run: &ScalingRun,
    expect: &ScalingExpectations,
    scale_up_load: Option<&Figures>,
) -> ScalingJudged {
    let mut results = Vec::new();
    if let Some(within) = expect.scale_up_within.map(|d| d.as_std()) {
        results.push(timing("scaleUpWithin", within, judged.time_to_first_scale_up, "never scaled up", None));
    }
    if let Some(min) = expect.min_peak_replicas {
        results.push(ExpectationResult {
            expression: format!("minPeakReplicas {min}"),
            observed: Some(judged.peak_replicas.map_or_else(|| "no sample".to_owned(), |p| p.to_string())),
            threshold: Some(min.to_string()),
            passed: judged.peak_replicas.is_some_and(|p| p >= min),
            message: None,
        });
    }
    for slo in &expect.slo {
        let mut result = match scale_up_load.filter(|f| f.total > 0) {
            Some(figures) => judge_expression(slo, figures, None),
            None => ExpectationResult {
                expression: slo.clone(),
                message: Some("no request was measured while scaling up".to_owned()),
                ..ExpectationResult::default()
            },
        };
        result.expression = format!("slo while scaling up: {}", result.expression);
        results.push(result);
    }
    if let Some(within) = expect.scale_down_within.map(|d| d.as_std()) {
        let watched = since(run.load_end, run.observed_until);
        let never = if judged.time_to_first_scale_up.is_none() {
            "never scaled up".to_owned()
        } else {
            format!("not back to {} within the {} watched", run.min_replicas, human_duration(watched))
        };
        // The HPA scales down only after its stabilization window: a shorter deadline cannot be
        // met, whatever the application does. Say so instead of blaming it.
        let why = (judged.time_to_first_scale_up.is_some()
            && within < run.scale_down_stabilization
            && judged.time_to_scale_down.is_none_or(|t| t > within))
            .then(|| {
                format!(
                    "the HPA waits its scale-down stabilization window ({}) before it removes replicas, so {} cannot be met: raise scaleDownWithin or shorten the HPA's behavior.scaleDown.stabilizationWindowSeconds",
                    human_duration(run.scale_down_stabilization),
                    human_duration(within)
                )
            });
        results.push(timing("scaleDownWithin", within, judged.time_to_scale_down, &never, why));
    }
    if let Some(max) = expect.max_flaps {
        results.push(ExpectationResult {
            expression: format!("maxFlaps {max}"),
            observed: Some(judged.flaps.to_string()),
            threshold: Some(max.to_string()),
            passed: judged.flaps <= max,
            message: None,
        });
    }
    judged.expectations = results;
    judged
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    const T0: i64 = 1_800_000_000;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(T0 + s).unwrap()
    }

    /// `(second, desired, ready)` from the load's start.
    fn samples(points: &[(i64, i32, i32)]) -> Vec<ReplicaSample> {
        points.iter().map(|&(s, desired, ready)| ReplicaSample { at: Time(t(s)), desired, ready }).collect()
    }

    fn run() -> ScalingRun {
        // 10 s ramp, steady from 10 s to 300 s, load ends at 300 s, watched until 720 s.
        ScalingRun {
            load_start: t(0),
            load_end: t(300),
            observed_until: t(720),
            min_replicas: 1,
            scale_down_stabilization: DEFAULT_SCALE_DOWN_STABILIZATION,
            steady: vec![(t(10), t(300))],
        }
    }

    fn expect(yaml: &str) -> ScalingExpectations {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn fast(p99_ms: u64) -> Figures {
        Figures { p99: Duration::from_millis(p99_ms), total: 1000, ..Figures::default() }
    }

    fn results(judged: &ScalingJudged) -> Vec<(String, String, bool)> {
        judged
            .expectations
            .iter()
            .map(|r| (r.expression.clone(), r.observed.clone().unwrap_or_default(), r.passed))
            .collect()
    }

    #[test]
    fn an_hpa_that_scales_up_and_back_passes_with_its_timeline_figures() {
        let s = samples(&[
            (-5, 1, 1),
            (30, 2, 1),
            (45, 4, 2),
            (60, 4, 4),
            (75, 5, 4),
            (90, 5, 5),
            (610, 1, 5),
            (640, 1, 1),
        ]);
        let judged = figures(&s, &run());
        assert_eq!(judged.time_to_first_scale_up, Some(Duration::from_secs(30)));
        assert_eq!(judged.peak_replicas, Some(5));
        assert_eq!(judged.time_to_peak, Some(Duration::from_secs(90)));
        assert_eq!(judged.time_to_scale_down, Some(Duration::from_secs(310)));
        assert_eq!(judged.flaps, 0, "only up while steady");
        assert_eq!(judged.scale_up_window, (t(0), t(90)));
        let judged = judge(
            judged,
            &run(),
            &expect("{scaleUpWithin: 1m, minPeakReplicas: 4, slo: ['p99 < 300ms'], scaleDownWithin: 6m, maxFlaps: 1}"),
            Some(&fast(120)),
        );
        assert_eq!(
            results(&judged),
            vec![
                ("scaleUpWithin 1m0s".into(), "30.0s".into(), true),
                ("minPeakReplicas 4".into(), "5".into(), true),
                ("slo while scaling up: p99 < 300ms".into(), "120ms".into(), true),
                ("scaleDownWithin 6m0s".into(), "5m10s".into(), true),
                ("maxFlaps 1".into(), "0".into(), true),
            ]
        );
        assert!(judged.expectations.iter().all(|r| r.message.is_none()));
    }

    #[test]
    fn an_hpa_that_never_scales_fails_naming_what_it_never_did() {
        let s = samples(&[(-5, 1, 1), (60, 1, 1), (300, 1, 1)]);
        let judged = judge(
            figures(&s, &run()),
            &run(),
            &expect("{scaleUpWithin: 1m, minPeakReplicas: 3, slo: ['p99 < 300ms'], scaleDownWithin: 6m}"),
            Some(&fast(900)),
        );
        assert_eq!(
            results(&judged),
            vec![
                ("scaleUpWithin 1m0s".into(), "never scaled up".into(), false),
                ("minPeakReplicas 3".into(), "1".into(), false),
                ("slo while scaling up: p99 < 300ms".into(), "900ms".into(), false),
                // At the minimum all along: that is no scale-down.
                ("scaleDownWithin 6m0s".into(), "never scaled up".into(), false),
            ]
        );
        // A timeline keeps changes only: a count that never changed is the sample before the
        // load alone, and it is still the peak.
        let unchanged = figures(&samples(&[(-1, 1, 1)]), &run());
        assert_eq!((unchanged.peak_replicas, unchanged.time_to_peak), (Some(1), Some(Duration::ZERO)));
        let r = run();
        assert_eq!(unchanged.scale_up_window, (r.load_start, r.load_end), "the SLO is judged over the whole load");
    }

    #[test]
    fn flaps_are_direction_changes_while_the_load_is_steady() {
        // Up during the ramp (not counted), then 3 → 4 → 3 → 4 → 4 → 3 while steady: 3 changes.
        let s = samples(&[(-1, 1, 1), (5, 3, 3), (20, 4, 4), (40, 3, 3), (60, 4, 4), (80, 4, 4), (100, 3, 3)]);
        let judged = figures(&s, &run());
        assert_eq!(judged.flaps, 3);
        let judged = judge(judged, &run(), &expect("{maxFlaps: 2}"), None);
        assert_eq!(results(&judged), vec![("maxFlaps 2".into(), "3".into(), false)]);
    }

    #[test]
    fn a_scale_down_deadline_shorter_than_the_stabilization_window_is_explained() {
        // Down 5m10s after the load (the default 5m window): a 2m deadline cannot be met.
        let s = samples(&[(-1, 1, 1), (30, 3, 3), (610, 1, 1)]);
        let judged = judge(figures(&s, &run()), &run(), &expect("{scaleDownWithin: 2m}"), None);
        let result = &judged.expectations[0];
        assert!(!result.passed);
        assert_eq!(result.observed.as_deref(), Some("5m10s"));
        let why = result.message.as_deref().unwrap();
        assert!(why.contains("stabilization window (5m0s)") && why.contains("2m0s cannot be met"), "{why}");
        // With the window shortened to 60 s, the same deadline is the application's to meet.
        let short = ScalingRun { scale_down_stabilization: Duration::from_secs(60), ..run() };
        let s = samples(&[(-1, 1, 1), (30, 3, 3), (380, 1, 1)]);
        let judged = judge(figures(&s, &short), &short, &expect("{scaleDownWithin: 2m}"), None);
        assert_eq!(results(&judged), vec![("scaleDownWithin 2m0s".into(), "1m20s".into(), true)]);
        // Never back within what was watched.
        let s = samples(&[(-1, 1, 1), (30, 3, 3)]);
        let judged = judge(figures(&s, &short), &short, &expect("{scaleDownWithin: 2m}"), None);
        assert_eq!(judged.expectations[0].observed.as_deref(), Some("not back to 1 within the 7m0s watched"));
        assert!(judged.expectations[0].message.is_none());
    }

    #[test]
    fn without_requests_while_scaling_the_slo_cannot_be_judged() {
        let s = samples(&[(-1, 1, 1), (30, 2, 2)]);
        let judged = judge(figures(&s, &run()), &run(), &expect("{slo: ['errorRate < 1%']}"), None);
        let result = &judged.expectations[0];
        assert!(!result.passed && result.message.as_deref() == Some("no request was measured while scaling up"));
        let (verdict, _) = super::super::judge::verdict_of(&judged.expectations, &[]);
        assert_eq!(verdict, crate::api::Verdict::Inconclusive);
    }
}
