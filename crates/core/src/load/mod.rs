//! A LoadTest's pure core: what a load profile runs (stages), when each request of the open
//! model is due (schedule), what was measured (measure: HDR histograms per second, merged exactly
//! across runners, reported compactly), how the figures are judged (verdict, summary), and what
//! runners and the operator say to each other (protocol).
//!
//! No I/O, no clock: the engine that sends the requests (`chaoslab_dataplane::engine`) feeds it
//! plain values, so every rule is unit-tested from plain values.

pub mod measure;
pub mod protocol;
pub mod schedule;
pub mod stages;
pub mod summary;
pub mod verdict;

pub use measure::{Bucket, LoadRecorder, MeasureError, Outcome, Recording, WindowFigures};
pub use schedule::{Due, Pacer, RunnerShare, Schedule, ScheduleError};
pub use stages::{Plan, PlanError, Step, expand, expand_preset};
pub use verdict::{Figures, evaluate, judge};

/// The URL load goes to when its target is a Service reached at `base` (`http://127.0.0.1:8080`),
/// with the target's path prefix.
pub fn service_url(base: &str, path: Option<&str>) -> String {
    format!("{}{}", base.trim_end_matches('/'), path.unwrap_or("").trim_end_matches('/'))
}
