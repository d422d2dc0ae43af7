//! A judged run's load in the cluster: a child LoadTest whose runner pods measure and report.
//! It starts when every runner runs (the LoadTest's `loadStartsAt`); its figures come from the
//! runners' reports, per second (for abort rules and the SLO) and over any window (estimated
//! from the per-second points, see [`window_figures`]).

use std::{ops::Range, time::Duration};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use tokio::time::{Instant, sleep};

use super::{
    build,
    children::{Children, ended, message_of},
};
use crate::{
    api::{LoadTest, Phase, load::LoadProfile},
    controller::loadtest::{
        build::{REPORT_GRACE, START_TIMEOUT},
        read_reports,
    },
    load::{
        Figures,
        protocol::{MergedRun, Point, RUN_LABEL, per_second, window_figures},
    },
    trial::drive::{WorldError, at},
};

/// Runner reports are replaced every few seconds: reading them more often only costs the API
/// server.
const READ_EVERY: Duration = Duration::from_secs(1);

/// The rate asked for over seconds `[from, to)` (open model), for the figures' target rate.
pub type TargetRate<'a> = &'a dyn Fn(u64, u64) -> Option<f64>;

/// The load of one run, once started.
pub struct ChildLoad {
    children: Children,
    load_test: LoadTest,
    /// The runners that must have reported before any second counts as measured.
    runners: usize,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    points: Vec<Point>,
    sealed: u64,
    read_at: Option<Instant>,
}

impl ChildLoad {
    /// Creates the LoadTest of `profile` (lasting `seconds`), waits until its runners start
    /// together, and returns once the load's second 0 has begun.
    pub async fn start(children: &Children, profile: LoadProfile, seconds: u64) -> Result<ChildLoad, WorldError> {
        let runners = usize::try_from(profile.runners.parallelism).unwrap_or(usize::MAX);
        let wanted = build::load_test(&children.owner, profile);
        let name = wanted.name_any();
        let created = children.create(&wanted).await?;
        let started = children
            .wait_for::<LoadTest>(&name, START_TIMEOUT + Duration::from_secs(30), "start its runners", |lt| {
                ended(lt) || lt.status.as_ref().is_some_and(|s| s.load_starts_at.is_some())
            })
            .await?
            .ok_or_else(|| WorldError(format!("the load's LoadTest {name} was deleted before it started")))?;
        let Some(starts_at) = started.status.as_ref().and_then(|s| s.load_starts_at.as_ref()).map(|t| t.0) else {
            return Err(WorldError(format!(
                "the load's LoadTest {name} ended before it started: {}",
                message_of(&started)
            )));
        };
        tracing::info!(run = %children.owner.name, load_test = %name, start = %starts_at, "the run's load starts");
        if let Ok(wait) = Duration::try_from(starts_at.duration_since(Timestamp::now())) {
            sleep(wait).await;
        }
        Ok(ChildLoad {
            children: children.clone(),
            load_test: if created.uid().is_some() { created } else { started },
            runners,
            starts_at,
            ends_at: at(starts_at, Duration::from_secs(seconds)),
            points: Vec::new(),
            sealed: 0,
            read_at: None,
        })
    }

    /// Reads the runner reports again if the last reading is older than [`READ_EVERY`]
    /// (`fresh`: whatever its age).
    pub async fn read(&mut self, fresh: bool) -> Result<(), WorldError> {
        if !fresh && self.read_at.is_some_and(|t| t.elapsed() < READ_EVERY) {
            return Ok(());
        }
        let uid = self.load_test.uid().unwrap_or_default();
        let ns = &self.children.owner.namespace;
        let selector = format!("{RUN_LABEL}={uid}");
        let reports = read_reports(self.children.client(), ns, &selector, &self.load_test)
            .await
            .map_err(|e| WorldError(format!("the load's runner reports: {e}")))?;
        let merged =
            MergedRun::merge(reports.values()).map_err(|e| WorldError(format!("the load's runner reports: {e}")))?;
        self.points = merged.points;
        // Until every runner has reported, a second holds only part of the load: none counts.
        self.sealed = if reports.len() < self.runners { 0 } else { merged.sealed };
        self.read_at = Some(Instant::now());
        Ok(())
    }

    /// The seconds every runner has sealed, from the load's start.
    pub fn sealed(&self) -> u64 {
        self.sealed
    }

    /// Each sealed second's figures (index = second), as last read.
    pub fn per_second(&self, rate: TargetRate<'_>) -> Vec<Option<Figures>> {
        per_second(&self.points, self.sealed, rate)
    }

    /// The figures over `seconds` (clipped to what is sealed), as last read; `None` when no
    /// request was measured there.
    pub fn figures_over(&self, seconds: Range<u64>, rate: TargetRate<'_>) -> Result<Option<Figures>, WorldError> {
        let window = seconds.start..seconds.end.min(self.sealed);
        if window.is_empty() {
            return Ok(None);
        }
        window_figures(&self.points, window.clone(), rate(window.start, window.end))
            .map_err(|e| WorldError(format!("the figures of seconds {window:?}: {e}")))
    }

    /// Stops the load (at once if its plan has not ended) and waits until its LoadTest has
    /// ended with every report final.
    pub async fn stop(&self) -> Result<(), WorldError> {
        let name = self.load_test.name_any();
        if Timestamp::now() + SignedDuration::from_millis(500) < self.ends_at {
            self.children.abort::<LoadTest>(&name).await?;
        }
        let limit = REPORT_GRACE + Duration::from_secs(30);
        let Some(lt) = self.children.wait_for::<LoadTest>(&name, limit, "end", ended).await? else {
            return Err(WorldError(format!("the load's LoadTest {name} was deleted: its reports are gone")));
        };
        if lt.status.as_ref().and_then(|s| s.run.phase) == Some(Phase::Failed) {
            return Err(WorldError(format!("the load's LoadTest {name} failed: {}", message_of(&lt))));
        }
        Ok(())
    }
}
