//! What every chaoslab server shares: the `/metrics` exposition (operator, proxy, demo) and the
//! signal that stops it.

use std::fmt;

use prometheus_client::registry::Registry;

/// The OpenMetrics text of a registry: what every chaoslab process serves on `/metrics`
/// (operator, proxy, demo).
pub fn encode_registry(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// The answer of a `/metrics` route: the text with its content type, or a 500 that says the
/// encoding failed.
pub fn exposition(encoded: Result<String, fmt::Error>) -> axum::response::Response {
    use axum::{http::StatusCode, response::IntoResponse};
    match encoded {
        Ok(body) => {
            (StatusCode::OK, [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response(),
    }
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested (SIGTERM or Ctrl-C)");
}
