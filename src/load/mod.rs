//! The load engine's pure core: what a load profile runs (stages), when each request of the
//! open model is due (schedule), what was measured (measure: HDR histograms per second, merged
//! exactly across runners, reported compactly), and how the figures are judged (verdict).
//!
//! Nothing here does I/O or keeps time: the engine (runner pods, pacing loop, HTTP client) feeds
//! it plain values, so every rule is unit-tested from plain values, like `domain`.

pub mod measure;
pub mod schedule;
pub mod stages;
pub mod verdict;

pub use measure::{Bucket, MeasureError, Outcome, Recorder, Report, WindowFigures};
pub use schedule::{Due, Pacer, RunnerShare, Schedule, ScheduleError};
pub use stages::{Plan, PlanError, Step, expand, expand_preset};
pub use verdict::{Figures, evaluate, judge};
