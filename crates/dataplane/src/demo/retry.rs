//! Retries: the backoff before each retry (exponential with full jitter) and the retry budget
//! that keeps retries from multiplying the load on a dependency that is already failing.
//! Pure: time and randomness are parameters, so every rule is tested from plain values.
//!
//! **The budget** (Finagle's RetryBudget, Envoy's retry budget in spirit): over a sliding window
//! of `window` seconds, retries may be at most `ratio` × the calls made in it, plus a floor of
//! `minPerSecond` × `window` so a service with little traffic can still retry. Without it, a
//! caller with 3 retries sends up to 4 × its traffic to a dependency that fails everything —
//! the retry storm that turns a slow dependency into a dead one.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use super::config::BudgetConfig;

/// The wait before retry number `retry` (1 for the first retry): a random time in
/// `[0, min(max, base × 2^(retry-1))]`, `random` being uniform in `[0, 1)`. Full jitter spreads
/// the retries of many callers out instead of sending them back in waves.
pub fn backoff(retry: u32, base: Duration, max: Duration, random: f64) -> Duration {
    let exponent = retry.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exponent).min(max);
    ceiling.mul_f64(random.clamp(0.0, 1.0))
}

/// Calls and retries of one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    calls: u64,
    retries: u64,
}

/// The retry budget of one upstream.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_second: f64,
    window_seconds: u64,
    origin: Instant,
    /// `(second since origin, tally)`, oldest first, within the window.
    seconds: VecDeque<(u64, Tally)>,
    total: Tally,
}

impl RetryBudget {
    pub fn new(config: &BudgetConfig, now: Instant) -> RetryBudget {
        RetryBudget {
            ratio: config.ratio,
            min_per_second: config.min_per_second,
            window_seconds: config.window.as_std().as_secs().max(1),
            origin: now,
            seconds: VecDeque::new(),
            total: Tally::default(),
        }
    }

    fn tally(&mut self, now: Instant) -> &mut Tally {
        let second = now.saturating_duration_since(self.origin).as_secs();
        while let Some(&(s, t)) = self.seconds.front() {
            if s + self.window_seconds > second {
                break;
            }
            self.seconds.pop_front();
            self.total.calls -= t.calls;
            self.total.retries -= t.retries;
        }
        if self.seconds.back().is_none_or(|(s, _)| *s != second) {
            self.seconds.push_back((second, Tally::default()));
        }
        match self.seconds.back_mut() {
            Some((_, tally)) => tally,
            // Just pushed; unreachable, but no panic on the request path.
            None => &mut self.total,
        }
    }

    /// Counts a call (a first attempt) made at `now`: it earns `ratio` of a retry.
    pub fn record_call(&mut self, now: Instant) {
        self.tally(now).calls += 1;
        self.total.calls += 1;
    }

    /// Takes one retry from the budget at `now`, if it has one.
    pub fn try_retry(&mut self, now: Instant) -> bool {
        self.tally(now);
        if (self.total.retries + 1) as f64 > self.allowed() {
            return false;
        }
        self.tally(now).retries += 1;
        self.total.retries += 1;
        true
    }

    /// Retries the window allows: ratio × calls + minPerSecond × window.
    fn allowed(&self) -> f64 {
        self.ratio * self.total.calls as f64 + self.min_per_second * self.window_seconds as f64
    }

    /// `(calls, retries, allowed)` in the window as of `now`, for the admin state.
    pub fn figures(&self, now: Instant) -> (u64, u64, f64) {
        let mut copy = self.clone();
        copy.tally(now);
        (copy.total.calls, copy.total.retries, copy.allowed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GoDuration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let (base, max) = (ms(10), ms(100));
        assert_eq!(backoff(1, base, max, 0.999_999), ms(10).mul_f64(0.999_999));
        assert_eq!(backoff(2, base, max, 0.5), ms(10), "ceiling 20ms, half of it");
        assert_eq!(backoff(3, base, max, 0.5), ms(20), "ceiling 40ms");
        assert_eq!(backoff(5, base, max, 0.5), ms(50), "ceiling 160ms capped at 100ms");
        assert_eq!(backoff(60, base, max, 1.0), ms(100), "huge retry numbers do not overflow");
        assert_eq!(backoff(3, base, max, 0.0), Duration::ZERO, "full jitter reaches 0");
        assert_eq!(backoff(1, base, max, 7.0), ms(10), "random is clamped to [0, 1]");
    }

    fn budget(ratio: f64, min_per_second: f64, window: u64, now: Instant) -> RetryBudget {
        let config = BudgetConfig { enabled: true, ratio, min_per_second, window: GoDuration::from_secs(window) };
        RetryBudget::new(&config, now)
    }

    #[test]
    fn retries_are_at_most_the_ratio_of_calls_plus_the_floor() {
        let t0 = Instant::now();
        let mut b = budget(0.2, 0.0, 10, t0);
        for _ in 0..100 {
            b.record_call(t0);
        }
        // 0.2 × 100 = 20 retries, then none.
        let granted = (0..50).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 20);
        assert_eq!(b.figures(t0), (100, 20, 20.0));
        // Each further call earns a fifth of a retry.
        for _ in 0..5 {
            b.record_call(t0);
        }
        assert!(b.try_retry(t0));
        assert!(!b.try_retry(t0));

        // The floor: 2 per second over a 10s window = 20 retries with no calls at all.
        let mut floor = budget(0.2, 2.0, 10, t0);
        assert_eq!((0..50).filter(|_| floor.try_retry(t0)).count(), 20);
    }

    #[test]
    fn calls_and_retries_leave_the_window() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut b = budget(0.5, 0.0, 3, t0);
        for _ in 0..10 {
            b.record_call(s(0));
        }
        assert_eq!((0..10).filter(|_| b.try_retry(s(0))).count(), 5);
        // At 2s the calls and retries of second 0 still count.
        assert!(!b.try_retry(s(2)));
        // At 3s they are gone: nothing earned, nothing spent.
        assert_eq!(b.figures(s(3)), (0, 0, 0.0));
        assert!(!b.try_retry(s(3)));
        for _ in 0..4 {
            b.record_call(s(3));
        }
        assert_eq!((0..10).filter(|_| b.try_retry(s(4))).count(), 2);
    }

    #[test]
    fn a_ratio_of_zero_with_no_floor_never_retries() {
        let t0 = Instant::now();
        let mut b = budget(0.0, 0.0, 1, t0);
        b.record_call(t0);
        assert!(!b.try_retry(t0));
    }
}
