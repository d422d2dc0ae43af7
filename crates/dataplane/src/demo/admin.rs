//! The admin endpoints, so a drill can flip a pattern without a restart: `GET /admin/config`
//! (the configuration in force, as JSON), `PUT /admin/config` (replace it: fields left out take
//! their defaults, but the name stays), `PATCH /admin/config` (merge into it), and `GET /admin/state` (each
//! upstream's breaker, bulkhead and retry budget right now). A change is validated whole and
//! refused with 400 naming the field; the name is fixed at start. There is no authentication:
//! the demo is a lab target, reachable only where it is deployed.

use std::sync::Arc;

use axum::{Router, body::Bytes, extract::State, http::StatusCode, response::Response, routing::get};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    config::{ConfigError, DemoConfig},
    lifecycle::Readiness,
    state::{Demo, Red, error_body, json_response},
};

pub fn routes() -> Router<Arc<Demo>> {
    Router::new()
        .route("/admin/config", get(get_config).put(put_config).patch(patch_config))
        .route("/admin/state", get(state))
}

fn to_bytes(v: &Value) -> Vec<u8> {
    // Serializing a Value cannot fail.
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

async fn get_config(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "admin");
    red.answer(json_response(StatusCode::OK, to_bytes(&demo.config().to_json())))
}

fn parse(body: &[u8]) -> Result<Value, ConfigError> {
    serde_json::from_slice(body).map_err(|e| ConfigError::new("config", format!("the body is not JSON: {e}")))
}

async fn put_config(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    let red = Red::start(&demo.metrics, "admin");
    let result = match parse(&body) {
        Ok(mut doc) => {
            // The name is fixed: a replacement may leave it out.
            if let Some(map) = doc.as_object_mut() {
                map.entry("name").or_insert_with(|| Value::from(demo.config().name.clone()));
            }
            demo.change(|_| DemoConfig::from_json(&doc)).await
        }
        Err(e) => Err(e),
    };
    red.answer(answer(&demo, result))
}

async fn patch_config(State(demo): State<Arc<Demo>>, body: Bytes) -> Response {
    let red = Red::start(&demo.metrics, "admin");
    let result = match parse(&body) {
        Ok(patch) => demo.change(|current| current.merged(&patch)).await,
        Err(e) => Err(e),
    };
    red.answer(answer(&demo, result))
}

fn answer(demo: &Demo, result: Result<Arc<DemoConfig>, ConfigError>) -> Response {
    match result {
        Ok(config) => json_response(StatusCode::OK, to_bytes(&config.to_json())),
        Err(e) => {
            tracing::info!(error = %e, "configuration change refused");
            json_response(StatusCode::BAD_REQUEST, to_bytes(&error_body(&demo.config().name, 400, &e)))
        }
    }
}

/// Each upstream's patterns as they stand.
async fn state(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "admin");
    let runtime = demo.snapshot();
    let now = Instant::now();
    let upstreams: Vec<Value> = runtime
        .upstreams
        .iter()
        .map(|u| {
            let breaker = u.breaker.as_ref().and_then(|b| b.lock().ok()).map(|b| {
                let (failure, slow, calls) = b.rates(now);
                json!({"state": b.state(now).as_str(), "failureRate": failure, "slowCallRate": slow, "calls": calls})
            });
            let bulkhead = u.bulkhead.as_ref().map(|b| {
                let (in_use, queued, rejected) = b.figures();
                json!({"inUse": in_use, "queued": queued, "rejected": rejected})
            });
            let budget = u.budget.as_ref().and_then(|b| b.lock().ok()).map(|b| {
                let (calls, retries, allowed) = b.figures(now);
                json!({"calls": calls, "retries": retries, "allowed": allowed})
            });
            json!({"name": u.name(), "circuitBreaker": breaker, "bulkhead": bulkhead, "retryBudget": budget})
        })
        .collect();
    let body = json!({
        "service": runtime.config.name,
        "readiness": match demo.readiness() {
            Readiness::Ready => "ready",
            Readiness::Starting { .. } => "starting",
            Readiness::ShuttingDown => "shuttingDown",
        },
        "inFlight": demo.in_flight.count(),
        "upstreams": upstreams,
    });
    red.answer(json_response(StatusCode::OK, to_bytes(&body)))
}
