//! The load engine's pure planning core: what a load profile runs (stages), when each request
//! of the open model is due (schedule), and how measured figures are judged (verdict).
//!
//! Nothing here does I/O or keeps time: the engine (runner pods, pacing loop, HDR histograms)
//! feeds it plain values, so every rule is unit-tested from plain values, like `domain`.

pub mod schedule;
pub mod stages;
pub mod verdict;

pub use schedule::{Due, Pacer, RunnerShare, Schedule, ScheduleError};
pub use stages::{Plan, PlanError, Step, expand, expand_preset};
pub use verdict::{Figures, evaluate, judge};
