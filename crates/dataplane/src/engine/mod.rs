//! The load engine: sends the requests of a plan over HTTP at their intended times (open model)
//! or from virtual users (closed model), and records every request into the measurement core.
//!
//! It is shared by the local CLI (`chaoslab load`) and the runner pods (`chaoslab runner`):
//! both build an [`EngineConfig`], call [`run`], consume [`Tick`]s while it runs (a live
//! progress line, report segments, abort decisions) and keep the [`RunOutcome`].
//!
//! Seconds are handed out as soon as they are *sealed* (every request intended in them has
//! ended), and then dropped from memory, so a soak of hours holds only the seconds still open.
//!
//! How it runs (details in the submodules):
//! - `open`: a control task paces the schedule (a batch per ~1 ms timer tick) and hands each
//!   due request to an idle worker, each owning one connection; a request due while
//!   `max_in_flight` workers are busy is recorded as dropped, never delayed. Latency counts
//!   from the intended start, so it includes the pacer's own lag (about 0.5 to 1 ms of timer
//!   granularity, recorded apart as `lag`).
//! - `closed`: one task per VU, each owning its connection, started and retired as the
//!   plan's level moves. A VU has no schedule, so a request's intended start *is* its send:
//!   latency and service time are the same, and a stalled server shows as fewer requests, not
//!   as longer latencies (that is the closed model's coordinated omission, by definition).
//! - `client`: hyper's HTTP/1.1 keep-alive connections, one per worker or VU, or a few shared
//!   HTTP/2 (h2c) connections; timeouts and outcome classes.
//! - `record`: per-shard recorders, exact sealing, live figures and the ticks.
//!
//! Ticks: one per second of wall time from `start + 1 s`, and a final one when the run ends,
//! which carries every second not handed out yet. Ticks are sent with `try_send`: a receiver
//! that falls behind gets the sealed seconds it missed with the next tick that fits (only the
//! live figures of the missed ticks are lost), so it never holds up requests. The final tick
//! is sent with `send().await`: receive until the channel closes.
//!
//! Stop: once `stop` is cancelled no request starts; requests in flight may still end for
//! [`STOP_GRACE`], and those still in flight then are abandoned and recorded as `Timeout`, at
//! the moment they were abandoned (their latency is a lower bound). So every request sent is
//! recorded exactly once, the final tick and the [`RunOutcome`] agree, and a run stops within
//! about a second whatever the request timeout. A stop after the plan's end, while its last
//! requests are in flight, does the same to them but leaves [`RunOutcome::stopped`] false.
//! Dropping the future of [`run`] aborts every task of the run at once, recording nothing
//! more (the HTTP/1.1 connections' own I/O tasks then close their connections and end).

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    api::load::{LoadModel, LoadProfile, RequestSpec},
    load::{
        measure::{Bucket, MeasureError},
        schedule::{RunnerShare, ScheduleError},
        stages::Plan,
    },
};

mod client;
mod closed;
mod open;
mod record;
mod request;

use client::Client;
use record::{Books, Shards};
use request::{Mix, Target};

/// How long requests in flight may still end after a stop before they are abandoned.
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// Everything one engine run needs: where, what, how much and how it is paced.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The base URL requests go to (`http://host:port/prefix`); each request's path is appended.
    pub base_url: String,
    /// The request mix, picked by weight; empty means `GET` on `base_url`.
    pub requests: Vec<RequestSpec>,
    pub model: LoadModel,
    /// The levels over time: rate (open) or VUs (closed), over all runners.
    pub plan: Plan,
    /// Which share of the plan this engine runs.
    pub share: RunnerShare,
    /// Open model: this engine's bound on requests in flight; a request due at the bound is
    /// recorded as dropped. 0 is taken as 1.
    pub max_in_flight: u32,
    /// Closed model: each VU's pause between an answer and its next request.
    pub think_time: Duration,
    /// Per request, from its actual send to its last body byte, connecting included.
    pub timeout: Duration,
    /// HTTP/2 with prior knowledge instead of HTTP/1.1 keep-alive.
    pub http2: bool,
    /// Requests intended before this offset are neither sent nor recorded: a runner that
    /// restarts mid-run resumes the schedule where it stands instead of replaying the past.
    pub skip_before: Duration,
}

/// The default bound on requests in flight over all runners.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10_000;

impl EngineConfig {
    /// The configuration of `profile` for one runner, with the target already resolved to
    /// `base_url` (a Service reference is resolved by the caller, which knows the cluster).
    pub fn from_profile(profile: &LoadProfile, base_url: &str, plan: Plan, share: RunnerShare) -> EngineConfig {
        let total_in_flight = profile.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
        EngineConfig {
            base_url: base_url.to_owned(),
            requests: profile.requests.clone(),
            model: profile.model,
            plan,
            share,
            max_in_flight: crate::load::stages::runner_share(total_in_flight, share.index, share.of).max(1),
            think_time: profile.think_time.map(|t| t.as_std()).unwrap_or_default(),
            timeout: profile.timeout.as_std(),
            http2: profile.http2,
            skip_before: Duration::ZERO,
        }
    }
}

/// What the engine tells its caller about once a second, and once more at the end.
#[derive(Debug)]
pub struct Tick {
    /// Time since the run's start.
    pub elapsed: Duration,
    /// What ended in the last second of wall time, for a live progress line.
    pub live: LiveFigures,
    /// Seconds (of intended start) that are now final, in order, each exactly once.
    pub sealed: Vec<(u64, Bucket)>,
}

/// Requests that *ended* in the last wall-clock second: a live view, not a verdict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveFigures {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    /// 99th percentile of the latency (from the intended start) of those requests.
    pub p99: Duration,
    /// Requests in flight now.
    pub in_flight: u64,
    /// The level the plan asks of this engine now: rate (open) or VUs (closed).
    pub level: f64,
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// Everything recorded over the whole run.
    pub total: Bucket,
    /// Seconds since the start when the last request ended.
    pub elapsed: Duration,
    /// The run was stopped through its cancellation token before the plan's end. (A stop
    /// after the plan's end, while the last requests are in flight, only cuts their wait
    /// short, as described in the module documentation.)
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("load.target: {url:?} is not a usable URL: {reason}")]
    Url { url: String, reason: String },
    #[error("load.requests[{index}]: {reason}")]
    Request { index: usize, reason: String },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// Every connection is a file descriptor, and the open model may hold up to `maxInFlight` of
/// them: raise the soft limit to the hard one, as far as the system allows. A limit that stays
/// low shows as connect errors in the summary, not as a crash.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open file limit"),
    }
}

/// Runs `config` from `start` (a moment on tokio's clock; offsets count from it), sending
/// [`Tick`]s to `ticks` when given, until the plan ends or `stop` is cancelled.
///
/// `start` may lie ahead (runners that start together) or behind (a runner resuming with
/// `skip_before`); requests intended between `skip_before` and now are then sent at once,
/// late, and their latency shows it.
pub async fn run(
    config: EngineConfig,
    start: Instant,
    ticks: Option<mpsc::Sender<Tick>>,
    stop: CancellationToken,
) -> Result<RunOutcome, EngineError> {
    let RunnerShare { index, of } = config.share;
    if of == 0 {
        return Err(ScheduleError::NoRunners.into());
    }
    if index >= of {
        return Err(ScheduleError::NoSuchRunner { index, of }.into());
    }
    let target = Target::parse(&config.base_url)?;
    let templates = request::templates(&target, &config.requests, config.http2)?;
    let weights: Vec<u32> = config.requests.iter().map(|r| r.weight).collect();
    let concurrency = match config.model {
        LoadModel::Open => config.max_in_flight,
        LoadModel::Closed => closed::peak_vus(&config),
    };
    let client = Client::new(
        target,
        templates,
        Mix::new(if weights.is_empty() { &[1] } else { &weights }),
        config.http2,
        client::h2_connections(concurrency),
    );
    let shared = Arc::new(Shared { client, shards: Shards::new()?, start, timeout: config.timeout });
    tracing::info!(
        url = %config.base_url,
        model = ?config.model,
        runner = index,
        runners = of,
        requests = config.requests.len().max(1),
        http2 = config.http2,
        "load engine starting"
    );
    let outcome = match config.model {
        LoadModel::Open => open::run(&config, &shared, Books::new(ticks), &stop).await?,
        LoadModel::Closed => closed::run(&config, &shared, Books::new(ticks), &stop).await?,
    };
    tracing::info!(
        sent = outcome.total.counts.total,
        ok = outcome.total.counts.ok,
        dropped = outcome.total.counts.dropped,
        elapsed_ms = u64::try_from(outcome.elapsed.as_millis()).unwrap_or(u64::MAX),
        stopped = outcome.stopped,
        "load engine done"
    );
    Ok(outcome)
}

/// What every task of a run shares.
#[derive(Debug)]
struct Shared {
    client: Client,
    shards: Shards,
    start: Instant,
    timeout: Duration,
}

impl Shared {
    /// `at` as an offset from the run's start (zero before it).
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.start)
    }
}

/// Ticks once a second of wall time, from `start + 1 s`; late ticks are skipped, not bunched.
fn tick_interval(start: Instant) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval
}

/// A run's tasks and books, handed from pacing to [`wind_down`].
#[derive(Debug)]
struct Running {
    tasks: JoinSet<()>,
    books: Books,
    abandon: Abandon,
    /// `stop` was cancelled while pacing.
    stopped: bool,
}

/// The end of a run, common to both models: waits until every task has ended, ticking
/// meanwhile (sealing before `horizon` of the elapsed time), and once `stop` is cancelled
/// lets requests in flight end for [`STOP_GRACE`] before the tasks are told to abandon them
/// (each then records its request in flight itself). Then sends the final tick and sums up.
async fn wind_down(
    shared: &Shared,
    running: Running,
    stop: &CancellationToken,
    horizon: impl Fn(Duration) -> u64,
    level: impl Fn(Duration) -> f64,
) -> Result<RunOutcome, EngineError> {
    let Running { mut tasks, mut books, abandon, stopped } = running;
    let mut interval = tick_interval(shared.start);
    let mut abandon = Some(abandon);
    // Whether the stop has been seen, before the plan's end or since.
    let mut stopping_seen = stopped;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let grace = tokio::time::sleep_until(if stopped { Instant::now() + STOP_GRACE } else { far });
    tokio::pin!(grace);
    let stopping = stop.cancelled();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            biased;
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Err(error)) if error.is_panic() => {
                    tracing::error!(%error, "a load engine task panicked; its request in flight is lost");
                }
                Some(_) => {}
            },
            () = &mut stopping, if !stopping_seen => {
                stopping_seen = true;
                grace.as_mut().reset(Instant::now() + STOP_GRACE);
            }
            () = &mut grace, if abandon.is_some() => {
                tracing::info!(tasks = tasks.len(), "stop grace over; abandoning requests in flight");
                drop(abandon.take());
            }
            _ = interval.tick() => {
                let elapsed = shared.offset(Instant::now());
                books.tick(&shared.shards, elapsed, horizon(elapsed), [], level(elapsed))?;
            }
        }
    }
    let elapsed = shared.offset(Instant::now());
    books.finish(&shared.shards, elapsed, level(elapsed)).await?;
    Ok(RunOutcome { total: shared.shards.total()?, elapsed, stopped })
}

/// The senders whose drop tells every task to abandon its request in flight: one oneshot per
/// task, because polling a oneshot receiver is a lock-free check, where a shared cancellation
/// token would take its mutex on every poll of every task.
#[derive(Debug, Default)]
struct Abandon(Vec<tokio::sync::oneshot::Sender<()>>);

impl Abandon {
    /// The receiver a new task selects on.
    fn watch(&mut self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.push(tx);
        rx
    }

    /// Forgets the tasks that have ended.
    fn prune(&mut self) {
        self.0.retain(|tx| !tx.is_closed());
    }
}
