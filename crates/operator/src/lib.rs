//! The operator: a controller per chaoslab kind (`controller`), the process that runs them with
//! leader election, health and metrics (`operator`, `metrics`), and the runner a LoadTest's Job
//! pods run (`runner`). This is where the pure core meets the Kubernetes API: the controllers
//! dereference, validate and build with `chaoslab_core`, then apply and write status.

// The floors below, named as modules so that paths read the same in every crate.
use chaoslab_api as api;
use chaoslab_core::{domain, load, trial};
use chaoslab_dataplane::proxy;
use chaoslab_report as report;

pub mod controller;
pub mod metrics;
pub mod operator;
pub mod runner;
