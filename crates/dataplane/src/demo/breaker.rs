//! The circuit breaker: a state machine (closed → open → half-open → closed or open again) over
//! a sliding window of call outcomes, with resilience4j's semantics. Pure: time is a parameter
//! of every method (the injectable clock), so each transition is tested without sleeping.
//!
//! - **Closed**: every call is permitted and its outcome recorded in the window (the last N
//!   calls, or the calls of the last N seconds). Once the window holds at least `minimumCalls`
//!   (for a count window, at most its size), the breaker opens when the failure rate or the
//!   slow-call rate is at or above its threshold.
//! - **Open**: calls are refused (short-circuited) for `openDuration`; the first call attempted
//!   after it moves the breaker to half-open (no timer runs in the background).
//! - **Half-open**: `halfOpenCalls` trial calls are permitted, others refused. Once every trial
//!   has reported, their rates decide: at or above a threshold → open again, else → closed with
//!   an empty window.
//!
//! Each state change starts a new *epoch*; an outcome reported with a permit of an earlier
//! epoch (a call started before the breaker opened, say) is ignored, so it cannot decide a
//! half-open trial it was not part of.

use std::{collections::VecDeque, fmt, time::Duration};

use tokio::time::Instant;

use super::config::{BreakerConfig, WindowType};

/// The breaker's settings, from [`BreakerConfig`].
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    pub window: Window,
    pub minimum_calls: u32,
    /// Percentages, 1 to 100.
    pub failure_rate_threshold: f64,
    pub slow_call_rate_threshold: f64,
    pub slow_call_duration: Duration,
    pub open_duration: Duration,
    pub half_open_calls: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The last N calls.
    Count(u32),
    /// The calls of the last N seconds.
    Time(u32),
}

impl From<&BreakerConfig> for BreakerSettings {
    fn from(c: &BreakerConfig) -> BreakerSettings {
        BreakerSettings {
            window: match c.sliding_window_type {
                WindowType::Count => Window::Count(c.sliding_window_size),
                WindowType::Time => Window::Time(c.sliding_window_size),
            },
            minimum_calls: c.minimum_calls,
            failure_rate_threshold: c.failure_rate_threshold,
            slow_call_rate_threshold: c.slow_call_rate_threshold,
            slow_call_duration: c.slow_call_duration.as_std(),
            open_duration: c.open_duration.as_std(),
            half_open_calls: c.half_open_calls,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The value of the state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change, for the transition counter and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// Leave to make one call, to be reported with [`Breaker::record`] or given back with
/// [`Breaker::release`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Permit {
    epoch: u64,
}

/// What asking for a call gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Acquired {
    /// `None`: short-circuited (open, or half-open with every trial taken).
    pub permit: Option<Permit>,
    /// Open → half-open when the open duration has passed.
    pub transition: Option<Transition>,
}

/// How a call went, as the breaker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallOutcome {
    pub failed: bool,
    pub duration: Duration,
}

/// Calls, failures and slow calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Counts {
    fn add(&mut self, failed: bool, slow: bool) {
        self.calls += 1;
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
    }

    fn remove(&mut self, other: Counts) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    fn rates(&self) -> (f64, f64) {
        if self.calls == 0 {
            return (0.0, 0.0);
        }
        let n = self.calls as f64;
        (self.failures as f64 * 100.0 / n, self.slow as f64 * 100.0 / n)
    }
}

/// The closed state's sliding window.
#[derive(Clone, Debug)]
enum Outcomes {
    /// The last `size` calls, oldest first.
    Count { size: usize, calls: VecDeque<(bool, bool)>, total: Counts },
    /// Per-second buckets `(second since the breaker's origin, counts)` of the last `seconds`.
    Time { seconds: u64, buckets: VecDeque<(u64, Counts)>, total: Counts },
}

impl Outcomes {
    fn new(window: Window) -> Outcomes {
        match window {
            Window::Count(n) => Outcomes::Count { size: n as usize, calls: VecDeque::new(), total: Counts::default() },
            Window::Time(s) => {
                Outcomes::Time { seconds: u64::from(s), buckets: VecDeque::new(), total: Counts::default() }
            }
        }
    }

    fn push(&mut self, second: u64, failed: bool, slow: bool) {
        self.expire(second);
        match self {
            Outcomes::Count { size, calls, total } => {
                if calls.len() == *size
                    && let Some((f, s)) = calls.pop_front()
                {
                    let mut old = Counts::default();
                    old.add(f, s);
                    total.remove(old);
                }
                calls.push_back((failed, slow));
                total.add(failed, slow);
            }
            Outcomes::Time { buckets, total, .. } => {
                match buckets.back_mut() {
                    Some((s, counts)) if *s == second => counts.add(failed, slow),
                    _ => {
                        let mut counts = Counts::default();
                        counts.add(failed, slow);
                        buckets.push_back((second, counts));
                    }
                }
                total.add(failed, slow);
            }
        }
    }

    /// Drops the buckets that left a time window by `second`.
    fn expire(&mut self, second: u64) {
        if let Outcomes::Time { seconds, buckets, total } = self {
            while let Some(&(s, counts)) = buckets.front() {
                if s + *seconds > second {
                    break;
                }
                buckets.pop_front();
                total.remove(counts);
            }
        }
    }

    fn total(&self) -> Counts {
        match self {
            Outcomes::Count { total, .. } | Outcomes::Time { total, .. } => *total,
        }
    }
}

#[derive(Clone, Debug)]
enum Inner {
    Closed { window: Outcomes },
    Open { until: Instant },
    HalfOpen { left: u32, in_flight: u32, trials: Counts },
}

/// The breaker of one upstream.
#[derive(Clone, Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    /// Time windows count whole seconds from here.
    origin: Instant,
    inner: Inner,
    epoch: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings, now: Instant) -> Breaker {
        let window = Outcomes::new(settings.window);
        Breaker { settings, origin: now, inner: Inner::Closed { window }, epoch: 0 }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// The state as of `now`, without changing it (an open breaker whose time is up shows
    /// half-open, which the next call makes it).
    pub fn state(&self, now: Instant) -> State {
        match &self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { until } if now >= *until => State::HalfOpen,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// The failure and slow-call rates (percent) and calls of the current window or trials.
    pub fn rates(&self, now: Instant) -> (f64, f64, u64) {
        let counts = match &self.inner {
            Inner::Closed { window } => {
                let mut window = window.clone();
                window.expire(self.second(now));
                window.total()
            }
            Inner::Open { .. } => Counts::default(),
            Inner::HalfOpen { trials, .. } => *trials,
        };
        let (failure, slow) = counts.rates();
        (failure, slow, counts.calls)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn enter(&mut self, to: State, now: Instant) -> Transition {
        let from = self.state_name();
        self.epoch += 1;
        self.inner = match to {
            State::Closed => Inner::Closed { window: Outcomes::new(self.settings.window) },
            State::Open => Inner::Open { until: now + self.settings.open_duration },
            State::HalfOpen => {
                Inner::HalfOpen { left: self.settings.half_open_calls, in_flight: 0, trials: Counts::default() }
            }
        };
        Transition { from, to }
    }

    fn state_name(&self) -> State {
        match self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Asks to make a call at `now`.
    pub fn try_acquire(&mut self, now: Instant) -> Acquired {
        let mut transition = None;
        if let Inner::Open { until } = self.inner
            && now >= until
        {
            transition = Some(self.enter(State::HalfOpen, now));
        }
        let epoch = self.epoch;
        let permit = match &mut self.inner {
            Inner::Closed { .. } => Some(Permit { epoch }),
            Inner::Open { .. } => None,
            Inner::HalfOpen { left, in_flight, .. } => {
                if *left > 0 {
                    *left -= 1;
                    *in_flight += 1;
                    Some(Permit { epoch })
                } else {
                    None
                }
            }
        };
        Acquired { permit, transition }
    }

    /// Gives back a permit whose call never happened or never ended (it was canceled): a
    /// half-open trial slot is freed for another call.
    pub fn release(&mut self, permit: Permit) {
        if permit.epoch != self.epoch {
            return;
        }
        if let Inner::HalfOpen { left, in_flight, .. } = &mut self.inner {
            *in_flight = in_flight.saturating_sub(1);
            *left += 1;
        }
    }

    /// Reports how a permitted call went, at `now` (when it ended).
    pub fn record(&mut self, permit: Permit, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        if permit.epoch != self.epoch {
            return None;
        }
        let slow = outcome.duration >= self.settings.slow_call_duration;
        let second = self.second(now);
        let s = &self.settings;
        let over = |counts: Counts| {
            let (failure, slowness) = counts.rates();
            failure >= s.failure_rate_threshold || slowness >= s.slow_call_rate_threshold
        };
        match &mut self.inner {
            Inner::Closed { window } => {
                window.push(second, outcome.failed, slow);
                let total = window.total();
                let minimum = match s.window {
                    // resilience4j: a count window smaller than minimumCalls judges when full.
                    Window::Count(size) => u64::from(s.minimum_calls.min(size)),
                    Window::Time(_) => u64::from(s.minimum_calls),
                };
                (total.calls >= minimum && over(total)).then(|| self.enter(State::Open, now))
            }
            Inner::Open { .. } => None,
            Inner::HalfOpen { left, in_flight, trials } => {
                *in_flight = in_flight.saturating_sub(1);
                trials.add(outcome.failed, slow);
                if *left > 0 || *in_flight > 0 {
                    return None;
                }
                let to = if over(*trials) { State::Open } else { State::Closed };
                Some(self.enter(to, now))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window: Window) -> BreakerSettings {
        BreakerSettings {
            window,
            minimum_calls: 4,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 80.0,
            slow_call_duration: Duration::from_millis(100),
            open_duration: Duration::from_secs(5),
            half_open_calls: 2,
        }
    }

    const FAST_OK: CallOutcome = CallOutcome { failed: false, duration: Duration::from_millis(5) };
    const FAST_FAIL: CallOutcome = CallOutcome { failed: true, duration: Duration::from_millis(5) };
    const SLOW_OK: CallOutcome = CallOutcome { failed: false, duration: Duration::from_millis(100) };

    /// One permitted call at `now` with this outcome; the transition it caused.
    #[track_caller]
    fn call(b: &mut Breaker, now: Instant, outcome: CallOutcome) -> Option<Transition> {
        let acquired = b.try_acquire(now);
        let permit = acquired.permit.expect("the call is permitted");
        b.record(permit, outcome, now)
    }

    fn opened(from: State) -> Option<Transition> {
        Some(Transition { from, to: State::Open })
    }

    #[test]
    fn closed_opens_on_the_failure_rate_once_the_window_holds_the_minimum() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(Window::Count(10)), t0);
        // Three failures: 100 %, but fewer than the minimum of 4 calls.
        for _ in 0..3 {
            assert_eq!(call(&mut b, t0, FAST_FAIL), None);
        }
        assert_eq!(b.state(t0), State::Closed);
        assert_eq!(b.rates(t0), (100.0, 0.0, 3));
        // The fourth call makes 4 calls, 3 failed = 75 % ≥ 50 %.
        assert_eq!(call(&mut b, t0, FAST_OK), opened(State::Closed));
        assert_eq!(b.state(t0), State::Open);
        let refused = b.try_acquire(t0 + Duration::from_secs(4));
        assert_eq!(refused, Acquired { permit: None, transition: None }, "open: short-circuited");
    }

    #[test]
    fn a_failure_rate_below_the_threshold_stays_closed_and_old_calls_leave_a_count_window() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(Window::Count(4)), t0);
        // ok fail ok ok: 25 %.
        for outcome in [FAST_OK, FAST_FAIL, FAST_OK, FAST_OK] {
            assert_eq!(call(&mut b, t0, outcome), None);
        }
        assert_eq!(b.rates(t0), (25.0, 0.0, 4));
        // fail: the window is fail ok ok fail = 50 % → open (at or above the threshold).
        assert_eq!(call(&mut b, t0, FAST_FAIL), opened(State::Closed));
    }

    #[test]
    fn closed_opens_on_the_slow_call_rate() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(Window::Count(10)), t0);
        // Slow successes: 3 of 4 = 75 % < 80 %, then 4 of 5 = 80 %.
        for outcome in [SLOW_OK, SLOW_OK, FAST_OK, SLOW_OK] {
            assert_eq!(call(&mut b, t0, outcome), None);
        }
        assert_eq!(b.rates(t0), (0.0, 75.0, 4));
        assert_eq!(call(&mut b, t0, SLOW_OK), opened(State::Closed));
    }

    #[test]
    fn a_count_window_smaller_than_the_minimum_judges_when_full() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(Window::Count(2)), t0);
        assert_eq!(call(&mut b, t0, FAST_FAIL), None);
        assert_eq!(call(&mut b, t0, FAST_FAIL), opened(State::Closed));
    }

    #[test]
    fn a_time_window_forgets_calls_older_than_its_seconds() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut b = Breaker::new(settings(Window::Time(10)), t0);
        // Three failures at 0s, then nothing until 10s: they have left the window.
        for _ in 0..3 {
            assert_eq!(call(&mut b, s(0), FAST_FAIL), None);
        }
        assert_eq!(b.rates(s(9)).2, 3);
        assert_eq!(b.rates(s(10)).2, 0, "the second-0 bucket left at 10s");
        for _ in 0..3 {
            assert_eq!(call(&mut b, s(10), FAST_OK), None);
        }
        // 3 ok + 1 failure at 11s = 25 %: closed; failures at 0s would have made it 57 %.
        assert_eq!(call(&mut b, s(11), FAST_FAIL), None);
        assert_eq!(b.state(s(11)), State::Closed);
        // Two more failures within the window: 3 of 6 = 50 % → open.
        assert_eq!(call(&mut b, s(12), FAST_FAIL), None);
        assert_eq!(b.rates(s(12)), (40.0, 0.0, 5));
        assert_eq!(call(&mut b, s(19), FAST_FAIL), opened(State::Closed));
    }

    fn tripped(now: Instant) -> Breaker {
        let mut b = Breaker::new(settings(Window::Count(4)), now);
        for _ in 0..4 {
            let _ = call(&mut b, now, FAST_FAIL);
        }
        assert_eq!(b.state(now), State::Open);
        b
    }

    #[test]
    fn open_lasts_its_duration_then_half_open_permits_the_trial_calls_only() {
        let t0 = Instant::now();
        let mut b = tripped(t0);
        let before = t0 + Duration::from_millis(4_999);
        assert!(b.try_acquire(before).permit.is_none(), "open until 5s");
        let at = t0 + Duration::from_secs(5);
        assert_eq!(b.state(at), State::HalfOpen, "shown as half-open once due");
        let first = b.try_acquire(at);
        assert_eq!(first.transition, Some(Transition { from: State::Open, to: State::HalfOpen }));
        let first = first.permit.expect("trial 1");
        let second = b.try_acquire(at).permit.expect("trial 2");
        assert_eq!(b.try_acquire(at), Acquired { permit: None, transition: None }, "only 2 trials");
        // A canceled trial gives its slot back.
        b.release(second);
        let second = b.try_acquire(at).permit.expect("the freed slot");
        assert_eq!(b.record(first, FAST_OK, at), None, "waits for every trial");
        assert_eq!(b.record(second, FAST_OK, at), Some(Transition { from: State::HalfOpen, to: State::Closed }));
        assert_eq!(b.state(at), State::Closed);
        assert_eq!(b.rates(at), (0.0, 0.0, 0), "closed again with an empty window");
    }

    #[test]
    fn half_open_trials_at_a_threshold_open_again_for_a_full_duration() {
        let t0 = Instant::now();
        let mut b = tripped(t0);
        let at = t0 + Duration::from_secs(6);
        let one = b.try_acquire(at).permit.expect("trial 1");
        let two = b.try_acquire(at).permit.expect("trial 2");
        assert_eq!(b.record(one, FAST_OK, at), None);
        // 1 of 2 failed = 50 % → open again, until 6s + 5s.
        assert_eq!(b.record(two, FAST_FAIL, at), opened(State::HalfOpen));
        assert_eq!(b.state(t0 + Duration::from_millis(10_999)), State::Open);
        assert_eq!(b.state(t0 + Duration::from_secs(11)), State::HalfOpen);
        // Slow trials open it too: both slow = 100 % ≥ 80 %.
        let at = t0 + Duration::from_secs(11);
        let one = b.try_acquire(at).permit.expect("trial 1");
        let two = b.try_acquire(at).permit.expect("trial 2");
        assert_eq!(b.record(one, SLOW_OK, at), None);
        assert_eq!(b.record(two, SLOW_OK, at), opened(State::HalfOpen));
    }

    #[test]
    fn outcomes_of_an_earlier_state_are_ignored() {
        let t0 = Instant::now();
        let mut b = Breaker::new(settings(Window::Count(4)), t0);
        // A call starts while closed and ends after the breaker opened and went half-open.
        let early = b.try_acquire(t0).permit.expect("closed");
        for _ in 0..4 {
            let _ = call(&mut b, t0, FAST_FAIL);
        }
        let at = t0 + Duration::from_secs(5);
        let trial = b.try_acquire(at).permit.expect("trial");
        assert_eq!(b.record(early, FAST_FAIL, at), None, "not one of the trials");
        b.release(Permit { epoch: 0 });
        let other = b.try_acquire(at).permit.expect("trial 2 is still free");
        assert!(b.try_acquire(at).permit.is_none());
        assert_eq!(b.record(trial, FAST_OK, at), None);
        assert_eq!(b.record(other, FAST_OK, at), Some(Transition { from: State::HalfOpen, to: State::Closed }));
    }
}
