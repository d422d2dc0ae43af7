//! The lab's target app (`chaoslab demo`): a configurable HTTP service with resilience patterns
//! that can be switched on and off at runtime.
//!
//! Three of them make the lab's topology, `frontend → catalog → inventory`. Each serves a work
//! route (latency, CPU, an injected error rate, a padded JSON answer), calls its upstreams with a
//! timeout, retries under a budget, a circuit breaker, a bulkhead and a fallback, reports RED
//! metrics and the patterns' figures on `/metrics`, and shuts down gracefully or not. The
//! patterns are pure state machines (`breaker`, `retry`, `bulkhead`, `lifecycle`), tested from
//! plain values with time as a parameter; `upstream` and `server` put them on the wire.
//! `docs/lab.md` documents every knob and the JSON shape of the configuration.

pub mod admin;
pub mod breaker;
pub mod bulkhead;
pub mod config;
pub mod lifecycle;
pub mod metrics;
pub mod retry;
pub mod server;
pub mod state;
pub mod topology;
pub mod upstream;
pub mod work;

pub use config::{ConfigError, DemoConfig};
pub use server::{Demo, Exit, serve};

/// Why the demo service could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}
