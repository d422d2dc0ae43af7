//! chaoslab's pure core: everything that decides, and nothing that does. It knows the API's types
//! and plain values; no Kubernetes client, no sockets, no HTTP server, no charts.
//!
//! - `admission`: a manifest checked as the API server and the operator check it (the CRD's
//!   schema, unknown fields, CEL, the spec checks): the one gate of the CLI, the lab and tests.
//! - `domain`: the rules of PodKill and of every kind's spec (namespace safety, target
//!   selection, expressions, spec checks), and the planning of a PodKill.
//! - `load`: a LoadTest's stages, schedule, measurement, verdict and summary (the one judge of
//!   a LoadTest, for the cluster and for `chaoslab load`), and the runner's wire protocol.
//! - `trial`: the judged kinds (Drill, CircuitBreakerTrial, AutoscalingCheck): their plans, the
//!   conductor of a run over a `World` that each environment implements, and their judges.
//! - `faults`: the fault set a ServiceFault's proxy applies, as the operator sends it.
//!
//! Tested from plain values and on tokio's paused clock.

// The floor below, named as a module so that paths read the same in every crate.
use chaoslab_api as api;

pub mod admission;
pub mod domain;
pub mod faults;
pub mod load;
pub mod trial;
