//! HTTP mode (L7): HTTP/1.1 and h2c (prior knowledge) from clients, forwarded to the upstream
//! over HTTP/1.1 (clients on HTTP/1.1) or HTTP/2 prior knowledge (clients on h2), with the
//! faults applied per request.
//!
//! A task per client connection (hyper-util's `auto` server). The request's method, path and
//! query, headers and body go upstream as they came, less the hop-by-hop headers (RFC 9110
//! 7.6.1: `Connection` and the headers it names, `Proxy-Connection`, `Keep-Alive`, `TE` other
//! than `trailers`, `Transfer-Encoding`, `Upgrade`); `Host` and `:authority` are not touched.
//! Bodies stream both ways, frame by frame: nothing is buffered beyond hyper's own buffers and a
//! pacer's slice. Upgrades (WebSocket) are not supported: `Upgrade` is dropped.
//!
//! Faults (the order is `plan`'s):
//! - `abort`: the status and body at once; upstream never sees the request.
//! - `reset`: HTTP/1.1: the client connection is closed with a TCP RST (`SO_LINGER` 0) and
//!   nothing is written; h2: the request's stream is reset (`RST_STREAM`, `INTERNAL_ERROR`),
//!   the connection and its other streams go on.
//! - `blackhole`: no answer; the request is held until the client goes away, or until it is
//!   released (the set is replaced, removed or expires, or the proxy drains) and is then
//!   forwarded as if no fault had applied.
//! - `latency`: `request` delays are waited from the request's arrival before forwarding,
//!   `response` delays from the upstream response head before returning it; both are cut
//!   short by a release, the request then going on at once.
//! - `bandwidth`: the request body (upstream) and the response body (to the client) are each
//!   paced at the rate, per request (h2: per stream).
//!
//! Upstream failures: a connection that cannot be opened answers 502 (504 when connecting timed
//! out); a request that broke before its response head answers 502. A kept-alive upstream
//! connection found closed before the request was written is replaced and the request sent on a
//! new one; one that breaks after the request was written, having been idle for a second or
//! more, is retried once on a new one when the request is idempotent and has no body.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version, header};
use hyper::{body::Incoming, client::conn::http2, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Shared,
    body::ProxyBody,
    plan::{Decision, FaultAction, RequestView},
    state::{Installed, released},
    stats::unix_second,
    timer,
    upstream::{ConnectError, H1Conn, H1Pool, Upstream, open_h2},
};

/// A route in http mode: its upstream and its idle upstream connections.
#[derive(Debug)]
pub struct Route {
    pub upstream: Upstream,
    pub pool: H1Pool,
}

/// The server options of every client connection.
pub fn server_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No header read timeout (hyper has none without a timer): closing a client's idle
    // keep-alive connection would be a fault of the proxy's own.
    builder.http1().writev(true).auto_date_header(false);
    builder.http2().auto_date_header(false);
    builder
}

/// Accepts client connections on `listener` until `stop`, each served in a task of `tracker`.
pub async fn serve(
    listener: TcpListener,
    route: Arc<Route>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                shared.stats.connection();
                let number = shared.next_connection();
                tracker.spawn(connection(stream, number, Arc::clone(&route), Arc::clone(&shared), stop.clone()));
            }
            Err(error) => {
                // Out of descriptors, mostly: wait a little rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One client connection, until it ends; at `stop` it finishes its requests in flight (h1)
/// or streams (h2) and closes.
async fn connection(stream: TcpStream, number: u64, route: Arc<Route>, shared: Arc<Shared>, stop: CancellationToken) {
    let ctx = Arc::new(ConnCtx {
        shared: Arc::clone(&shared),
        route,
        number,
        requests: AtomicU64::new(0),
        reset: AtomicBool::new(false),
        h1: Mutex::new(None),
        h2: tokio::sync::Mutex::new(None),
    });
    let io = TokioIo::new(ClientIo { stream, ctx: Arc::clone(&ctx) });
    let service_ctx = Arc::clone(&ctx);
    drop(ctx);
    let service = service_fn(move |request| handle(Arc::clone(&service_ctx), request));
    let conn = shared.server.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::trace!(%error, connection = number, "client connection ended");
    }
}

/// What a client connection's requests share.
#[derive(Debug)]
struct ConnCtx {
    shared: Arc<Shared>,
    route: Arc<Route>,
    /// The connection's number, in accept order over the whole proxy.
    number: u64,
    /// Requests so far.
    requests: AtomicU64,
    /// Set by a `reset` fault (HTTP/1.1): the socket is closed with an RST.
    reset: AtomicBool,
    /// The upstream HTTP/1.1 connection (one request at a time: never contended).
    h1: Mutex<Option<H1Conn>>,
    /// The upstream HTTP/2 connection of an h2 client.
    h2: tokio::sync::Mutex<Option<http2::SendRequest<ProxyBody>>>,
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        if let Some(conn) = self.h1.get_mut().ok().and_then(Option::take) {
            self.route.pool.give_back(conn);
        }
    }
}

/// The client's socket, closed with an RST when a `reset` fault asked for it.
struct ClientIo {
    stream: TcpStream,
    ctx: Arc<ConnCtx>,
}

impl ClientIo {
    fn resetting(&self) -> bool {
        self.ctx.reset.load(Ordering::Relaxed)
    }
}

impl Drop for ClientIo {
    fn drop(&mut self) {
        if self.resetting()
            && let Err(error) = self.stream.set_zero_linger()
        {
            tracing::debug!(%error, "cannot set SO_LINGER 0 for a reset");
        }
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.resetting() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.resetting() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.resetting() {
            // No FIN before the RST.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// The service's error: only a `reset` fault, which makes hyper drop the connection (h1) or
/// reset the stream (h2).
#[derive(Debug, thiserror::Error)]
#[error("reset by a fault")]
pub struct ResetByFault;

async fn handle(ctx: Arc<ConnCtx>, request: Request<Incoming>) -> Result<Response<ProxyBody>, ResetByFault> {
    let arrived = Instant::now();
    let shared = &ctx.shared;
    let installed = shared.faults.current();
    let number = ctx.requests.fetch_add(1, Ordering::Relaxed);
    let second = unix_second();
    let decision = match installed.active_plan(arrived) {
        Some(plan) if !shared.faults.is_draining() => {
            let view = RequestView { method: request.method(), path: request.uri().path(), headers: request.headers() };
            plan.decide(ctx.number, number, Some(&view))
        }
        _ => Decision::default(),
    };
    shared.stats.request(second, &decision.applied);
    match decision.action {
        FaultAction::Pass => {}
        FaultAction::Abort { status, body } => return Ok(abort(status, body)),
        FaultAction::Reset => {
            if request.version() != Version::HTTP_2 {
                ctx.reset.store(true, Ordering::Relaxed);
            }
            return Err(ResetByFault);
        }
        FaultAction::Blackhole => {
            hold(shared, &installed, None).await;
            tracing::debug!(connection = ctx.number, request = number, "blackholed request released: forwarding it");
            return forward(&ctx, request, &Decision::default(), second).await;
        }
    }
    if !decision.request_delay.is_zero() {
        hold(shared, &installed, Some(arrived + decision.request_delay)).await;
    }
    let response = forward(&ctx, request, &decision, second).await?;
    if !decision.response_delay.is_zero() {
        hold(shared, &installed, Some(Instant::now() + decision.response_delay)).await;
    }
    Ok(response)
}

/// Waits until `until` (forever for `None`), or less if the set is released meanwhile.
async fn hold(shared: &Shared, installed: &Installed, until: Option<Instant>) {
    let mut changes = shared.faults.subscribe();
    // A release between the request's read of the set and now would otherwise be missed.
    if shared.faults.is_draining() || shared.faults.current().generation != installed.generation {
        return;
    }
    let wait = async {
        match until {
            Some(until) => timer::sleep_until(until).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = wait => {}
        () = released(&mut changes, installed.deadline) => {}
    }
}

fn abort(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(body.clone()));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}

/// Sends the request upstream and returns the response (its body paced as decided), or a 502
/// or 504 of the proxy's own.
async fn forward(
    ctx: &ConnCtx,
    request: Request<Incoming>,
    decision: &Decision,
    second: u64,
) -> Result<Response<ProxyBody>, ResetByFault> {
    let stats = &ctx.shared.stats;
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let h2 = parts.version == Version::HTTP_2;
    let request = Request::from_parts(parts, ProxyBody::stream(body, decision.bandwidth));
    stats.upstream_request(second);
    let sent = Instant::now();
    let result = if h2 { ctx.send_h2(request).await } else { ctx.send_h1(request).await };
    let response = match result {
        Ok(response) => response,
        Err(failure) => {
            stats.upstream_error(second);
            tracing::debug!(upstream = %ctx.route.upstream, error = %failure, "upstream failed");
            return Ok(failure.response());
        }
    };
    stats.upstream_answer(response.status().as_u16(), sent.elapsed(), ctx.number);
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::stream(body, decision.bandwidth)))
}

/// Why a request got no answer from upstream.
#[derive(Debug, thiserror::Error)]
enum UpstreamFailure {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("the request failed upstream: {0}")]
    Request(#[from] hyper::Error),
}

impl UpstreamFailure {
    fn response(&self) -> Response<ProxyBody> {
        let status = match self {
            UpstreamFailure::Connect(c) if c.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        let mut response = Response::new(ProxyBody::full(Bytes::from(format!("chaoslab proxy: {self}\n"))));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

/// How long a kept-alive connection must have been idle before a broken request on it is
/// retried (a server closing an idle connection is the only close that races a request).
const RETRY_IDLE: Duration = Duration::from_secs(1);

impl ConnCtx {
    fn upstream_timeout(&self) -> Duration {
        self.shared.connect_timeout
    }

    async fn send_h1(&self, mut request: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamFailure> {
        let kept = self.h1.lock().ok().and_then(|mut slot| slot.take());
        let mut next = kept.or_else(|| self.route.pool.take());
        loop {
            let (mut conn, fresh) = match next.take() {
                Some(conn) => (conn, false),
                None => (H1Conn::open(&self.route.upstream, self.upstream_timeout()).await?, true),
            };
            // A kept connection may still be reading the end of its previous response.
            if let Err(error) = conn.sender.ready().await {
                if fresh {
                    return Err(error.into());
                }
                continue;
            }
            let retry = (!fresh
                && conn.last_used.elapsed() >= RETRY_IDLE
                && idempotent(request.method())
                && hyper::body::Body::is_end_stream(request.body()))
            .then(|| head_copy(&request));
            conn.used += 1;
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    conn.last_used = Instant::now();
                    if let Ok(mut slot) = self.h1.lock() {
                        *slot = Some(conn);
                    }
                    return Ok(response);
                }
                Err(mut error) => {
                    let unsent = error.take_message();
                    let error = error.into_error();
                    match (unsent, retry) {
                        (Some(unsent), _) if !fresh => request = unsent,
                        (None, Some(copy)) => request = copy,
                        _ => return Err(error.into()),
                    }
                    tracing::trace!(%error, used = conn.used, "kept-alive upstream connection closed; sending on a new one");
                }
            }
        }
    }

    async fn send_h2(&self, request: Request<ProxyBody>) -> Result<Response<Incoming>, UpstreamFailure> {
        let mut sender = {
            let mut slot = self.h2.lock().await;
            match slot.as_ref() {
                Some(sender) if !sender.is_closed() => sender.clone(),
                _ => {
                    let sender = open_h2(&self.route.upstream, self.upstream_timeout()).await?;
                    *slot = Some(sender.clone());
                    sender
                }
            }
        };
        sender.ready().await?;
        Ok(sender.send_request(request).await?)
    }
}

fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// A request with the same head and no body, to send again.
fn head_copy(request: &Request<ProxyBody>) -> Request<ProxyBody> {
    let mut copy = Request::new(ProxyBody::Empty);
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

/// Removes the hop-by-hop headers (RFC 9110 7.6.1), keeping `TE: trailers` (HTTP/2 allows it
/// and gRPC needs it).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderValue> = headers.get_all(header::CONNECTION).iter().cloned().collect();
        headers.remove(header::CONNECTION);
        for value in &named {
            for token in value.to_str().unwrap_or_default().split(',') {
                let token = token.trim();
                if !token.is_empty() && !token.eq_ignore_ascii_case("te") {
                    headers.remove(token);
                }
            }
        }
    }
    headers.remove("proxy-connection");
    headers.remove("keep-alive");
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::UPGRADE);
    if let Some(te) = headers.get(header::TE)
        && !(headers.get_all(header::TE).iter().count() == 1 && te.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped_and_end_to_end_ones_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Custom-Hop"),
            ("connection", "close"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("host", "web.ns.svc"),
            ("content-length", "5"),
            ("x-end-to-end", "yes"),
        ] {
            headers.append(http::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host", "te", "x-end-to-end"]);

        let mut headers = HeaderMap::new();
        headers.insert(header::TE, HeaderValue::from_static("gzip, trailers"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.is_empty());
    }
}
