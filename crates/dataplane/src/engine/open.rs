//! The open model: requests start at their intended time, whatever the server does.
//!
//! One control task paces the schedule: it sleeps until the next request is due (tokio's
//! timer has about 1 ms granularity), takes every request due by then and hands each to an
//! idle worker. A worker is a task owning one connection; it sends, reads the answer,
//! records it into its shard and reports itself idle again through a channel the control
//! task only polls when it needs a worker (so finishing a request wakes nobody). With no idle
//! worker a new one is started, so a slow server gets more connections rather than later
//! requests, up to `max_in_flight` workers; a request due with all of them busy is recorded
//! as `Dropped` at once, never queued. Idle workers are reused last-in first-out, keeping
//! the connections in use few and warm.
//!
//! The control task also ticks: it counts the requests it hands out per second of intended
//! start, which is what sealing compares the recorded counts with.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{Abandon, EngineConfig, EngineError, RunOutcome, Running, Shared, record::Books, tick_interval, wind_down};
use crate::load::{
    measure::Outcome,
    schedule::{Pacer, Schedule},
};

/// One request handed to a worker.
#[derive(Clone, Copy, Debug)]
struct Job {
    intended: Duration,
    /// Index of the request template.
    request: usize,
}

pub(super) async fn run(
    config: &EngineConfig,
    shared: &Arc<Shared>,
    mut books: Books,
    stop: &CancellationToken,
) -> Result<RunOutcome, EngineError> {
    let mut pacer = Pacer::new(Schedule::for_plan(&config.plan, config.share)?);
    let runners = f64::from(config.share.of);
    let level = |t: Duration| config.plan.level_at(t) / runners;
    let mut workers = Workers::new(usize::try_from(config.max_in_flight.max(1)).unwrap_or(usize::MAX));
    let mut tasks = JoinSet::new();
    let mut abandon = Abandon::default();
    let mut handed = HandedOut::default();
    let mut interval = tick_interval(shared.start);
    let wake = tokio::time::sleep_until(shared.start);
    tokio::pin!(wake);
    // Whether `wake` is set for the next request due (it is spent once it has fired).
    let mut armed_for = None;
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    let mut stopped = false;

    while let Some(next) = pacer.next_due() {
        if armed_for != Some(next) {
            wake.as_mut().reset(shared.start + next);
            armed_for = Some(next);
        }
        tokio::select! {
            biased;
            () = &mut stopping => {
                stopped = true;
                break;
            }
            // Before the requests: at most once a second, and never starved by a busy pacer.
            _ = interval.tick() => {
                let elapsed = shared.offset(Instant::now());
                // Every request due before the next one has been handed out.
                let horizon = pacer.next_due().map_or(u64::MAX, |next| next.as_secs());
                books.tick(&shared.shards, elapsed, horizon, handed.take(), level(elapsed))?;
                abandon.prune();
            }
            () = &mut wake => {
                armed_for = None;
                let now = shared.offset(Instant::now());
                for due in pacer.drain_due(now) {
                    if due.intended < config.skip_before {
                        continue;
                    }
                    handed.count(due.intended);
                    let job = Job { intended: due.intended, request: shared.client.pick(due.seq) };
                    if !workers.dispatch(job, shared, &mut tasks, &mut abandon) {
                        shared.shards.of(0).lock().finish(job.intended, now, now, Outcome::Dropped);
                    }
                }
            }
        }
    }
    tracing::debug!(workers = workers.senders.len(), handed_out = pacer.taken(), stopped, "open model: pacing over");
    books.absorb_started(handed.take())?;
    // Idle workers see their channel close and end; busy ones end after their request.
    drop(workers);
    // Nothing is handed out any more: a second is final once its requests are recorded.
    wind_down(shared, Running { tasks, books, abandon, stopped }, stop, |_| u64::MAX, level).await
}

/// Requests handed out per second of intended start, since the last tick.
#[derive(Debug, Default)]
struct HandedOut {
    seconds: BTreeMap<u64, u64>,
    /// The current second and its count so far, kept apart so that a request costs an add,
    /// not a map update.
    current: Option<(u64, u64)>,
}

impl HandedOut {
    fn count(&mut self, intended: Duration) {
        let second = intended.as_secs();
        match &mut self.current {
            Some((s, n)) if *s == second => *n += 1,
            _ => {
                self.flush();
                self.current = Some((second, 1));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((second, n)) = self.current.take() {
            *self.seconds.entry(second).or_default() += n;
        }
    }

    fn take(&mut self) -> BTreeMap<u64, u64> {
        self.flush();
        std::mem::take(&mut self.seconds)
    }
}

/// The workers, from the control task's side.
#[derive(Debug)]
struct Workers {
    /// Each worker's job channel (capacity 1: a worker gets a job only when idle).
    senders: Vec<mpsc::Sender<Job>>,
    /// Workers known to be idle.
    idle: Vec<usize>,
    /// Workers that finished a request report here.
    done_rx: mpsc::UnboundedReceiver<usize>,
    done_tx: mpsc::UnboundedSender<usize>,
    max: usize,
}

impl Workers {
    fn new(max: usize) -> Workers {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Workers { senders: Vec::new(), idle: Vec::new(), done_rx, done_tx, max }
    }

    /// Hands `job` to an idle worker, or a new one; false when `max` workers are all busy.
    fn dispatch(&mut self, mut job: Job, shared: &Arc<Shared>, tasks: &mut JoinSet<()>, abandon: &mut Abandon) -> bool {
        loop {
            if let Some(id) = self.idle.pop() {
                match self.senders.get(id).map(|tx| tx.try_send(job)) {
                    Some(Ok(())) => return true,
                    // A worker that is gone (it panicked) is forgotten, still counting as busy.
                    Some(Err(mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back))) => {
                        job = back;
                    }
                    None => {}
                }
                continue;
            }
            let mut any = false;
            while let Ok(id) = self.done_rx.try_recv() {
                self.idle.push(id);
                any = true;
            }
            if any {
                continue;
            }
            if self.senders.len() >= self.max {
                return false;
            }
            let id = self.senders.len();
            let (tx, rx) = mpsc::channel(1);
            if tx.try_send(job).is_err() {
                return false;
            }
            self.senders.push(tx);
            tasks.spawn(worker(Arc::clone(shared), id, rx, self.done_tx.clone(), abandon.watch()));
            return true;
        }
    }
}

/// One worker: takes jobs until its channel closes, one request at a time on its connection.
async fn worker(
    shared: Arc<Shared>,
    id: usize,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::UnboundedSender<usize>,
    abandon: oneshot::Receiver<()>,
) {
    let shard = shared.shards.of(id);
    // The request in flight, so that an abandoned one is still recorded once: intended start
    // and send, as nanoseconds from the start plus one (0: none in flight).
    let intended_ns = AtomicU64::new(0);
    let sent_ns = AtomicU64::new(0);
    let work = async {
        let mut conn = shared.client.conn(id);
        while let Some(job) = jobs.recv().await {
            let sent_at = Instant::now();
            let sent = shared.offset(sent_at);
            intended_ns.store(nanos(job.intended) + 1, Ordering::Relaxed);
            sent_ns.store(nanos(sent), Ordering::Relaxed);
            let outcome = conn.execute(&shared.client, job.request, sent_at + shared.timeout).await;
            let done_at = shared.offset(Instant::now());
            shard.lock().finish(job.intended, sent, done_at, outcome);
            intended_ns.store(0, Ordering::Relaxed);
            if done.send(id).is_err() {
                break;
            }
        }
    };
    tokio::select! {
        biased;
        _ = abandon => {
            let intended = intended_ns.load(Ordering::Relaxed);
            if intended != 0 {
                let now = shared.offset(Instant::now());
                let intended = Duration::from_nanos(intended - 1);
                let sent = Duration::from_nanos(sent_ns.load(Ordering::Relaxed));
                shard.lock().finish(intended, sent, now, Outcome::Timeout);
            }
        }
        () = work => {}
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}
