use std::time::Duration;

use hdrhistogram::serialization::V2DeflateSerializer;

use super::*;
use crate::load::{measure::Outcome, stages::constant};

fn stage(secs: u64, target: u32) -> Stage {
    Stage { duration: crate::api::common::GoDuration::from_secs(secs), target }
}

/// A second of `n` requests with latencies spread over `1..=spread` ms, some failing.
fn second(s: u64, n: u64, spread: u64) -> Bucket {
    let mut recorder = crate::load::LoadRecorder::new().expect("recorder");
    for i in 0..n {
        let intended = Duration::from_secs(s) + Duration::from_micros(i * 1_000_000 / n.max(1));
        let done = intended + Duration::from_millis(1 + i % spread);
        let outcome = if i % 10 == 0 { Outcome::Status5xx } else { Outcome::Ok };
        recorder.record(intended, intended, done, outcome);
    }
    recorder.take_before(s + 1).pop().map(|(_, b)| b).unwrap_or_else(|| Bucket::new().expect("bucket"))
}

#[test]
fn a_report_folds_seconds_and_survives_encoding_exactly() {
    let plan = constant(100, Duration::from_secs(10)).expect("plan");
    let mut builder = ReportBuilder::new(0, &plan).expect("builder");
    for s in 0..10 {
        builder.fold(s, &second(s, 100, 50)).expect("fold");
    }
    let report = builder.report(RunnerState::Done, None).expect("report");
    assert_eq!(report.points.len(), 10);
    assert_eq!(report.sealed, 10);
    assert_eq!(report.total.counts.total, 1000);
    assert_eq!(report.total.counts.status5xx, 100);
    assert!(report.points.iter().all(|p| p.seconds() == 1 && p.counts().total == 100));
    let bytes = report.encode().expect("encode");
    assert_eq!(RunnerReport::decode(&bytes).expect("decode"), report);
    assert!(RunnerReport::decode(&bytes[..bytes.len() / 2]).is_err(), "a truncated report is an error");
}

#[test]
fn a_long_plan_gets_coarser_points_and_a_bounded_report() {
    assert_eq!(resolution_for(Duration::from_secs(3600)), 1);
    assert_eq!(resolution_for(Duration::from_secs(3601)), 2);
    assert_eq!(resolution_for(Duration::from_secs(24 * 3600)), 24);
    // Two hours at 2 s per point: each point folds two seconds.
    let plan = constant(50, Duration::from_secs(7200)).expect("plan");
    let mut builder = ReportBuilder::new(0, &plan).expect("builder");
    let one = second(0, 50, 200);
    for s in 0..40 {
        builder.fold(s, &one).expect("fold");
    }
    let mut report = builder.report(RunnerState::Running, None).expect("report");
    assert_eq!(report.points.len(), 20);
    assert!(report.points.iter().all(|p| p.seconds() == 2 && p.counts().total == 100));
    // The largest report there can be: the most points and the most steps, each step's
    // histograms as wide as a whole second's spread of 1..200 ms.
    // Every point and step differs, so compression finds no repeats to fold.
    let mut serializer = V2DeflateSerializer::new();
    report.points = (0..MAX_POINTS)
        .map(|i| {
            let n = 10_000 + i * 7919 % 5000;
            Point(
                i * 2,
                2,
                [n, n - i % 97, i % 13, i % 7, i % 5, i % 89, 0, i % 3, i % 11],
                [
                    900 + i % 1000,
                    4000 + i * 31 % 3000,
                    6000 + i * 17 % 4000,
                    20_000 + i * 101 % 30_000,
                    90_000 + i * 7 % 50_000,
                    250_000 + i * 13 % 100_000,
                    2000 + i % 1500,
                ],
            )
        })
        .collect();
    let step = report.steps[0].clone();
    report.steps = (0..100)
        .map(|i| StepReport {
            index: i,
            bucket: BucketReport::of(&second(u64::from(i), 2000, 50 + u64::from(i) * 10), &mut serializer)
                .expect("bucket"),
            ..step.clone()
        })
        .collect();
    let bytes = report.encode().expect("encode");
    // Measured: 139 406 bytes, a seventh of the 1 MiB object limit.
    assert!(bytes.len() < 1024 * 1024 / 2, "the largest report is {} bytes", bytes.len());
}

#[test]
fn steps_are_judged_over_their_settled_seconds_only() {
    // 0 → 100 over 4 s, hold 6 s; then → 200 over 2 s, hold 4 s.
    let plan = Plan { start: 0, stages: vec![stage(4, 100), stage(6, 100), stage(2, 200), stage(4, 200)] };
    let mut builder = ReportBuilder::new(0, &plan).expect("builder");
    for s in 0..12 {
        builder.fold(s, &second(s, 10, 5)).expect("fold");
    }
    let partial = builder.report(RunnerState::Running, None).expect("report");
    let first = &partial.steps[0];
    assert_eq!((first.level, first.from, first.to, first.complete), (100, 4, 10, true));
    assert_eq!(first.bucket.counts.total, 60, "seconds 4..10 only, not the ramp");
    assert!(partial.steps.iter().skip(1).all(|s| !s.complete), "the second step is still open");
    for s in 12..16 {
        builder.fold(s, &second(s, 10, 5)).expect("fold");
    }
    let done = builder.report(RunnerState::Done, None).expect("report");
    let last = done.steps.last().expect("step");
    assert_eq!((last.level, last.from, last.to, last.complete), (200, 12, 16, true));
    assert_eq!(last.bucket.counts.total, 40);
}

#[test]
fn a_restarted_runner_keeps_what_it_sealed_and_records_the_gap() {
    let plan = constant(10, Duration::from_secs(20)).expect("plan");
    let mut builder = ReportBuilder::new(3, &plan).expect("builder");
    for s in 0..5 {
        builder.fold(s, &second(s, 10, 5)).expect("fold");
    }
    let before = builder.report(RunnerState::Running, None).expect("report");
    let mut resumed = ReportBuilder::resume(&plan, &before, 8).expect("resume");
    assert_eq!((resumed.attempt(), resumed.sealed()), (2, 8));
    resumed.fold(6, &second(6, 10, 5)).expect("a second inside the gap is ignored");
    for s in 8..20 {
        resumed.fold(s, &second(s, 10, 5)).expect("fold");
    }
    let after = resumed.report(RunnerState::Done, None).expect("report");
    assert_eq!(after.runner, 3);
    assert_eq!(after.gaps, vec![(5, 8)]);
    assert_eq!(after.total.counts.total, 170, "5 + 12 seconds of 10");
    assert_eq!(after.points.len(), 17);
}

#[test]
fn runners_merge_exactly_for_the_run_and_steps_and_add_points() {
    let plan = constant(20, Duration::from_secs(5)).expect("plan");
    let (mut a, mut b) = (ReportBuilder::new(0, &plan).expect("a"), ReportBuilder::new(1, &plan).expect("b"));
    let mut both = Bucket::new().expect("bucket");
    for s in 0..5 {
        let (x, y) = (second(s, 10, 5), second(s, 10, 400));
        a.fold(s, &x).expect("fold");
        b.fold(s, &y).expect("fold");
        both.add(&x).expect("add");
        both.add(&y).expect("add");
    }
    let ra = a.report(RunnerState::Done, None).expect("report");
    let rb = b.report(RunnerState::Running, None).expect("report");
    let merged = MergedRun::merge([&ra, &rb]).expect("merge");
    assert_eq!(merged.total, both, "the run's histograms merge exactly");
    assert_eq!(merged.points.len(), 5);
    assert_eq!(merged.points[0].counts().total, 20);
    assert_eq!(merged.points[0].p99(), rb.points[0].p99(), "per-point p99 is the larger runner's");
    assert!(merged.points[0].p99() > ra.points[0].p99());
    assert_eq!(merged.steps.len(), 1);
    assert!(merged.steps[0].complete);
    assert_eq!(merged.steps[0].bucket.counts.total, 100);
    assert_eq!(merged.sealed, 5);

    // A runner that has not reached a step keeps the merged step incomplete.
    let mut late = ReportBuilder::new(1, &plan).expect("late");
    late.fold(0, &second(0, 10, 5)).expect("fold");
    let rl = late.report(RunnerState::Running, None).expect("report");
    let merged = MergedRun::merge([&ra, &rl]).expect("merge");
    assert!(!merged.steps[0].complete);
    assert_eq!(merged.sealed, 1);
}

#[test]
fn report_names_fit_and_stay_unique() {
    let long = "a".repeat(253);
    let name = report_name(&long, "0f1e2d3c-aaaa-bbbb-cccc-123456789012", 63);
    assert!(name.len() <= 253, "{}", name.len());
    assert!(name.ends_with("-0f1e2d3c-runner-63"));
    assert_ne!(report_name("web", "uid-1", 0), report_name("web", "uid-2", 0));
}

#[test]
fn a_window_of_points_has_exact_counts_and_percentiles_bounded_by_its_seconds() {
    let plan = constant(100, Duration::from_secs(10)).expect("plan");
    let mut builder = ReportBuilder::new(0, &plan).expect("builder");
    let mut exact = Bucket::new().expect("bucket");
    for s in 0..10 {
        // Seconds 4 to 6 are slow (up to 400 ms), the others fast (up to 20 ms).
        let b = second(s, 200, if (4..7).contains(&s) { 400 } else { 20 });
        if (2..8).contains(&s) {
            exact.add(&b).expect("add");
        }
        builder.fold(s, &b).expect("fold");
    }
    let report = builder.report(RunnerState::Done, None).expect("report");
    let estimated = window_figures(&report.points, 2..8, Some(100.0)).expect("estimate").expect("requests");
    let truth = exact.figures(6.0, Some(100.0)).figures;
    assert_eq!((estimated.total, estimated.achieved_rate), (truth.total, truth.achieved_rate));
    assert!((estimated.error_rate - truth.error_rate).abs() < 1e-12);
    // Half the window is slow: p50 sits at the bins' edge and p99 near the slow seconds' p99.
    for (name, e, t) in [("p50", estimated.p50, truth.p50), ("p99", estimated.p99, truth.p99)] {
        let ratio = e.as_secs_f64() / t.as_secs_f64();
        assert!((0.9..=2.0).contains(&ratio), "{name}: estimated {e:?}, exact {t:?}");
    }
    let worst_second = report.points.iter().filter(|p| (2..8).contains(&p.0)).map(Point::p99).max().expect("points");
    assert!(estimated.p99 <= worst_second, "never above the worst second's p99");
    assert_eq!(window_figures(&report.points, 20..30, None).expect("estimate"), None);
}
