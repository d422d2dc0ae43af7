//! The HTTP side of the demo service: the routes (the work route on every
//! path the others leave, `/healthz`, `/readyz`, `/metrics`, `/admin/...`), the work route's
//! handler, and serving until SIGTERM with the shutdown the lifecycle asks for.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::{sync::watch, time::Instant};

pub use super::state::{Demo, Runtime};
use super::{
    DemoError,
    config::CallMode,
    lifecycle::{Readiness, ShutdownPlan},
    state::{Red, json_response},
    upstream::DependencyResult,
    work,
};

/// The routes. `admin` adds `/admin/config` and `/admin/state`.
pub fn router(demo: Arc<Demo>, admin: bool) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    if admin {
        router = router.merge(super::admin::routes());
    }
    let closing = axum::middleware::map_response_with_state(demo.clone(), close_when_shutting_down);
    router.fallback(work_route).layer(closing).with_state(demo)
}

/// Once shutting down, every answer says `Connection: close`, so clients stop reusing their
/// pooled connections here during the shutdown delay instead of racing the final close (as
/// Go's `Server.Shutdown` turns keep-alives off).
async fn close_when_shutting_down(State(demo): State<Arc<Demo>>, mut response: Response) -> Response {
    if demo.lifecycle.shutting_down() {
        response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    }
    response
}

async fn healthz(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "healthz");
    red.answer((StatusCode::OK, "ok").into_response())
}

async fn readyz(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "readyz");
    let readiness = demo.readiness();
    demo.metrics.set_ready(readiness == Readiness::Ready);
    let response = match readiness {
        Readiness::Ready => (StatusCode::OK, "ready".to_owned()),
        Readiness::Starting { ready_in } => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("starting: ready in {:.1}s", ready_in.as_secs_f64()))
        }
        Readiness::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_owned()),
    };
    red.answer(response.into_response())
}

async fn metrics_text(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "metrics");
    demo.metrics.set_ready(demo.readiness() == Readiness::Ready);
    demo.metrics.set_in_flight(demo.in_flight.count());
    red.answer(crate::serve::exposition(demo.metrics.encode()))
}

/// The work route: shed if over the limit, wait and burn CPU, maybe fail on purpose, call the
/// upstreams, answer with what happened.
async fn work_route(State(demo): State<Arc<Demo>>) -> Response {
    let red = Red::start(&demo.metrics, "work");
    let runtime = demo.snapshot();
    let config = &runtime.config;
    let _in_flight = demo.in_flight.enter();
    let in_flight = demo.in_flight.count();
    demo.metrics.set_in_flight(in_flight);
    let limit = u64::from(config.max_concurrent_requests);
    if limit > 0 && in_flight > limit {
        let body = json!({
            "service": config.name, "ok": false, "status": 503,
            "error": {"reason": format!("overloaded: {in_flight} requests in flight, maxConcurrentRequests is {limit}")},
        });
        return red.answer(json_response(StatusCode::SERVICE_UNAVAILABLE, work::padded(&body, 0)));
    }
    let delay = work::draw_latency(&config.work) + demo.lifecycle.warmup_extra(Instant::now(), &config.lifecycle);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    work::burn_cpu(config.work.cpu.as_std(), demo.cores.clone()).await;
    let size = config.work.response_bytes as usize;
    if work::draw_error(&config.work) {
        let body = json!({
            "service": config.name, "ok": false, "status": 500,
            "error": {"injected": true, "reason": format!("injected error (errorPercent {})", config.work.error_percent)},
        });
        return red.answer(json_response(StatusCode::INTERNAL_SERVER_ERROR, work::padded(&body, size)));
    }
    let results = call_upstreams(&demo, &runtime).await;
    let failed = results.iter().find(|r| r.required && !r.ok);
    let status = failed.map_or(200, DependencyResult::failure_status);
    let mut body = json!({"service": config.name, "ok": failed.is_none(), "status": status, "dependencies": results});
    if let Some(f) = failed {
        body["error"] = json!({
            "dependency": f.name,
            "outcome": f.outcome,
            "reason": f.reason.clone().unwrap_or_else(|| format!("the call to {} failed", f.name)),
        });
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    red.answer(json_response(status, work::padded(&body, size)))
}

/// The upstream calls of one request: in sequence (stopping at the first required failure),
/// or all at once.
async fn call_upstreams(demo: &Demo, runtime: &Runtime) -> Vec<DependencyResult> {
    match runtime.config.calls {
        CallMode::Sequence => {
            let mut results = Vec::with_capacity(runtime.upstreams.len());
            for upstream in &runtime.upstreams {
                let result = upstream.call(&demo.client, &demo.metrics).await;
                let stop = result.required && !result.ok;
                results.push(result);
                if stop {
                    break;
                }
            }
            results
        }
        CallMode::Parallel => {
            futures::future::join_all(runtime.upstreams.iter().map(|u| u.call(&demo.client, &demo.metrics))).await
        }
    }
}

/// How serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Graceful: every connection finished within the drain timeout.
    Drained,
    /// Graceful: the drain timeout passed with requests still in flight; they are dropped.
    DrainTimedOut { in_flight: u64 },
    /// Ungraceful (`graceful: false`): SIGTERM, and the process should exit at once.
    Abrupt { in_flight: u64 },
}

/// What the shutdown future tells the serving loop.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Serving,
    Draining(Duration),
    ExitNow,
}

/// Serves on `listener` until `stop` resolves (SIGTERM, in the binary), then shuts down as the
/// configuration in force at that moment says.
pub async fn serve(
    listener: tokio::net::TcpListener,
    demo: Arc<Demo>,
    admin: bool,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Exit, DemoError> {
    let addr: SocketAddr = listener.local_addr().map_err(DemoError::Listen)?;
    let config = demo.config();
    tracing::info!(service = %config.name, %addr, upstreams = config.upstreams.len(), "serving");
    let (stage_tx, mut stage) = watch::channel(Stage::Serving);
    let on_stop = demo.clone();
    let shutdown = async move {
        stop.await;
        on_stop.lifecycle.begin_shutdown(Instant::now());
        on_stop.metrics.set_ready(false);
        match ShutdownPlan::of(&on_stop.config().lifecycle) {
            ShutdownPlan::ExitNow => {
                let _ = stage_tx.send(Stage::ExitNow);
                // The serving loop returns; this future never lets axum start its own drain.
                std::future::pending::<()>().await;
            }
            ShutdownPlan::Graceful { serve_for, drain_for } => {
                tracing::info!(
                    in_flight = on_stop.in_flight.count(),
                    serve_for = ?serve_for,
                    "SIGTERM: readiness fails, serving on before draining"
                );
                tokio::time::sleep(serve_for).await;
                tracing::info!(in_flight = on_stop.in_flight.count(), drain_for = ?drain_for, "draining: no new connections");
                let _ = stage_tx.send(Stage::Draining(drain_for));
            }
        }
    };
    let app = router(demo.clone(), admin);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future();
    tokio::pin!(server);
    let drain_for = loop {
        tokio::select! {
            result = &mut server => {
                result.map_err(DemoError::Serve)?;
                return Ok(Exit::Drained);
            }
            changed = stage.changed() => {
                if changed.is_err() {
                    // The shutdown future is gone: the server is ending on its own.
                    (&mut server).await.map_err(DemoError::Serve)?;
                    return Ok(Exit::Drained);
                }
                match *stage.borrow_and_update() {
                    Stage::Serving => {}
                    Stage::ExitNow => {
                        let in_flight = demo.in_flight.count();
                        tracing::warn!(in_flight, "SIGTERM with graceful shutdown off: exiting at once, dropping the requests in flight");
                        return Ok(Exit::Abrupt { in_flight });
                    }
                    Stage::Draining(d) => break d,
                }
            }
        }
    };
    match tokio::time::timeout(drain_for, &mut server).await {
        Ok(result) => {
            result.map_err(DemoError::Serve)?;
            tracing::info!("drained: every request in flight was answered");
            Ok(Exit::Drained)
        }
        Err(_) => {
            let in_flight = demo.in_flight.count();
            tracing::warn!(in_flight, "drain timeout: exiting with requests still in flight");
            Ok(Exit::DrainTimedOut { in_flight })
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use serde_json::Value;

    use super::*;
    use crate::demo::DemoConfig;

    /// One request on a connection of its own: the status and the body.
    async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut out = String::new();
        stream.read_to_string(&mut out).await.expect("read");
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        (head[9..12].parse().expect("status"), body.to_owned())
    }

    fn json(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// The head of the answer to a keep-alive request.
    async fn head_of_keep_alive(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the connection closed before the head: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).to_lowercase()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn once_shutting_down_answers_close_their_connections() {
        let config =
            DemoConfig::from_json(&json!({"name": "catalog", "lifecycle": {"shutdownDelay": "1h"}})).expect("config");
        let demo = Demo::new(config).expect("demo");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, demo.clone(), false, std::future::pending::<()>()));
        let before = head_of_keep_alive(addr).await;
        assert!(before.starts_with("http/1.1 200") && !before.contains("connection: close"), "{before}");
        demo.lifecycle.begin_shutdown(Instant::now());
        let during = head_of_keep_alive(addr).await;
        assert!(during.starts_with("http/1.1 200") && during.contains("connection: close"), "{during}");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_routes_answer_and_the_admin_endpoint_changes_what_they_do() {
        let config = DemoConfig::from_json(&json!({
            "name": "catalog", "work": {"responseBytes": 300}, "lifecycle": {"startDelay": "1h", "shutdownDelay": "0s"}
        }))
        .expect("config");
        let demo = Demo::new(config).expect("demo");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, demo.clone(), true, async move {
            let _ = stopped.await;
        }));

        let (status, body) = call(addr, "GET", "/any/path", "").await;
        assert_eq!((status, body.len()), (200, 300), "{body}");
        assert_eq!(json(&body)["service"], "catalog");
        assert_eq!(call(addr, "GET", "/healthz", "").await, (200, "ok".to_owned()));
        let (status, body) = call(addr, "GET", "/readyz", "").await;
        assert!(status == 503 && body.starts_with("starting: ready in"), "slow start: {status} {body}");

        // A refused change names the field and changes nothing.
        let (status, body) = call(addr, "PATCH", "/admin/config", r#"{"work": {"errorPercent": 101}}"#).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(json(&body)["error"]["field"], "work.errorPercent");
        let (status, body) = call(addr, "PATCH", "/admin/config", "{not json").await;
        assert_eq!((status, json(&body)["error"]["field"].clone()), (400, Value::from("config")));

        // Every request fails on purpose.
        let (status, _) = call(addr, "PATCH", "/admin/config", r#"{"work": {"errorPercent": 100}}"#).await;
        assert_eq!(status, 200);
        let (status, body) = call(addr, "GET", "/", "").await;
        assert_eq!(status, 500);
        assert_eq!(json(&body)["error"]["injected"], true);

        // A required upstream that refuses connections: 502 naming it; with a static fallback, 200.
        let put = r#"{"lifecycle": {"shutdownDelay": "0s"},
                      "upstreams": [{"name": "inventory", "url": "http://127.0.0.1:1/", "timeout": "2s"}]}"#;
        let (status, body) = call(addr, "PUT", "/admin/config", put).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["name"], "catalog", "PUT keeps the name");
        assert_eq!(json(&body)["work"]["errorPercent"], 0.0, "PUT resets what it leaves out");
        let (status, body) = call(addr, "GET", "/", "").await;
        let answer = json(&body);
        assert_eq!(status, 502, "{body}");
        assert_eq!(answer["error"]["dependency"], "inventory");
        assert_eq!(answer["dependencies"][0]["outcome"], "error");
        let patch =
            r#"{"upstreams": [{"name": "inventory", "fallback": {"mode": "static", "body": {"stock": "unknown"}}}]}"#;
        assert_eq!(call(addr, "PATCH", "/admin/config", patch).await.0, 200);
        let (status, body) = call(addr, "GET", "/", "").await;
        let answer = json(&body);
        assert_eq!(status, 200, "{body}");
        assert_eq!(answer["dependencies"][0]["fallback"], true);
        assert_eq!(answer["dependencies"][0]["answer"], json!({"stock": "unknown"}));

        // Load shedding: one request in flight at most. (Upstreams merge by name: an empty
        // list in a patch leaves them as they are; a PUT replaces them.)
        let patch = r#"{"upstreams": [], "maxConcurrentRequests": 1, "work": {"latency": "300ms"}}"#;
        let (status, body) = call(addr, "PATCH", "/admin/config", patch).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["upstreams"][0]["name"], "inventory");
        let slow = tokio::spawn(call(addr, "GET", "/", ""));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (status, body) = call(addr, "GET", "/", "").await;
        assert_eq!(status, 503, "{body}");
        assert!(json(&body)["error"]["reason"].as_str().is_some_and(|r| r.starts_with("overloaded")), "{body}");
        assert_eq!(slow.await.expect("task").0, 200);

        let (_, metrics) = call(addr, "GET", "/metrics", "").await;
        for line in [
            r#"chaoslab_demo_requests_total{service="catalog",route="work",status_class="5xx"} 3"#,
            r#"chaoslab_demo_dependency_calls_total{service="catalog",upstream="inventory",outcome="fallback"} 2"#,
            // The PUT left out the start delay: ready now.
            r#"chaoslab_demo_ready{service="catalog"} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in:\n{metrics}");
        }
        let (_, state) = call(addr, "GET", "/admin/state", "").await;
        assert_eq!(json(&state)["readiness"], "ready");

        let _ = stop.send(());
        let exit = server.await.expect("task").expect("served");
        assert_eq!(exit, Exit::Drained);
    }
}
