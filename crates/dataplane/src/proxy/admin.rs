//! The admin port (HTTP/1.1): the fault set (`GET`, `PUT`, `DELETE /faults`), `/stats`,
//! `/metrics`, `/healthz` and `/readyz`. docs/proxy.md is its reference.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use serde::Serialize;

use super::{
    faults::type_name,
    metrics,
    state::{FaultCell, view_of},
    stats::Stats,
};

#[derive(Clone)]
struct Admin {
    faults: Arc<FaultCell>,
    stats: Arc<Stats>,
    ready: Arc<AtomicBool>,
    registry: Arc<Registry>,
}

pub fn router(faults: Arc<FaultCell>, stats: Arc<Stats>, ready: Arc<AtomicBool>) -> Router {
    let registry = Arc::new(metrics::registry(Arc::clone(&stats), Arc::clone(&faults)));
    Router::new()
        .route("/faults", get(get_faults).put(put_faults).delete(delete_faults))
        .route("/stats", get(stats_report))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Admin { faults, stats, ready, registry })
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the answer failed: {error}\n")).into_response()
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

async fn get_faults(State(admin): State<Admin>) -> Response {
    json(StatusCode::OK, &admin.faults.view())
}

async fn put_faults(State(admin): State<Admin>, body: Bytes) -> Response {
    match admin.faults.put_json(&body) {
        Ok(installed) => {
            let view = view_of(&installed);
            let kinds: Vec<&str> = view.faults.iter().map(|f| type_name(f.kind)).collect();
            tracing::info!(
                generation = installed.generation,
                faults = ?kinds,
                expires_at = ?view.expires_at.map(|t| t.to_string()),
                seed = installed.seed,
                active = view.active,
                "fault set installed"
            );
            json(StatusCode::OK, &view)
        }
        Err(error) => {
            tracing::info!(%error, "fault set refused; the current one stays");
            json(StatusCode::BAD_REQUEST, &ErrorBody { error: error.to_string() })
        }
    }
}

async fn delete_faults(State(admin): State<Admin>) -> Response {
    let installed = admin.faults.install(None);
    tracing::info!(generation = installed.generation, "fault set removed: pass-through");
    json(StatusCode::OK, &view_of(&installed))
}

async fn stats_report(State(admin): State<Admin>) -> Response {
    json(StatusCode::OK, &admin.stats.report())
}

async fn metrics_text(State(admin): State<Admin>) -> Response {
    crate::serve::exposition(metrics::encode(&admin.registry))
}

async fn readyz(State(admin): State<Admin>) -> Response {
    if admin.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or draining\n").into_response()
    }
}
