//! Conducting an AutoscalingCheck in any environment: the load is started, desired and ready
//! replicas are sampled every second into a bounded timeline under the load and while
//! scale-down is watched after it, abort rules and a person's stop end it early, and what was
//! sampled is judged with [`super::scaling`]. The world (a cluster's HPA and Deployment, or the
//! lab's pods and their local HPA on loopback) samples and loads; this module owns the order,
//! the timing and the verdict, so both environments judge alike.

use std::{future::Future, ops::Range, time::Duration};

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use tokio::time::{Instant, sleep};

use super::{
    cue::fired,
    drive::{WorldError, at},
    judge::verdict_of,
    scaling::{self, ScalingJudged, ScalingRun},
};
use crate::{
    api::{
        Verdict,
        common::human_duration,
        figures::AbortRecord,
        trial::{AutoscalingCheckSpec, AutoscalingCheckStatus, ReplicaSample},
    },
    load::{Figures, stages::Plan},
};

/// How often replicas are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Replica samples that may fail in a row (transient API errors) before the check ends in Error.
const MAX_FAILED_READS: u32 = 30;
/// How long scale-down is watched when the spec does not say (the HPA's default window is 5m).
pub const DEFAULT_OBSERVE_SCALE_DOWN: Duration = Duration::from_secs(360);
/// The most samples the timeline keeps (one per change): far below the object size limit.
pub const MAX_SAMPLES: usize = 600;

/// What an AutoscalingCheck needs from its environment.
pub trait ScalingWorld {
    /// The desired count (the HPA's) and the ready count (the Deployment's) now.
    fn sample(&mut self) -> impl Future<Output = Result<ReplicaSample, WorldError>> + Send;
    /// Starts the load; returns when its second 0 began and when it ends by itself.
    fn start_load(&mut self) -> impl Future<Output = Result<(Timestamp, Timestamp), WorldError>> + Send;
    /// Each second measured so far, from the load's start (index = second), with the rate
    /// the load asked for; asked every sample while the load runs, for the abort rules.
    fn seconds(&mut self) -> impl Future<Output = Vec<Option<Figures>>> + Send;
    /// Stops the load (at once on an abort; at its end it only waits for it).
    fn stop_load(&mut self) -> impl Future<Output = Result<(), WorldError>> + Send;
    /// Every second the load measured, once stopped and scale-down watched (final figures).
    fn measured(&mut self) -> impl Future<Output = Result<Vec<Option<Figures>>, WorldError>> + Send;
    /// The load's figures over `seconds` as one window, after [`ScalingWorld::measured`].
    fn figures_over(&mut self, seconds: Range<u64>)
    -> impl Future<Output = Result<Option<Figures>, WorldError>> + Send;
    /// A person asked to stop the check (the abort annotation, a deletion, Ctrl-C): what they
    /// asked, for the record.
    fn stop_requested(&mut self) -> impl Future<Output = Option<String>> + Send;
    /// The timeline grew (a new sample is in `st`): where a world tells it (a status write, a
    /// line on the terminal).
    fn progressed(&mut self, st: &AutoscalingCheckStatus) -> impl Future<Output = ()> + Send;
}

/// What the check found of its target before it started.
#[derive(Clone, Debug)]
pub struct ScalingTarget {
    /// The load's levels over time.
    pub plan: Plan,
    /// The HPA's `minReplicas`.
    pub min_replicas: i32,
    /// The HPA's scale-down stabilization window.
    pub stabilization: Duration,
}

/// A judged check: its verdict, why, and what the load measured (the report's seconds).
#[derive(Clone, Debug)]
pub struct ScalingOutcome {
    pub verdict: Verdict,
    pub message: String,
    pub load_start: Timestamp,
    pub seconds: Vec<Option<Figures>>,
}

/// Runs the check of `spec` on `target` in `world`: samples into `st.timeline`, and on
/// success writes the figures and the expectations into `st` and returns the verdict.
pub async fn watch<W: ScalingWorld>(
    spec: &AutoscalingCheckSpec,
    target: &ScalingTarget,
    world: &mut W,
    st: &mut AutoscalingCheckStatus,
) -> Result<ScalingOutcome, WorldError> {
    let sampled = sample(spec, target, world, st).await?;
    judge(spec, target, world, st, sampled).await
}

/// What sampling the run left to judge.
struct Sampled {
    load_start: Timestamp,
    /// When the load ended (its plan's end, or earlier on an abort).
    load_end: Timestamp,
    /// When watching the scale-down ended.
    observed_until: Timestamp,
    aborted: Option<AbortRecord>,
}

/// Starts the load and records the replica timeline into `st` until the load has stopped and
/// the count is back at the minimum (or never went up, or the watch is over, or a person
/// stopped the run).
async fn sample<W: ScalingWorld>(
    spec: &AutoscalingCheckSpec,
    target: &ScalingTarget,
    world: &mut W,
    st: &mut AutoscalingCheckStatus,
) -> Result<Sampled, WorldError> {
    // The count before the load: what a scale-up is measured from.
    record(&mut st.timeline, world.sample().await?);
    let (load_start, ends_at) = world.start_load().await?;
    let observe = spec.observe_scale_down_for.map_or(DEFAULT_OBSERVE_SCALE_DOWN, |d| d.as_std());
    let mut load_end = ends_at;
    let mut observed_until = at(load_end, observe);
    let mut aborted: Option<AbortRecord> = None;
    let mut load_stopped = false;
    let mut scaled_up = false;
    let mut written = st.timeline.len();
    let mut full = false;
    let mut failed_reads = 0u32;
    loop {
        let tick = Instant::now();
        // A sample that cannot be read (a transient API error) is skipped; many in a row end
        // the check.
        let sample = match world.sample().await {
            Ok(sample) => {
                failed_reads = 0;
                sample
            }
            Err(error) if failed_reads < MAX_FAILED_READS => {
                failed_reads += 1;
                tracing::warn!(%error, failed_reads, "a replica sample was not read");
                sleep(SAMPLE_EVERY.saturating_sub(tick.elapsed())).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        let now = sample.at.0;
        let first = st.timeline.first().map_or(sample.desired, |s| s.desired);
        scaled_up |= sample.desired > first;
        let back_down = scaled_up && sample.desired <= target.min_replicas;
        if !full && !record(&mut st.timeline, sample) {
            tracing::warn!("the replica timeline is full; no more samples are kept");
            full = true;
        }
        // A person's stop, under load or while scale-down is watched.
        if aborted.is_none()
            && let Some(rule) = world.stop_requested().await
        {
            aborted = Some(AbortRecord { rule, observed: Vec::new(), at: Time(now) });
        }
        if !load_stopped {
            if aborted.is_none() {
                aborted = fired(&spec.abort_when, &world.seconds().await, now);
            }
            if aborted.is_some() || now >= ends_at {
                world.stop_load().await?;
                load_stopped = true;
                load_end = load_end.min(now);
                observed_until = at(load_end, observe);
            }
        }
        if st.timeline.len() != written {
            written = st.timeline.len();
            st.run.message = Some(progress(st.timeline.last(), load_start, load_stopped));
            world.progressed(st).await;
        }
        // After the load: until the count is back at the minimum, or never went up, or the
        // watch is over, or a person stopped it.
        if load_stopped && (back_down || !scaled_up || aborted.is_some() || now >= observed_until) {
            observed_until = observed_until.min(now);
            break;
        }
        sleep(SAMPLE_EVERY.saturating_sub(tick.elapsed())).await;
    }
    Ok(Sampled { load_start, load_end, observed_until, aborted })
}

/// Judges the sampled run: the scaling figures and expectations, the verdict, into `st`.
async fn judge<W: ScalingWorld>(
    spec: &AutoscalingCheckSpec,
    target: &ScalingTarget,
    world: &mut W,
    st: &mut AutoscalingCheckStatus,
    sampled: Sampled,
) -> Result<ScalingOutcome, WorldError> {
    let Sampled { load_start, load_end, observed_until, aborted } = sampled;
    let seconds = world.measured().await?;
    let steady = steady_windows(&target.plan, load_start)
        .into_iter()
        .map(|(from, to)| (from, to.min(load_end)))
        .filter(|(from, to)| from < to)
        .collect();
    let scaling_run = ScalingRun {
        load_start,
        load_end,
        observed_until,
        min_replicas: target.min_replicas,
        scale_down_stabilization: target.stabilization,
        steady,
    };
    let judged = scaling::figures(&st.timeline, &scaling_run);
    let (from, to) = judged.scale_up_window;
    let seconds_of = |t: Timestamp| Duration::try_from(t.duration_since(load_start)).unwrap_or_default().as_secs();
    let scale_up_load = world.figures_over(seconds_of(from)..seconds_of(to).max(seconds_of(from) + 1)).await?;
    let judged = scaling::judge(judged, &scaling_run, &spec.expect, scale_up_load.as_ref());
    figures_into(st, &judged);
    let (mut verdict, mut message) = verdict_of(&judged.expectations, &[]);
    if let Some(record) = &aborted {
        verdict = Verdict::Aborted;
        message = if record.observed.is_empty() {
            format!("aborted by {}", record.rule)
        } else {
            format!("aborted by the rule `{}` (observed {})", record.rule, record.observed.join(", "))
        };
    }
    st.judgement.expectations = judged.expectations;
    st.judgement.aborted_by = aborted;
    Ok(ScalingOutcome { verdict, message, load_start, seconds })
}

/// `3 desired, 2 ready, 42s after the load's start (under load)`
fn progress(last: Option<&ReplicaSample>, load_start: Timestamp, load_stopped: bool) -> String {
    let (desired, ready) = last.map_or((0, 0), |s| (s.desired, s.ready));
    let secs = Duration::try_from(Timestamp::now().duration_since(load_start)).unwrap_or_default().as_secs();
    let when = if load_stopped { "watching scale-down" } else { "under load" };
    format!("{desired} desired, {ready} ready, {secs}s after the load's start ({when})")
}

/// Adds `sample` to the timeline if the counts changed; `false` once the timeline is full.
pub fn record(timeline: &mut Vec<ReplicaSample>, sample: ReplicaSample) -> bool {
    let changed = timeline.last().is_none_or(|l| (l.desired, l.ready) != (sample.desired, sample.ready));
    if !changed {
        return true;
    }
    if timeline.len() >= MAX_SAMPLES {
        return false;
    }
    timeline.push(sample);
    true
}

/// The windows where the load's level holds still (each step's settled part): flaps are
/// counted there.
pub fn steady_windows(plan: &Plan, start: Timestamp) -> Vec<(Timestamp, Timestamp)> {
    plan.steps().iter().map(|s| (at(start, s.settled), at(start, s.end))).filter(|(a, b)| a < b).collect()
}

/// The figures of the judgement, into status.
pub fn figures_into(status: &mut AutoscalingCheckStatus, judged: &ScalingJudged) {
    status.peak_replicas = judged.peak_replicas;
    status.time_to_first_scale_up = judged.time_to_first_scale_up.map(human_duration);
    status.time_to_peak = judged.time_to_peak.map(human_duration);
    status.time_to_scale_down = judged.time_to_scale_down.map(human_duration);
    status.flaps = Some(judged.flaps);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_keeps_one_sample_per_change_and_is_bounded() {
        let first = ReplicaSample { at: Time(Timestamp::UNIX_EPOCH), desired: 3, ready: 2 };
        let mut timeline = Vec::new();
        assert!(record(&mut timeline, first.clone()));
        assert!(record(&mut timeline, first.clone()));
        assert_eq!(timeline.len(), 1, "no change, no sample");
        for i in 0..MAX_SAMPLES as i32 {
            record(&mut timeline, ReplicaSample { desired: i % 2 + 4, ..first.clone() });
        }
        assert_eq!(timeline.len(), MAX_SAMPLES);
        assert!(!record(&mut timeline, ReplicaSample { desired: 9, ..first }), "full");
    }

    #[test]
    fn steady_windows_are_the_held_parts_of_the_plan() {
        let profile: crate::api::load::LoadProfile =
            serde_saphyr::from_str("target: {url: 'http://x/'}\nstages: [{duration: 10s, target: 100}, {duration: 50s, target: 100}, {duration: 5s, target: 0}]\n")
                .unwrap();
        let plan = crate::load::stages::expand(&profile, None).unwrap();
        let start = Timestamp::UNIX_EPOCH;
        let windows = steady_windows(&plan, start);
        assert_eq!(windows, vec![(at(start, Duration::from_secs(10)), at(start, Duration::from_secs(60)))]);
    }
}
