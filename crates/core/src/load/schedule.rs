//! The open model's schedule: the intended start of every request, computed from the plan
//! alone, so that a slow or stalled server can never delay it (no coordinated omission).
//!
//! The plan's rate r(t) is piecewise linear, and the number of requests due by time t is its
//! integral C(t). Request k (counting from 0 over all runners) is due when C(t) reaches
//! k + ½: the count sent by any moment is then C(t) rounded to the nearest whole request, so
//! the schedule never leads or lags the plan by more than half a request, ramps included (a
//! ramp from 0 to R over T sends R·T/2 requests, not R·T). The plan covers `[0, total)`:
//! a request due exactly at its end is not sent.
//!
//! N runners share the load by taking every N-th request of that one schedule: runner i sends
//! requests i, i + N, i + 2N, … Merged, their schedules *are* the single-runner schedule, and
//! their counts differ by at most one.
//!
//! The arithmetic locating a request is exact: integrals are kept in integers of 1/(2·10⁹)
//! request (the rates are whole numbers per second and the stages whole nanoseconds), and only
//! the position inside one stage is solved in floating point, to the nearest nanosecond.

use std::time::Duration;

use crate::api::load::Stage;

use super::stages::Plan;

/// Units of the integral per request: an integral in these units is exact for whole-number
/// rates over whole nanoseconds, because (r₀ + r₁)/2 · t_ns/10⁹ requests = (r₀ + r₁) · t_ns units.
const UNITS_PER_REQUEST: u128 = 2_000_000_000;

/// Which share of the load a runner takes: runner `index` of `of`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerShare {
    pub index: u32,
    pub of: u32,
}

impl RunnerShare {
    /// The whole load, in one runner.
    pub const SINGLE: RunnerShare = RunnerShare { index: 0, of: 1 };
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("runner {index} of {of} does not exist: runners are numbered from 0 to {of} - 1")]
    NoSuchRunner { index: u32, of: u32 },
    #[error("a load needs at least one runner")]
    NoRunners,
}

/// One stage, with the integral before and after it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    start_ns: u64,
    len_ns: u64,
    from: u64,
    to: u64,
    /// The integral of the rate up to the segment's start, in [`UNITS_PER_REQUEST`]ths.
    before: u128,
    /// The same up to its end.
    after: u128,
}

impl Segment {
    /// The offset within the segment where the integral has grown by `units` (less than the
    /// segment's own integral), in nanoseconds.
    fn solve(&self, units: u128) -> u64 {
        if units == 0 {
            return 0;
        }
        let ns = if self.from == self.to {
            // A hold: t = c / r, in integers (rounded to the nearest nanosecond), so a constant
            // rate gives exactly even spacing. `from > 0` since the segment holds a request.
            let rate2 = 2 * u128::from(self.from);
            u64::try_from((units + rate2 / 2) / rate2).unwrap_or(u64::MAX)
        } else {
            // A ramp: C(τ) = r₀τ + aτ² with a = (r₁ - r₀)/2T. The root is taken as
            // 2c / (r₀ + √(r₀² + 4ac)), the form that stays accurate when a is small or
            // negative; √(r₀² + 4ac) is the rate reached at τ, so it is never imaginary but
            // for rounding.
            let c = units as f64 / UNITS_PER_REQUEST as f64;
            let length = self.len_ns as f64 / 1e9;
            let r0 = self.from as f64;
            let a = (self.to as f64 - r0) / (2.0 * length);
            let rate_then = (r0 * r0 + 4.0 * a * c).max(0.0).sqrt();
            let tau = 2.0 * c / (r0 + rate_then);
            (tau * 1e9).round() as u64
        };
        // Rounding must not carry a request out of its own segment.
        ns.min(self.len_ns.saturating_sub(1))
    }
}

/// One runner's schedule over a plan: the intended start offsets of its requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    segments: Vec<Segment>,
    runner: u64,
    runners: u64,
    /// Requests over all runners.
    planned: u64,
}

impl Schedule {
    /// The schedule of runner `share.index` of `share.of`, for stages whose targets are rates
    /// and which start from `start_rate`.
    pub fn new(start_rate: u32, stages: &[Stage], share: RunnerShare) -> Result<Self, ScheduleError> {
        if share.of == 0 {
            return Err(ScheduleError::NoRunners);
        }
        if share.index >= share.of {
            return Err(ScheduleError::NoSuchRunner { index: share.index, of: share.of });
        }
        let mut segments = Vec::with_capacity(stages.len());
        let (mut from, mut start_ns, mut before) = (u64::from(start_rate), 0u64, 0u128);
        for stage in stages {
            let len_ns = u64::try_from(stage.duration.as_std().as_nanos()).unwrap_or(u64::MAX);
            let to = u64::from(stage.target);
            let after = before + u128::from(from + to) * u128::from(len_ns);
            segments.push(Segment { start_ns, len_ns, from, to, before, after });
            (from, start_ns, before) = (to, start_ns.saturating_add(len_ns), after);
        }
        // Requests k with k + ½ < C(total), i.e. (2k + 1)·10⁹ < C in units.
        let half = UNITS_PER_REQUEST / 2;
        let planned = if before <= half { 0 } else { (before - half - 1) / UNITS_PER_REQUEST + 1 };
        let planned = u64::try_from(planned).unwrap_or(u64::MAX);
        Ok(Self { segments, runner: u64::from(share.index), runners: u64::from(share.of), planned })
    }

    /// The schedule of a plan whose levels are rates.
    pub fn for_plan(plan: &Plan, share: RunnerShare) -> Result<Self, ScheduleError> {
        Self::new(plan.start, &plan.stages, share)
    }

    /// Requests the plan schedules over all runners.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// Requests this runner sends.
    pub fn len(&self) -> u64 {
        if self.planned > self.runner { (self.planned - self.runner - 1) / self.runners + 1 } else { 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The intended start of this runner's request `seq` (0, 1, 2, … in its own order), as an
    /// offset from the start of the load; `None` past the last one.
    pub fn intended(&self, seq: u64) -> Option<Duration> {
        let k = self.global(seq)?;
        let target = target_units(k);
        let segment = self.segments.partition_point(|s| s.after <= target);
        self.at(k, segment).map(|(at, _)| at)
    }

    /// How many of this runner's requests are due by `now` (intended start ≤ now).
    pub fn due_by(&self, now: Duration) -> u64 {
        // The intended starts only grow with `seq`, so the count is a partition point.
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match self.intended(mid) {
                Some(at) if at <= now => low = mid + 1,
                _ => high = mid,
            }
        }
        low
    }

    /// This runner's intended starts, in order.
    pub fn iter(&self) -> Intents<'_> {
        Intents { schedule: self, cursor: Cursor::default() }
    }

    fn global(&self, seq: u64) -> Option<u64> {
        let k = seq.checked_mul(self.runners)?.checked_add(self.runner)?;
        (k < self.planned).then_some(k)
    }

    /// Request k's intended start, searching from segment `hint` on (the segment found is
    /// returned so a sequential walk never looks back).
    fn at(&self, k: u64, hint: usize) -> Option<(Duration, usize)> {
        let target = target_units(k);
        let mut i = hint;
        while self.segments.get(i)?.after <= target {
            i += 1;
        }
        let segment = self.segments.get(i)?;
        let offset = segment.solve(target - segment.before);
        Some((Duration::from_nanos(segment.start_ns.saturating_add(offset)), i))
    }
}

/// Where request k (over all runners) is due, in units of the integral: at k + ½ requests.
fn target_units(k: u64) -> u128 {
    u128::from(k) * UNITS_PER_REQUEST + UNITS_PER_REQUEST / 2
}

/// A position in a runner's schedule: its next request and the segment to search from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    seq: u64,
    segment: usize,
}

impl Cursor {
    fn peek(&self, schedule: &Schedule) -> Option<(Duration, usize)> {
        schedule.at(schedule.global(self.seq)?, self.segment)
    }
}

/// A runner's intended starts, in order.
#[derive(Clone, Debug)]
pub struct Intents<'a> {
    schedule: &'a Schedule,
    cursor: Cursor,
}

impl Iterator for Intents<'_> {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let (at, segment) = self.cursor.peek(self.schedule)?;
        self.cursor = Cursor { seq: self.cursor.seq + 1, segment };
        Some(at)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.schedule.len().saturating_sub(self.cursor.seq);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

/// One request a pacer hands out: the runner's sequence number and its intended start, from
/// which its latency counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    pub seq: u64,
    pub intended: Duration,
}

/// Hands out the requests that have come due, a batch per timer tick.
///
/// Timers have about 1 ms granularity (tokio's `sleep`, like wrk2's), so at 10 000 req/s one
/// timer per request would fall behind. The engine instead sleeps until [`Pacer::next_due`],
/// then takes every request due by the time it woke up. After a stall (the runner itself was
/// busy) the next batch is large and its intended starts are in the past: the requests go out
/// late, and their latency still counts from the intended start, so the stall shows.
#[derive(Clone, Debug)]
pub struct Pacer {
    schedule: Schedule,
    cursor: Cursor,
}

impl Pacer {
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule, cursor: Cursor::default() }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// When the next request is due; `None` once every request has been handed out.
    pub fn next_due(&self) -> Option<Duration> {
        self.cursor.peek(&self.schedule).map(|(at, _)| at)
    }

    /// Requests handed out so far.
    pub fn taken(&self) -> u64 {
        self.cursor.seq
    }

    pub fn is_done(&self) -> bool {
        self.cursor.seq >= self.schedule.len()
    }

    /// The requests due by `now` (intended start ≤ now) that were not handed out yet, in
    /// order. Requests the caller does not take stay for the next call.
    pub fn drain_due(&mut self, now: Duration) -> DrainDue<'_> {
        DrainDue { pacer: self, now }
    }

    /// How many requests are due by `now`; takes them, returning the first one's sequence
    /// number and the count. Their intended starts are `schedule().intended(seq)`.
    pub fn take_due(&mut self, now: Duration) -> (u64, u64) {
        let first = self.cursor.seq;
        let count = self.drain_due(now).count() as u64;
        (first, count)
    }
}

/// The iterator of [`Pacer::drain_due`].
#[derive(Debug)]
pub struct DrainDue<'a> {
    pacer: &'a mut Pacer,
    now: Duration,
}

impl Iterator for DrainDue<'_> {
    type Item = Due;

    fn next(&mut self) -> Option<Due> {
        let (intended, segment) = self.pacer.cursor.peek(&self.pacer.schedule)?;
        if intended > self.now {
            return None;
        }
        let seq = self.pacer.cursor.seq;
        self.pacer.cursor = Cursor { seq: seq + 1, segment };
        Some(Due { seq, intended })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{GoDuration, load::Preset},
        load::stages::{expand_preset, total_duration},
    };

    fn s(secs: f64, target: u32) -> Stage {
        Stage { duration: GoDuration(Duration::from_secs_f64(secs)), target }
    }

    fn single(start: u32, stages: &[Stage]) -> Schedule {
        Schedule::new(start, stages, RunnerShare::SINGLE).unwrap()
    }

    fn all(schedule: &Schedule) -> Vec<Duration> {
        schedule.iter().collect()
    }

    /// A deterministic generator for property-style loops (no dependency needed).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    fn random_stages(rng: &mut Lcg) -> (u32, Vec<Stage>) {
        let start = if rng.below(2) == 0 { 0 } else { rng.below(300) as u32 };
        let stages = (0..1 + rng.below(6))
            .map(|_| {
                let target = match rng.below(4) {
                    0 => 0,
                    _ => rng.below(400) as u32,
                };
                Stage { duration: GoDuration(Duration::from_millis(1000 + rng.below(20_000))), target }
            })
            .collect();
        (start, stages)
    }

    /// The exact integral of the plan up to t, in requests.
    fn integral(start: u32, stages: &[Stage], t: Duration) -> f64 {
        let (mut from, mut begin, mut area) = (f64::from(start), 0.0, 0.0);
        let t = t.as_secs_f64();
        for st in stages {
            let len = st.duration.as_std().as_secs_f64();
            let to = f64::from(st.target);
            if t < begin + len {
                let x = t - begin;
                return area + from * x + (to - from) * x * x / (2.0 * len);
            }
            area += (from + to) / 2.0 * len;
            from = to;
            begin += len;
        }
        area
    }

    #[test]
    fn a_constant_rate_is_evenly_spaced_and_exact() {
        let schedule = single(1000, &[s(10.0, 1000)]);
        let times = all(&schedule);
        assert_eq!(times.len(), 10_000);
        assert_eq!(schedule.len(), 10_000);
        assert_eq!(schedule.planned(), 10_000);
        assert_eq!(times[0], Duration::from_micros(500), "due when half a request has accumulated");
        for (k, w) in times.windows(2).enumerate() {
            assert_eq!(w[1] - w[0], Duration::from_millis(1), "request {k}");
        }
        assert_eq!(times[9_999], Duration::from_micros(9_999_500));
        for (k, t) in times.iter().enumerate() {
            assert_eq!(schedule.intended(k as u64), Some(*t));
        }
        assert_eq!(schedule.intended(10_000), None);
    }

    #[test]
    fn a_ramp_sends_its_integral() {
        for (rate, secs) in [(1000, 10.0), (1, 1.0), (3, 1.0), (7, 3.0), (999, 7.0), (100_000, 2.0), (1, 3600.0)] {
            let schedule = single(0, &[s(secs, rate)]);
            let want = f64::from(rate) * secs / 2.0;
            let got = schedule.iter().count() as f64;
            assert!((got - want).abs() <= 1.0, "0→{rate} over {secs}s: {got} requests, want {want}");
            // The first requests come slowly and the spacing shrinks as the rate grows.
            let times = all(&schedule);
            if times.len() > 2 {
                assert!(times[1] - times[0] >= times[times.len() - 1] - times[times.len() - 2]);
            }
        }
        // The k-th request of 0→1000 over 10s is due when 50t² = k + ½.
        let times = all(&single(0, &[s(10.0, 1000)]));
        assert_eq!(times.len(), 5000);
        for (k, t) in times.iter().enumerate().step_by(97) {
            let want = ((k as f64 + 0.5) / 50.0).sqrt();
            assert!((t.as_secs_f64() - want).abs() < 1e-9, "{k}: {t:?} vs {want}");
        }
        // Down again: the schedule mirrors the ramp up.
        let down = all(&single(1000, &[s(10.0, 0)]));
        assert_eq!(down.len(), 5000);
        for (a, b) in times.iter().zip(down.iter().rev()) {
            assert!((a.as_secs_f64() + b.as_secs_f64() - 10.0).abs() < 1e-6, "{a:?} {b:?}");
        }
    }

    #[test]
    fn zero_rate_stages_send_nothing() {
        let stages = [s(5.0, 0), s(2.0, 100), s(3.0, 100), s(2.0, 0), s(5.0, 0), s(1.0, 10)];
        let schedule = single(0, &stages);
        let times = all(&schedule);
        assert_eq!(times.len(), 100 + 300 + 100 + 5);
        assert!(times.iter().all(|t| *t >= Duration::from_secs(5)));
        assert!(!times.iter().any(|t| (Duration::from_secs(12)..Duration::from_secs(17)).contains(t)));
        assert!(times.iter().all(|t| *t < Duration::from_secs(18)));
        assert!(single(0, &[s(10.0, 0)]).is_empty());
        assert_eq!(single(0, &[s(10.0, 0)]).iter().next(), None);
        assert!(single(0, &[]).is_empty());
    }

    #[test]
    fn a_plan_that_starts_at_its_level_sends_from_the_start() {
        let spike = expand_preset(Preset::Spike, 100, None).unwrap();
        let schedule = Schedule::for_plan(&spike, RunnerShare::SINGLE).unwrap();
        let times = all(&schedule);
        assert_eq!(times[0], Duration::from_millis(5));
        assert_eq!(times[1], Duration::from_millis(15));
        let want = spike.area();
        assert!((times.len() as f64 - want).abs() <= 1.0, "{} vs {want}", times.len());
        // During the spike (61s..121s) the spacing is 1/500 s.
        let during: Vec<_> = times.iter().filter(|t| t.as_secs() >= 62 && t.as_secs() < 120).collect();
        assert!(during.windows(2).all(|w| *w[1] - *w[0] == Duration::from_millis(2)));
    }

    #[test]
    fn every_count_tracks_the_integral_within_half_a_request() {
        let mut rng = Lcg(7);
        for _ in 0..60 {
            let (start, stages) = random_stages(&mut rng);
            let schedule = single(start, &stages);
            let times = all(&schedule);
            let total = total_duration(&stages);
            assert_eq!(times.len() as u64, schedule.len());
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order");
            assert!(times.iter().all(|t| *t < total), "inside [0, total)");
            let area = integral(start, &stages, total);
            assert!((times.len() as f64 - area.round()).abs() <= 1.0, "{} vs {area}", times.len());
            for probe in 0..50 {
                let t = Duration::from_millis(rng.below(total.as_millis() as u64));
                let sent = schedule.due_by(t);
                let want = integral(start, &stages, t);
                assert!((sent as f64 - want).abs() <= 0.5 + 1e-6, "probe {probe} at {t:?}: {sent} vs {want}");
                assert_eq!(sent, times.partition_point(|x| *x <= t) as u64);
            }
        }
    }

    #[test]
    fn runners_interleave_into_the_single_schedule() {
        let mut rng = Lcg(42);
        let mut plans = vec![(1000, vec![s(10.0, 1000)]), (0, vec![s(10.0, 1000)]), (5, vec![s(3.0, 5)])];
        plans.extend((0..20).map(|_| random_stages(&mut rng)));
        for (start, stages) in plans {
            let whole = all(&single(start, &stages));
            for n in [1, 2, 3, 4, 7, 16, 64] {
                let shares: Vec<Vec<Duration>> = (0..n)
                    .map(|index| all(&Schedule::new(start, &stages, RunnerShare { index, of: n }).unwrap()))
                    .collect();
                let counts: Vec<usize> = shares.iter().map(Vec::len).collect();
                let (max, min) = (counts.iter().max().unwrap(), counts.iter().min().unwrap());
                assert!(max - min <= 1, "n={n}: {counts:?}");
                let mut merged: Vec<Duration> = shares.concat();
                merged.sort();
                assert_eq!(merged.len(), whole.len(), "n={n}");
                assert_eq!(merged, whole, "n={n}: together the runners send the single schedule");
                // Each runner's own share is about 1/N of the rate all along the plan.
                for (i, share) in shares.iter().enumerate() {
                    for (j, t) in share.iter().enumerate().step_by(13) {
                        assert_eq!(*t, whole[j * n as usize + i]);
                    }
                }
            }
        }
    }

    #[test]
    fn intended_starts_depend_on_the_plan_alone() {
        let stages = [s(2.0, 3000), s(3.0, 3000), s(1.0, 500)];
        let schedule = single(0, &stages);
        let expected: Vec<Due> =
            schedule.iter().enumerate().map(|(seq, intended)| Due { seq: seq as u64, intended }).collect();
        // A runner whose loop is stalled wakes up at odd moments, once 4 seconds late: the
        // requests it hands out, and their intended starts, are exactly the plan's.
        let mut pacer = Pacer::new(schedule.clone());
        let mut handed = Vec::new();
        let mut now = Duration::ZERO;
        let mut rng = Lcg(3);
        while !pacer.is_done() {
            now += match rng.below(10) {
                0 => Duration::from_secs(4),
                _ => Duration::from_micros(rng.below(5_000)),
            };
            for due in pacer.drain_due(now) {
                assert!(due.intended <= now);
                handed.push(due);
            }
        }
        assert_eq!(handed, expected);
        // A second schedule of the same plan is the same schedule.
        assert_eq!(single(0, &stages), schedule);
        assert_eq!(all(&single(0, &stages)), all(&schedule));
    }

    #[test]
    fn a_pacer_hands_out_a_batch_per_tick() {
        let mut pacer = Pacer::new(single(10_000, &[s(1.0, 10_000)]));
        assert_eq!(pacer.next_due(), Some(Duration::from_micros(50)));
        assert_eq!(pacer.take_due(Duration::ZERO), (0, 0));
        let mut batches = Vec::new();
        for tick in 1..=1000 {
            batches.push(pacer.take_due(Duration::from_millis(tick)).1);
        }
        assert!(batches.iter().all(|b| *b == 10), "10 requests per 1ms tick at 10 000 req/s");
        assert!(pacer.is_done());
        assert_eq!(pacer.taken(), 10_000);
        assert_eq!(pacer.next_due(), None);

        // After a stall the batch holds everything missed, with its past intended starts.
        let mut pacer = Pacer::new(single(1000, &[s(10.0, 1000)]));
        assert_eq!(pacer.take_due(Duration::from_millis(1)), (0, 1));
        let (first, count) = pacer.take_due(Duration::from_millis(3001));
        assert_eq!((first, count), (1, 3000));
        assert_eq!(pacer.schedule().intended(first), Some(Duration::from_micros(1500)));
        assert_eq!(pacer.next_due(), Some(Duration::from_micros(3_001_500)));
        // Requests not taken from a drain stay due.
        let taken: Vec<Due> = pacer.drain_due(Duration::from_secs(5)).take(2).collect();
        assert_eq!(taken[1], Due { seq: 3002, intended: Duration::from_micros(3_002_500) });
        assert_eq!(pacer.next_due(), Some(Duration::from_micros(3_003_500)));
        assert_eq!(pacer.take_due(Duration::from_secs(60)).1, 10_000 - 3003);
        assert_eq!(pacer.take_due(Duration::from_secs(61)), (10_000, 0));
    }

    #[test]
    fn due_by_counts_what_a_pacer_would_hand_out() {
        let schedule = single(0, &[s(4.0, 800), s(4.0, 800), s(4.0, 0)]);
        for ms in (0..13_000).step_by(37) {
            let now = Duration::from_millis(ms);
            let mut pacer = Pacer::new(schedule.clone());
            assert_eq!(schedule.due_by(now), pacer.take_due(now).1, "{now:?}");
        }
        assert_eq!(schedule.due_by(Duration::from_secs(100)), schedule.len());
        assert_eq!(schedule.len(), 1600 + 3200 + 1600);
    }

    #[test]
    fn the_largest_plans_are_counted_exactly_without_walking_them() {
        // 1 000 000 req/s for 24h, and a 24h ramp down from it.
        let day = Duration::from_secs(86_400);
        let hold = single(1_000_000, &[Stage { duration: GoDuration(day), target: 1_000_000 }]);
        assert_eq!(hold.planned(), 86_400_000_000);
        assert_eq!(hold.intended(86_399_999_999), Some(day - Duration::from_nanos(500)));
        let ramp = single(1_000_000, &[Stage { duration: GoDuration(day), target: 0 }]);
        assert_eq!(ramp.planned(), 43_200_000_000);
        let last = ramp.intended(43_199_999_999).unwrap();
        // The last request is due where half a request is left: √(½ · 2T/R) before the end.
        let want = 86_400.0 - (86_400.0 / 1e6f64).sqrt();
        assert!((last.as_secs_f64() - want).abs() < 1e-4, "{last:?} vs {want}");
        assert!(ramp.intended(43_199_999_998).unwrap() < last);
        let share = RunnerShare { index: 63, of: 64 };
        let shared =
            Schedule::new(1_000_000, &[Stage { duration: GoDuration(day), target: 1_000_000 }], share).unwrap();
        assert_eq!(shared.len(), 86_400_000_000 / 64);
    }

    #[test]
    fn runner_shares_are_checked() {
        assert_eq!(
            Schedule::new(1, &[s(1.0, 1)], RunnerShare { index: 2, of: 2 }),
            Err(ScheduleError::NoSuchRunner { index: 2, of: 2 })
        );
        assert_eq!(Schedule::new(1, &[s(1.0, 1)], RunnerShare { index: 0, of: 0 }), Err(ScheduleError::NoRunners));
        // More runners than requests: the extra runners send nothing.
        let idle = Schedule::new(1, &[s(3.0, 1)], RunnerShare { index: 5, of: 8 }).unwrap();
        assert!(idle.is_empty());
        assert_eq!(idle.iter().size_hint(), (0, Some(0)));
        let busy = Schedule::new(1, &[s(3.0, 1)], RunnerShare { index: 2, of: 8 }).unwrap();
        assert_eq!(all(&busy), vec![Duration::from_millis(2500)]);
    }
}
