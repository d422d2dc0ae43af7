//! The `chaoslab` command's library: the user's commands (`cli`) and the local environment that
//! runs the lab's app and experiments on loopback (`local`). The binary (`main.rs`) parses flags
//! and turns errors into exit codes; everything it calls is here or in the crates below.
//!
//! The crates below are re-exported under their old module names, so a test reads
//! `chaoslab::api`, `chaoslab::load` or `chaoslab::proxy` whatever crate holds it
//! (docs/architecture.md draws the floors).

pub use chaoslab_api as api;
pub use chaoslab_core::{admission, domain, faults, load, trial};
pub use chaoslab_dataplane::{demo, engine, proxy, serve};
pub use chaoslab_operator::{controller, metrics, operator, runner};
pub use chaoslab_report as report;

pub mod cli;
pub mod local;
