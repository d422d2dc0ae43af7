//! The demo service's shared state: the configuration in force with each upstream's runtime
//! patterns, the service's lifecycle and metrics, and the answer helpers every route uses (JSON
//! bodies, RED metrics per request, the error body) — what `server` and `admin` both build on.

use std::sync::{Arc, RwLock};

use axum::{
    body::Body,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::{sync::Semaphore, time::Instant};

use super::{
    DemoError,
    config::{ConfigError, DemoConfig},
    lifecycle::{InFlight, Lifecycle, Readiness},
    metrics::Metrics,
    upstream::{HttpClient, UpstreamRuntime, http_client},
};

/// The configuration in force and the runtime state of each upstream's patterns.
#[derive(Debug)]
pub struct Runtime {
    pub config: Arc<DemoConfig>,
    pub upstreams: Vec<Arc<UpstreamRuntime>>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Demo {
    runtime: RwLock<Arc<Runtime>>,
    /// Serialises configuration changes: each reads the configuration in force and replaces it.
    changing: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
    pub in_flight: Arc<InFlight>,
    pub(crate) client: HttpClient,
    /// One permit per core for the CPU work.
    pub(crate) cores: Arc<Semaphore>,
}

impl Demo {
    /// The service for a configuration (validated here).
    pub fn new(config: DemoConfig) -> Result<Arc<Demo>, DemoError> {
        config.validate()?;
        let now = Instant::now();
        let metrics = Metrics::new(&config.name);
        let runtime = Arc::new(build_runtime(config, None, now));
        for u in &runtime.upstreams {
            metrics.breaker_state(u.name(), u.breaker_state());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Arc::new(Demo {
            runtime: RwLock::new(runtime),
            changing: tokio::sync::Mutex::new(()),
            metrics,
            lifecycle: Lifecycle::new(now),
            in_flight: Arc::new(InFlight::default()),
            client: http_client(),
            cores: Arc::new(Semaphore::new(cores)),
        }))
    }

    /// The runtime in force; a request keeps the one it started with.
    pub fn snapshot(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn config(&self) -> Arc<DemoConfig> {
        self.snapshot().config.clone()
    }

    /// Replaces the configuration with what `change` makes of the one in force (validated;
    /// the name cannot change). Patterns whose settings stay the same keep their state.
    pub async fn change(
        &self,
        change: impl FnOnce(&DemoConfig) -> Result<DemoConfig, ConfigError>,
    ) -> Result<Arc<DemoConfig>, ConfigError> {
        let _one_at_a_time = self.changing.lock().await;
        let current = self.snapshot();
        let next = change(&current.config)?;
        if next.name != current.config.name {
            return Err(ConfigError::new(
                "name",
                format!("is fixed at start ({:?}): it labels the metrics", current.config.name),
            ));
        }
        let runtime = Arc::new(build_runtime(next, Some(&current), Instant::now()));
        for old in &current.upstreams {
            if !runtime.upstreams.iter().any(|u| u.name() == old.name()) {
                self.metrics.breaker_state(old.name(), None);
            }
        }
        for u in &runtime.upstreams {
            self.metrics.breaker_state(u.name(), u.breaker_state());
        }
        let config = runtime.config.clone();
        match self.runtime.write() {
            Ok(mut r) => *r = runtime,
            Err(poisoned) => *poisoned.into_inner() = runtime,
        }
        tracing::info!(config = %config.to_json(), "configuration changed");
        Ok(config)
    }

    pub fn readiness(&self) -> Readiness {
        self.lifecycle.readiness(Instant::now(), &self.config().lifecycle)
    }
}

fn build_runtime(config: DemoConfig, previous: Option<&Runtime>, now: Instant) -> Runtime {
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| {
            let before = previous.and_then(|p| p.upstreams.iter().find(|o| o.name() == u.name));
            Arc::new(UpstreamRuntime::new(u, before.map(|b| b.as_ref()), now))
        })
        .collect();
    Runtime { config: Arc::new(config), upstreams }
}

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

fn class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Records a request in the RED metrics when answered, or as `canceled` if its handler is
/// dropped first (the client went away, or an ungraceful exit).
pub(crate) struct Red<'a> {
    metrics: &'a Metrics,
    route: &'static str,
    start: Instant,
    done: bool,
}

impl<'a> Red<'a> {
    pub(crate) fn start(metrics: &'a Metrics, route: &'static str) -> Red<'a> {
        Red { metrics, route, start: Instant::now(), done: false }
    }

    pub(crate) fn answer(mut self, response: Response) -> Response {
        self.done = true;
        self.metrics.request(self.route, class(response.status()), self.start.elapsed().as_secs_f64());
        response
    }
}

impl Drop for Red<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.request(self.route, "canceled", self.start.elapsed().as_secs_f64());
        }
    }
}

/// The answer of the admin endpoints and the work route on a bad request.
pub(crate) fn error_body(service: &str, status: u16, e: &ConfigError) -> Value {
    json!({
        "service": service, "ok": false, "status": status,
        "error": {"field": e.field, "problem": e.problem, "reason": e.to_string()},
    })
}
