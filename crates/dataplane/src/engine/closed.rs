//! The closed model: virtual users that each send a request, wait for its answer (and the
//! think time), and send the next, as many as the plan's level says at each moment.
//!
//! Each VU is a task owning its connection (like wrk's connections). The control task sets
//! the number of VUs this engine runs, `runner_share(round(level), index, of)`, every
//! [`CONTROL_PERIOD`]: VU `i` runs while `i` is below it, so when the level drops the
//! highest VUs finish the request they are in (and their think time) and stop; when it
//! rises, missing VUs are started.
//!
//! A VU has no schedule: the intended start of its request is the moment it sends it, so
//! latency equals service time and lag is zero. The clock is read under the shard lock when
//! a request starts, and the tick reads the clock before it collects the shards: every
//! request started before that moment has then been counted, which makes sealing exact.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::oneshot, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use super::{Abandon, EngineConfig, EngineError, RunOutcome, Running, Shared, record::Books, tick_interval, wind_down};
use crate::load::{measure::Outcome, stages::runner_share};

/// How often the number of VUs follows the plan's level.
pub const CONTROL_PERIOD: Duration = Duration::from_millis(10);

/// The most VUs this engine runs at once over the plan.
pub(super) fn peak_vus(config: &EngineConfig) -> u32 {
    let peak = config.plan.stages.iter().map(|s| s.target).fold(config.plan.start, u32::max);
    runner_share(peak, config.share.index, config.share.of)
}

pub(super) async fn run(
    config: &EngineConfig,
    shared: &Arc<Shared>,
    mut books: Books,
    stop: &CancellationToken,
) -> Result<RunOutcome, EngineError> {
    let vus = Arc::new(AtomicU32::new(0));
    // Cut think times short at the end.
    let no_more = CancellationToken::new();
    let mut active: Vec<Arc<AtomicBool>> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut abandon = Abandon::default();
    let mut interval = tick_interval(shared.start);
    let mut control = tokio::time::interval_at(shared.start, CONTROL_PERIOD);
    control.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let total = config.plan.total_duration();
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    let mut stopped = false;
    let vu = |index: usize, active: &Arc<AtomicBool>, abandon: &mut Abandon| {
        let ctx = VuContext {
            shared: Arc::clone(shared),
            index,
            vus: Arc::clone(&vus),
            active: Arc::clone(active),
            think: config.think_time,
            no_more: no_more.clone(),
        };
        ctx.run(abandon.watch())
    };

    loop {
        tokio::select! {
            biased;
            () = &mut stopping => {
                stopped = true;
                break;
            }
            _ = interval.tick() => {
                let now = Instant::now();
                let elapsed = shared.offset(now);
                // Read before collecting: no request can start before `now` any more.
                let horizon = elapsed.as_secs();
                books.tick(&shared.shards, elapsed, horizon, [], f64::from(vus.load(Ordering::Relaxed)))?;
                abandon.prune();
                // A VU that was retiring as the level rose again may have been missed.
                start_missing(0, vus.load(Ordering::Relaxed), &mut active, |i, a| {
                    tasks.spawn(vu(i, a, &mut abandon));
                });
            }
            _ = control.tick() => {
                let t = shared.offset(Instant::now());
                if t >= total {
                    break;
                }
                let level = config.plan.level_at(t).round().clamp(0.0, f64::from(u32::MAX)) as u32;
                let want =
                    if t < config.skip_before { 0 } else { runner_share(level, config.share.index, config.share.of) };
                let had = vus.swap(want, Ordering::AcqRel);
                if want > had {
                    start_missing(had, want, &mut active, |i, a| {
                        tasks.spawn(vu(i, a, &mut abandon));
                    });
                }
            }
        }
    }
    tracing::debug!(vus = active.len(), stopped, "closed model: plan over");
    vus.store(0, Ordering::Release);
    no_more.cancel();
    let horizon = |elapsed: Duration| elapsed.as_secs();
    wind_down(shared, Running { tasks, books, abandon, stopped }, stop, horizon, |_| 0.0).await
}

/// Starts the VUs in `from..to` that are not running.
fn start_missing(
    from: u32,
    to: u32,
    active: &mut Vec<Arc<AtomicBool>>,
    mut spawn: impl FnMut(usize, &Arc<AtomicBool>),
) {
    let (from, to) = (usize::try_from(from).unwrap_or(usize::MAX), usize::try_from(to).unwrap_or(usize::MAX));
    while active.len() < to {
        active.push(Arc::new(AtomicBool::new(false)));
    }
    for (index, flag) in active.iter().enumerate().take(to).skip(from) {
        if !flag.swap(true, Ordering::AcqRel) {
            spawn(index, flag);
        }
    }
}

/// What one VU needs.
struct VuContext {
    shared: Arc<Shared>,
    index: usize,
    /// How many VUs run now: VU `index` runs while `index` is below it.
    vus: Arc<AtomicU32>,
    /// Set while this VU's task runs; cleared as its very last step.
    active: Arc<AtomicBool>,
    think: Duration,
    no_more: CancellationToken,
}

impl VuContext {
    async fn run(self, abandon: oneshot::Receiver<()>) {
        let shared = &self.shared;
        let shard = shared.shards.of(self.index);
        // The send of the request in flight, as nanoseconds from the start plus one (0: none),
        // so that an abandoned request is still recorded once.
        let sent_ns = AtomicU64::new(0);
        let work = async {
            let mut conn = shared.client.conn(self.index);
            // VUs start at different places of the mix, so they do not all send alike.
            let mut pick = self.index as u64;
            while (self.index as u64) < u64::from(self.vus.load(Ordering::Acquire)) {
                let (sent_at, sent) = shard.lock().start(shared.start);
                sent_ns.store(nanos(sent) + 1, Ordering::Relaxed);
                let request = shared.client.pick(pick);
                let outcome = conn.execute(&shared.client, request, sent_at + shared.timeout).await;
                let done = shared.offset(Instant::now());
                shard.lock().finish(sent, sent, done, outcome);
                sent_ns.store(0, Ordering::Relaxed);
                pick += 1;
                if !self.think.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(self.think) => {}
                        () = self.no_more.cancelled() => break,
                    }
                }
            }
        };
        tokio::select! {
            biased;
            _ = abandon => {
                let sent = sent_ns.load(Ordering::Relaxed);
                if sent != 0 {
                    let sent = Duration::from_nanos(sent - 1);
                    let now = shared.offset(Instant::now());
                    shard.lock().finish(sent, sent, now, Outcome::Timeout);
                }
            }
            () = work => {}
        }
        self.active.store(false, Ordering::Release);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}
