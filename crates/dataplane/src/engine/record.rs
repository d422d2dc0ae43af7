//! Recording while the engine runs: the sharded recorders requests end into, the live figures
//! of the last second, the sealing of finished seconds and the ticks that hand them out.
//!
//! Requests end on any runtime thread, so recording goes to one of a few shards, each a
//! `LoadRecorder` behind its own mutex: a worker or VU always uses the same shard, two threads
//! rarely meet on one, and no lock is shared by all (a channel to one recording task was the
//! other option; a lock held for a few hundred nanoseconds costs less than a channel hop and
//! a task wake-up per request). Once a second the control task empties the shards into the
//! [`Sealer`], which holds the seconds still open; shards therefore hold about one second.
//!
//! Sealing is exact, not timed: the sealer knows how many requests *started* in each second
//! of intended start (the open model's pacer counts what it hands out, the closed model's VUs
//! count under the shard lock) and how many were recorded. A second is sealed once no
//! request can start in it any more and both counts agree, and seconds are sealed in order.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{sync::mpsc, time::Instant};

use super::{LiveFigures, Tick};
use crate::load::measure::{Bucket, HIGHEST_MICROS, LOWEST_MICROS, LoadRecorder, MeasureError, Outcome};

/// One shard, on its own cache lines so two threads recording into neighbours do not share one.
#[repr(align(128))]
#[derive(Debug)]
pub(crate) struct Shard(Mutex<ShardState>);

#[derive(Debug)]
pub(crate) struct ShardState {
    recorder: LoadRecorder,
    live: Live,
    /// Closed model: requests started per second (their intended start is their send).
    started: BTreeMap<u64, u64>,
}

impl Shard {
    fn new() -> Result<Shard, MeasureError> {
        Ok(Shard(Mutex::new(ShardState {
            recorder: LoadRecorder::new()?,
            live: Live::new()?,
            started: BTreeMap::new(),
        })))
    }

    /// The shard's state; a panic elsewhere while it was held leaves plain counts, still usable.
    pub fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ShardState {
    /// Closed model: a request starts now. The clock is read under the lock, which is what
    /// lets the sealer know that no request starts before a moment it has read the clock at.
    /// Returns the send moment and its offset from `run_start`.
    pub fn start(&mut self, run_start: Instant) -> (Instant, Duration) {
        let now = Instant::now();
        let offset = now.saturating_duration_since(run_start);
        *self.started.entry(offset.as_secs()).or_default() += 1;
        (now, offset)
    }

    /// A request ended, or was dropped (then `sent` and `done` are ignored).
    pub fn finish(&mut self, intended: Duration, sent: Duration, done: Duration, outcome: Outcome) {
        self.recorder.record(intended, sent, done, outcome);
        self.live.record(intended, done, outcome);
    }
}

/// The shards of a run.
#[derive(Debug)]
pub(crate) struct Shards(Box<[Shard]>);

impl Shards {
    /// Two shards per runtime thread (of the machine's cores): few enough to merge cheaply.
    pub fn new() -> Result<Shards, MeasureError> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from).clamp(1, 32);
        let shards = (0..2 * threads).map(|_| Shard::new()).collect::<Result<Vec<_>, _>>()?;
        Ok(Shards(shards.into_boxed_slice()))
    }

    /// The shard of worker or VU `index`.
    pub fn of(&self, index: usize) -> &Shard {
        // There is always at least one shard.
        &self.0[index % self.0.len()]
    }

    /// Empties every shard's seconds, start counts and live figures into `into`.
    pub fn collect(&self, into: &mut Collected) -> Result<(), MeasureError> {
        for shard in self.0.iter() {
            let (seconds, started) = {
                let mut state = shard.lock();
                into.live.add(&state.live)?;
                state.live.reset();
                (state.recorder.take_before(u64::MAX), std::mem::take(&mut state.started))
            };
            into.seconds.extend(seconds);
            for (second, n) in started {
                *into.started.entry(second).or_default() += n;
            }
        }
        Ok(())
    }

    /// Everything recorded over the run, all shards added.
    pub fn total(&self) -> Result<Bucket, MeasureError> {
        let mut total = Bucket::new()?;
        for shard in self.0.iter() {
            total.add(shard.lock().recorder.total())?;
        }
        Ok(total)
    }
}

/// What one collection from the shards brought.
#[derive(Debug)]
pub(crate) struct Collected {
    pub seconds: Vec<(u64, Bucket)>,
    pub started: BTreeMap<u64, u64>,
    pub live: Live,
}

impl Collected {
    pub fn new() -> Result<Collected, MeasureError> {
        Ok(Collected { seconds: Vec::new(), started: BTreeMap::new(), live: Live::new()? })
    }
}

/// What ended since the last tick: counts and the latency of those sent.
#[derive(Debug)]
pub(crate) struct Live {
    sent: u64,
    ok: u64,
    dropped: u64,
    /// Latency from the intended start, in microseconds; 2 significant digits are enough for
    /// a progress line and keep the histogram at a tenth of a second's.
    latency: Histogram<u64>,
}

impl Live {
    fn new() -> Result<Live, MeasureError> {
        let latency = Histogram::new_with_bounds(LOWEST_MICROS, HIGHEST_MICROS, 2).map_err(MeasureError::from)?;
        Ok(Live { sent: 0, ok: 0, dropped: 0, latency })
    }

    fn record(&mut self, intended: Duration, done: Duration, outcome: Outcome) {
        if !outcome.sent() {
            self.dropped += 1;
            return;
        }
        self.sent += 1;
        self.ok += u64::from(outcome == Outcome::Ok);
        let micros = u64::try_from(done.saturating_sub(intended).as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(micros.clamp(LOWEST_MICROS, HIGHEST_MICROS));
    }

    fn add(&mut self, other: &Live) -> Result<(), MeasureError> {
        self.sent += other.sent;
        self.ok += other.ok;
        self.dropped += other.dropped;
        self.latency.add(&other.latency).map_err(MeasureError::from)
    }

    fn reset(&mut self) {
        self.sent = 0;
        self.ok = 0;
        self.dropped = 0;
        self.latency.reset();
    }

    /// The figures of what ended, with the engine's current state.
    pub fn figures(&self, in_flight: u64, level: f64) -> LiveFigures {
        let p99 = if self.latency.is_empty() { 0 } else { self.latency.value_at_quantile(0.99) };
        LiveFigures {
            sent: self.sent,
            ok: self.ok,
            errors: self.sent - self.ok,
            dropped: self.dropped,
            p99: Duration::from_micros(p99),
            in_flight,
            level,
        }
    }
}

/// The seconds not sealed yet: what was recorded in them and how many requests started.
#[derive(Debug, Default)]
pub(crate) struct Sealer {
    open: BTreeMap<u64, Bucket>,
    started: BTreeMap<u64, u64>,
}

impl Sealer {
    /// Adds recorded seconds and start counts.
    pub fn absorb(
        &mut self,
        seconds: impl IntoIterator<Item = (u64, Bucket)>,
        started: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<(), MeasureError> {
        for (second, bucket) in seconds {
            match self.open.get_mut(&second) {
                Some(open) => open.add(&bucket)?,
                None => {
                    self.open.insert(second, bucket);
                }
            }
        }
        for (second, n) in started {
            *self.started.entry(second).or_default() += n;
        }
        Ok(())
    }

    /// Removes and returns the seconds before `horizon` (no request can start in them any
    /// more) whose every started request has been recorded, in order, stopping at the first
    /// that is still open.
    pub fn seal(&mut self, horizon: u64) -> Vec<(u64, Bucket)> {
        let mut sealed = Vec::new();
        loop {
            let first = match (self.open.keys().next(), self.started.keys().next()) {
                (Some(a), Some(b)) => *a.min(b),
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (None, None) => break,
            };
            if first >= horizon {
                break;
            }
            let started = self.started.get(&first).copied().unwrap_or(0);
            let recorded = self.open.get(&first).map_or(0, |b| b.counts.total + b.counts.dropped);
            if started != recorded {
                break;
            }
            self.started.remove(&first);
            if let Some(bucket) = self.open.remove(&first) {
                sealed.push((first, bucket));
            }
        }
        sealed
    }

    /// Requests started and not recorded yet: those in flight.
    pub fn in_flight(&self) -> u64 {
        let started: u64 = self.started.values().sum();
        let recorded: u64 = self.open.values().map(|b| b.counts.total + b.counts.dropped).sum();
        started.saturating_sub(recorded)
    }

    /// Everything left, in order: the run has ended and every request with it. A second whose
    /// counts disagree would be an engine bug; it is logged and handed out all the same.
    pub fn seal_all(&mut self) -> Vec<(u64, Bucket)> {
        for (second, bucket) in &self.open {
            let started = self.started.get(second).copied().unwrap_or(0);
            let recorded = bucket.counts.total + bucket.counts.dropped;
            if started != recorded {
                tracing::error!(second, started, recorded, "requests started and recorded disagree");
            }
        }
        self.started.clear();
        std::mem::take(&mut self.open).into_iter().collect()
    }
}

/// The books of a run: the open seconds and the ticks, fed from the shards once a second.
#[derive(Debug)]
pub(crate) struct Books {
    sealer: Sealer,
    ticks: Ticks,
}

impl Books {
    pub fn new(ticks: Option<mpsc::Sender<Tick>>) -> Books {
        Books { sealer: Sealer::default(), ticks: Ticks::new(ticks) }
    }

    /// Collects the shards and `started` (the open model's counts of requests handed out),
    /// seals what is final before second `horizon`, and sends a tick.
    pub fn tick(
        &mut self,
        shards: &Shards,
        elapsed: Duration,
        horizon: u64,
        started: impl IntoIterator<Item = (u64, u64)>,
        level: f64,
    ) -> Result<(), MeasureError> {
        let collected = self.collect(shards, started)?;
        let sealed = self.sealer.seal(horizon);
        // Without a receiver, sealed seconds are dropped here: the run's total is in the shards.
        self.ticks.send(elapsed, collected.live.figures(self.sealer.in_flight(), level), sealed);
        Ok(())
    }

    /// Adds start counts without a tick.
    pub fn absorb_started(&mut self, started: impl IntoIterator<Item = (u64, u64)>) -> Result<(), MeasureError> {
        self.sealer.absorb([], started)
    }

    /// The final tick: every task has ended, so everything left is sealed.
    pub async fn finish(&mut self, shards: &Shards, elapsed: Duration, level: f64) -> Result<(), MeasureError> {
        let collected = self.collect(shards, [])?;
        let in_flight = self.sealer.in_flight();
        let sealed = self.sealer.seal_all();
        self.ticks.finish(elapsed, collected.live.figures(in_flight, level), sealed).await;
        Ok(())
    }

    fn collect(
        &mut self,
        shards: &Shards,
        started: impl IntoIterator<Item = (u64, u64)>,
    ) -> Result<Collected, MeasureError> {
        let mut collected = Collected::new()?;
        shards.collect(&mut collected)?;
        let seconds = std::mem::take(&mut collected.seconds);
        let shard_started = std::mem::take(&mut collected.started);
        self.sealer.absorb(seconds, shard_started.into_iter().chain(started))?;
        Ok(collected)
    }
}

/// The caller's end of the ticks, if any.
///
/// Ticks go out with `try_send`, so a slow receiver never holds up requests: when its channel
/// is full, the tick's sealed seconds are kept and go out with the next tick that fits (its
/// live figures are replaced by newer ones). The final tick is sent with `send().await`, so
/// the receiver must keep receiving until the channel closes. A closed channel stops the
/// ticks, not the run.
#[derive(Debug)]
pub(crate) struct Ticks {
    tx: Option<mpsc::Sender<Tick>>,
    pending: Vec<(u64, Bucket)>,
}

impl Ticks {
    pub fn new(tx: Option<mpsc::Sender<Tick>>) -> Ticks {
        Ticks { tx, pending: Vec::new() }
    }

    pub fn send(&mut self, elapsed: Duration, live: LiveFigures, sealed: Vec<(u64, Bucket)>) {
        let Some(tx) = &self.tx else { return };
        self.pending.extend(sealed);
        let tick = Tick { elapsed, live, sealed: std::mem::take(&mut self.pending) };
        match tx.try_send(tick) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(tick)) => {
                tracing::debug!(
                    held = tick.sealed.len(),
                    "tick receiver is behind; sealed seconds held for the next tick"
                );
                self.pending = tick.sealed;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("tick receiver gone; no more ticks");
                self.tx = None;
            }
        }
    }

    pub async fn finish(&mut self, elapsed: Duration, live: LiveFigures, sealed: Vec<(u64, Bucket)>) {
        let Some(tx) = self.tx.take() else { return };
        self.pending.extend(sealed);
        let tick = Tick { elapsed, live, sealed: std::mem::take(&mut self.pending) };
        if tx.send(tick).await.is_err() {
            tracing::debug!("tick receiver gone before the final tick");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn recorded(requests: &[(u64, Outcome)]) -> Vec<(u64, Bucket)> {
        let mut recorder = LoadRecorder::new().unwrap();
        for &(at, outcome) in requests {
            recorder.record(ms(at), ms(at), ms(at + 5), outcome);
        }
        recorder.take_before(u64::MAX)
    }

    #[test]
    fn seconds_seal_in_order_once_every_started_request_is_recorded() {
        let mut sealer = Sealer::default();
        // Second 0: 2 started, both recorded; second 1: 3 started, 2 recorded; second 2: 1 of 1.
        sealer.absorb(recorded(&[(100, Outcome::Ok), (900, Outcome::Dropped)]), [(0, 2)]).unwrap();
        sealer.absorb(recorded(&[(1_100, Outcome::Ok), (1_200, Outcome::Timeout)]), [(1, 3), (2, 1)]).unwrap();
        sealer.absorb(recorded(&[(2_500, Outcome::Ok)]), []).unwrap();
        // Nothing at or past the horizon, even if complete.
        assert!(sealer.seal(0).is_empty());
        let sealed = sealer.seal(3);
        assert_eq!(sealed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0], "second 2 waits for second 1");
        assert_eq!(sealed[0].1.counts.total + sealed[0].1.counts.dropped, 2);
        assert!(sealer.seal(3).is_empty(), "each second once");
        // The missing request of second 1 ends; it was recorded in another shard.
        sealer.absorb(recorded(&[(1_300, Outcome::Ok)]), []).unwrap();
        let sealed = sealer.seal(3);
        assert_eq!(sealed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(sealed[0].1.counts.total, 3, "recordings of one second from several shards add up");
        assert!(sealer.seal(u64::MAX).is_empty());
        assert!(sealer.seal_all().is_empty());
    }

    #[test]
    fn a_second_with_nothing_recorded_yet_stays_open() {
        let mut sealer = Sealer::default();
        sealer.absorb([], [(4, 1)]).unwrap();
        assert!(sealer.seal(10).is_empty());
        sealer.absorb(recorded(&[(4_000, Outcome::Connect)]), []).unwrap();
        assert_eq!(sealer.seal(10).len(), 1);
    }

    #[test]
    fn live_figures_count_what_ended() {
        let mut live = Live::new().unwrap();
        for i in 0..98 {
            live.record(ms(i), ms(i + 2), Outcome::Ok);
        }
        live.record(ms(0), ms(1_000), Outcome::Status5xx);
        live.record(ms(0), ms(1_000), Outcome::Timeout);
        live.record(ms(0), ms(0), Outcome::Dropped);
        let f = live.figures(7, 100.0);
        assert_eq!((f.sent, f.ok, f.errors, f.dropped, f.in_flight), (100, 98, 2, 1, 7));
        assert!(f.p99 >= ms(990) && f.p99 <= ms(1_020), "2 of 100 took 1 s: {:?}", f.p99);
        live.reset();
        assert_eq!(live.figures(0, 0.0), LiveFigures::default());
    }

    #[test]
    fn a_full_tick_channel_keeps_sealed_seconds_for_the_next_tick() {
        let (tx, mut rx) = mpsc::channel(1);
        let mut ticks = Ticks::new(Some(tx));
        let one = |s: u64| recorded(&[(s * 1_000, Outcome::Ok)]);
        ticks.send(ms(1_000), LiveFigures::default(), one(0));
        ticks.send(ms(2_000), LiveFigures::default(), one(1));
        ticks.send(ms(3_000), LiveFigures::default(), one(2));
        let first = rx.try_recv().unwrap();
        assert_eq!(first.sealed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![0]);
        assert!(rx.try_recv().is_err());
        ticks.send(ms(4_000), LiveFigures { sent: 9, ..LiveFigures::default() }, Vec::new());
        let second = rx.try_recv().unwrap();
        assert_eq!(second.sealed.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!((second.elapsed, second.live.sent), (ms(4_000), 9));
        drop(rx);
        ticks.send(ms(5_000), LiveFigures::default(), one(3));
        assert!(ticks.tx.is_none(), "a closed receiver ends the ticks");
    }
}
