//! Talking to a proxy's admin port from outside: read its statistics, replace or clear its fault
//! set. The operator reads proxy pods by IP; the local environment drives proxies on loopback.
//! One request per connection, bounded in time and in size: a caller must never hang on a proxy
//! that went away.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::net::TcpStream;

use super::{FaultSet, StatsReport};

/// How long one admin request may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read (3600 per-second points and a few maps fit many times over).
const MAX_BODY: usize = 4 << 20;

/// `GET /stats` on `host` (`ip:port`, IPv6 in brackets).
pub async fn get_stats(host: &str) -> Result<StatsReport, String> {
    let body = request(host, http::Method::GET, "/stats", None).await?;
    serde_json::from_slice(&body).map_err(|e| format!("/stats is not the proxy's statistics: {e}"))
}

/// `PUT /faults`: replace the fault set atomically.
pub async fn put_faults(host: &str, set: &FaultSet) -> Result<(), String> {
    let body = serde_json::to_vec(set).map_err(|e| e.to_string())?;
    request(host, http::Method::PUT, "/faults", Some(body)).await.map(drop)
}

/// `DELETE /faults`: back to a plain pass-through at once.
pub async fn clear_faults(host: &str) -> Result<(), String> {
    request(host, http::Method::DELETE, "/faults", None).await.map(drop)
}

/// One request within [`ADMIN_TIMEOUT`]; a status other than 2xx is an error naming it.
pub async fn request(host: &str, method: http::Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, String> {
    tokio::time::timeout(ADMIN_TIMEOUT, send(host, method, path, body))
        .await
        .map_err(|_| format!("{host}{path}: no answer within {}s", ADMIN_TIMEOUT.as_secs()))?
}

async fn send(host: &str, method: http::Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, String> {
    let stream = TcpStream::connect(host).await.map_err(|e| format!("{host}: {e}"))?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        // The connection ends with the one request; its error is the request's error.
        let _ = connection.await;
    });
    let mut builder = http::Request::builder().method(method).uri(path).header(http::header::HOST, host);
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY);
    let collected = limited.collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("{path} answered {status}: {}", String::from_utf8_lossy(&collected).trim()));
    }
    Ok(collected)
}
