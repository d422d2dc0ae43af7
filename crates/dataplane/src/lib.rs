//! What carries requests: the load engine that sends them (`engine`), the fault-injecting proxy
//! that stands in front of a Service (`proxy`), the lab's demo app that answers them (`demo`),
//! and what the three share to serve (`serve`: signals and the `/metrics` exposition).
//!
//! Each feeds the pure core (`chaoslab_core`) plain values: the engine its timings, the proxy its
//! fault set; the decisions live there.

// The floors below, named as modules so that paths read the same in every crate.
use chaoslab_api as api;
use chaoslab_core::load;

pub mod demo;
pub mod engine;
pub mod proxy;
pub mod serve;
