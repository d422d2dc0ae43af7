//! The operator's one HTTP port: `/metrics` (Prometheus text), `/healthz` (the process is
//! alive) and `/readyz` (leading with controllers running, or a healthy standby).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};

use crate::metrics::Metrics;

/// What the probes report, shared with the operator's main loop.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

async fn metrics_text(State(s): State<AppState>) -> axum::response::Response {
    chaoslab_dataplane::serve::exposition(s.metrics.encode())
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.health.is_ready() { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_and_metrics_answer_over_a_real_socket() {
        let metrics = Arc::new(Metrics::default());
        drop(metrics.reconcile_started("PodKill"));
        let health = Arc::new(Health::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(metrics, health.clone())).into_future());

        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"), "not ready before the controllers run");
        health.set_ready(true);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get("/metrics").await;
        assert!(metrics.contains("chaoslab_reconciliations_total{kind=\"PodKill\"} 1"), "{metrics}");
        server.abort();
    }
}
