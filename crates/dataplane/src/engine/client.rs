//! The engine's HTTP connections: one request on a connection from start to the last body
//! byte, with its timeout and its outcome class. HTTP itself is hyper's.
//!
//! HTTP/1.1: each open-model worker and each closed-model VU owns one keep-alive connection
//! (hyper's `client::conn::http1`), whose I/O runs in a task of its own. (Polling the
//! connection from the worker's own task instead, alongside its request, measured about 7 %
//! fewer requests per CPU-second with the client's core saturated: hyper's hand-overs between
//! the request and the connection then wake the very task running them, which costs it a
//! second poll per request.) A connection that broke, timed out or was closed by the server is
//! dropped and the next request opens a new one; the time that takes is part of that request.
//! A connection's task ends once its worker has dropped it, at once even mid-request: hyper
//! closes a connection whose request was abandoned.
//!
//! HTTP/2 (prior knowledge, h2c): hyper's client, over a few shared connections, each
//! multiplexing many streams and driven by its own task; workers and VUs keep a clone of one
//! connection's sender.
//!
//! Outcome classes:
//! - `Connect`: the TCP connection could not be opened, or the connection was closed or reset
//!   before any byte of a response (the server never answered). A kept-alive connection
//!   found closed that way is retried once on a new connection for idempotent methods, since
//!   the server closing an idle connection is not the request's failure; a request hyper had
//!   not written yet (the close was seen first) is sent on a new connection whatever its
//!   method.
//! - `Timeout`: the whole request (connecting included) did not end within the timeout.
//! - `Body`: the response began but could not be read to its end, or was malformed.
//! - otherwise the status decides, against the request's expected statuses.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body_util::BodyExt;
use hyper::{
    body::{Body, Incoming},
    client::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::Mutex,
    time::{Instant, Sleep},
};

use super::request::{Mix, ReqBody, Target, Template};
use crate::load::measure::Outcome;

/// What every connection shares: the target, the request templates and the mix.
#[derive(Debug)]
pub(crate) struct Client {
    target: Target,
    templates: Vec<Template>,
    mix: Mix,
    /// The shared HTTP/2 connections, when speaking HTTP/2.
    h2: Option<H2Pool>,
    /// hyper's options for the HTTP/1.1 connections.
    h1: http1::Builder,
}

impl Client {
    /// `h2_connections` is how many HTTP/2 connections to share (ignored for HTTP/1.1).
    pub fn new(target: Target, templates: Vec<Template>, mix: Mix, http2: bool, h2_connections: usize) -> Client {
        let h2 = http2.then(|| H2Pool::new(h2_connections));
        Client { target, templates, mix, h2, h1: h1_builder() }
    }

    /// The request the `n`-th pick of the mix sends.
    pub fn pick(&self, n: u64) -> usize {
        self.mix.pick(n)
    }

    /// A connection slot for worker or VU number `index`: nothing is opened until its first
    /// request. Must be called within the runtime (it makes the slot's timer).
    pub fn conn(&self, index: usize) -> Conn {
        let kind = match &self.h2 {
            Some(pool) => Kind::H2 { slot: index % pool.slots.len(), handle: None },
            None => Kind::H1(None),
        };
        // One timer per slot, moved to each request's deadline: moving a timer later needs no
        // lock in tokio, where a new timer per request would take the timer wheel's.
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Conn { kind, timer: Box::pin(tokio::time::sleep_until(far)) }
    }
}

/// hyper's HTTP/1.1 client options for the engine's connections.
fn h1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        // A request's head and body go out in one vectored write, without copying the body.
        .writev(true)
        // Header names as they are (lower case): no per-request case conversion.
        .title_case_headers(false);
    builder
}

/// One worker's or VU's connection.
#[derive(Debug)]
pub(crate) struct Conn {
    kind: Kind,
    timer: Pin<Box<Sleep>>,
}

#[derive(Debug)]
enum Kind {
    H1(Option<H1Conn>),
    H2 { slot: usize, handle: Option<H2Handle> },
}

impl Conn {
    /// Sends request `request` (an index into the templates), reads its answer to the end, and
    /// classifies it; gives up at `deadline`.
    pub async fn execute(&mut self, client: &Client, request: usize, deadline: Instant) -> Outcome {
        let Some(template) = client.templates.get(request) else {
            // The mix only picks existing templates.
            return Outcome::UnexpectedStatus;
        };
        self.timer.as_mut().reset(deadline);
        let timer = self.timer.as_mut();
        match &mut self.kind {
            Kind::H1(conn) => {
                let done = tokio::select! {
                    biased;
                    outcome = h1_exchange(conn, client, template) => Some(outcome),
                    () = timer => None,
                };
                done.unwrap_or_else(|| {
                    // The connection is mid-request: it cannot be reused.
                    *conn = None;
                    Outcome::Timeout
                })
            }
            Kind::H2 { slot, handle } => {
                let Some(pool) = &client.h2 else { return Outcome::Connect };
                // A timed-out stream is reset when its future is dropped; the connection stays.
                tokio::select! {
                    biased;
                    outcome = h2_exchange(pool, *slot, handle, &client.target, template) => outcome,
                    () = timer => Outcome::Timeout,
                }
            }
        }
    }
}

async fn tcp(target: &Target) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
    // Small requests must not wait for Nagle's algorithm.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One request on the slot's connection (opening one if it has none), with the retry rule of
/// the module documentation.
async fn h1_exchange(slot: &mut Option<H1Conn>, client: &Client, template: &Template) -> Outcome {
    let target = &client.target;
    let mut retried = false;
    loop {
        let fresh = slot.is_none();
        if fresh {
            match H1Conn::open(target, &client.h1).await {
                Ok(conn) => *slot = Some(conn),
                Err(error) => {
                    tracing::debug!(%error, host = %target.host, port = target.port, "cannot connect");
                    return Outcome::Connect;
                }
            }
        }
        let Some(conn) = slot.as_mut() else { return Outcome::Connect };
        let failure = match conn.exchange(template).await {
            Ok(status) => {
                if !conn.reusable() {
                    *slot = None;
                }
                return template.expect.classify(status);
            }
            Err(failure) => failure,
        };
        let used = conn.used;
        *slot = None;
        match failure {
            H1Failure::NotSent(error) if !fresh => {
                tracing::trace!(%error, requests = used, "kept-alive connection closed while idle; sending on a new one");
            }
            H1Failure::NotSent(error) | H1Failure::NoAnswer(error) if fresh || retried || !template.idempotent => {
                tracing::trace!(%error, "connection closed before a response");
                return Outcome::Connect;
            }
            H1Failure::NotSent(error) | H1Failure::NoAnswer(error) => {
                tracing::trace!(%error, requests = used, "kept-alive connection closed; retrying on a new one");
                retried = true;
            }
            H1Failure::Response(error) => {
                tracing::trace!(%error, "response not read to its end");
                return Outcome::Body;
            }
        }
    }
}

/// How a request on an HTTP/1.1 connection failed.
#[derive(Debug)]
enum H1Failure {
    /// The connection was found closed before the request was written.
    NotSent(hyper::Error),
    /// Closed or reset before any byte of a response: the server never answered.
    NoAnswer(hyper::Error),
    /// The response began but could not be read to its end, or was malformed.
    Response(hyper::Error),
}

/// One HTTP/1.1 keep-alive connection: the sending side, its I/O running in its own task.
#[derive(Debug)]
pub(crate) struct H1Conn {
    sender: http1::SendRequest<ReqBody>,
    /// Bytes read from the server on this connection so far.
    received: Arc<AtomicU64>,
    /// Requests this connection has carried.
    used: u64,
}

impl H1Conn {
    async fn open(target: &Target, builder: &http1::Builder) -> io::Result<H1Conn> {
        let stream = tcp(target).await?;
        let received = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Counted { stream, received: Arc::clone(&received) });
        // An HTTP/1.1 handshake exchanges nothing: it only sets the connection up.
        let (sender, connection) = builder.handshake(io).await.map_err(io::Error::other)?;
        // It ends by itself once the sender is dropped, or the server closes the connection;
        // its errors reach the request that was under way, if any.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "HTTP/1.1 connection ended");
            }
        });
        Ok(H1Conn { sender, received, used: 0 })
    }

    /// Whether the connection can carry another request (hyper keeps it alive unless the
    /// server or the response framing said otherwise).
    fn reusable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends `template`'s request and reads the response to its end; returns its status.
    async fn exchange(&mut self, template: &Template) -> Result<u16, H1Failure> {
        self.used += 1;
        let before = self.received.load(Ordering::Relaxed);
        self.sender.ready().await.map_err(H1Failure::NotSent)?;
        let response = match self.sender.try_send_request(template.request()).await {
            Ok(response) => response,
            Err(mut error) => {
                let not_sent = error.take_message().is_some();
                let error = error.into_error();
                let answered = self.received.load(Ordering::Relaxed) != before;
                return Err(if not_sent {
                    H1Failure::NotSent(error)
                } else if answered || error.is_parse() {
                    H1Failure::Response(error)
                } else {
                    H1Failure::NoAnswer(error)
                });
            }
        };
        let status = response.status().as_u16();
        drain(response.into_body()).await.map_err(H1Failure::Response)?;
        Ok(status)
    }
}

/// Reads a response body to its end, keeping none of it.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    // A body of known length is over once that many bytes came: no wait for its end marker.
    while !body.is_end_stream() {
        match body.frame().await {
            None => break,
            Some(frame) => drop(frame?),
        }
    }
    Ok(())
}

/// A TCP stream that counts the bytes it reads: hyper reports a connection closed mid-head
/// and one closed before any byte alike, and only the second is the server not answering.
#[derive(Debug)]
struct Counted {
    stream: TcpStream,
    received: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot connect: {0}")]
    Tcp(#[from] io::Error),
    #[error("HTTP/2 handshake failed: {0}")]
    Handshake(hyper::Error),
}

/// The class of an HTTP/2 error before any response: a malformed answer is one that could
/// not be read; anything else (closed, reset, refused) means the server never answered.
fn classify_error(error: &hyper::Error) -> Outcome {
    tracing::trace!(%error, "request failed before a response");
    if error.is_parse() || error.is_parse_status() {
        Outcome::Body
    } else if error.is_timeout() {
        Outcome::Timeout
    } else {
        Outcome::Connect
    }
}

/// The shared HTTP/2 connections, each reopened on demand once it has failed.
#[derive(Debug)]
struct H2Pool {
    slots: Vec<Mutex<H2Slot>>,
}

#[derive(Debug, Default)]
struct H2Slot {
    /// Counts the connections this slot opened, so a worker that saw one fail does not
    /// reopen it after another worker already has.
    generation: u64,
    sender: Option<http2::SendRequest<ReqBody>>,
}

/// A worker's clone of one slot's sender.
#[derive(Debug)]
pub(crate) struct H2Handle {
    generation: u64,
    sender: http2::SendRequest<ReqBody>,
}

impl H2Pool {
    fn new(connections: usize) -> H2Pool {
        H2Pool { slots: (0..connections.max(1)).map(|_| Mutex::new(H2Slot::default())).collect() }
    }

    /// The slot's open connection, or a new one if it has none, or only the one `stale` (a
    /// generation) that the caller saw fail. Returns whether the connection is new.
    async fn get(&self, slot: usize, stale: Option<u64>, target: &Target) -> Result<(H2Handle, bool), ConnectError> {
        let Some(slot) = self.slots.get(slot) else {
            return Err(ConnectError::Tcp(io::Error::other("no such HTTP/2 connection slot")));
        };
        let mut slot = slot.lock().await;
        if let Some(sender) = &slot.sender
            && !sender.is_closed()
            && stale != Some(slot.generation)
        {
            return Ok((H2Handle { generation: slot.generation, sender: sender.clone() }, false));
        }
        let io = TokioIo::new(tcp(target).await?);
        let (sender, conn) =
            http2::Builder::new(TokioExecutor::new()).handshake(io).await.map_err(ConnectError::Handshake)?;
        let generation = slot.generation + 1;
        // The connection ends by itself once every sender clone is dropped.
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(%error, generation, "HTTP/2 connection ended");
            }
        });
        slot.generation = generation;
        slot.sender = Some(sender.clone());
        tracing::debug!(generation, "HTTP/2 connection opened");
        Ok((H2Handle { generation, sender }, true))
    }
}

async fn h2_exchange(
    pool: &H2Pool,
    slot: usize,
    handle: &mut Option<H2Handle>,
    target: &Target,
    template: &Template,
) -> Outcome {
    let mut fresh = false;
    loop {
        // `Some(stale)` when a connection must be fetched: any open one, or not the failed one.
        let fetch = match handle {
            Some(h) if !h.sender.is_closed() => None,
            Some(h) => Some(Some(h.generation)),
            None => Some(None),
        };
        if let Some(stale) = fetch {
            match pool.get(slot, stale, target).await {
                Ok((h, new)) => {
                    *handle = Some(h);
                    fresh = new;
                }
                Err(error) => {
                    tracing::debug!(%error, host = %target.host, port = target.port, "cannot connect");
                    return Outcome::Connect;
                }
            }
        }
        let Some(h) = handle.as_mut() else { return Outcome::Connect };
        if h.sender.ready().await.is_err() {
            let failed = h.generation;
            *handle = None;
            if fresh {
                return Outcome::Connect;
            }
            // Let the pool reopen exactly the connection this handle saw fail.
            if let Ok((h, new)) = pool.get(slot, Some(failed), target).await {
                *handle = Some(h);
                fresh = new;
            }
            continue;
        }
        return match h.sender.send_request(template.request()).await {
            Ok(response) => {
                let status = response.status().as_u16();
                match drain(response.into_body()).await {
                    Ok(()) => template.expect.classify(status),
                    Err(error) => {
                        tracing::trace!(%error, "response body not read to the end");
                        Outcome::Body
                    }
                }
            }
            Err(error) => classify_error(&error),
        };
    }
}

/// Shared by the open and the closed model: how many HTTP/2 connections `concurrency`
/// requests in flight share (about 100 streams each, at most 4 connections).
pub(crate) fn h2_connections(concurrency: u32) -> usize {
    usize::try_from(concurrency.div_ceil(100).clamp(1, 4)).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Mutex as StdMutex};

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::api::load::{HttpMethod, RequestSpec};

    /// What a scripted server does with the next request on a connection.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// Writes this answer, in pieces of the server's size.
        Answer(&'static [u8]),
        /// Closes the connection without a byte.
        Close,
    }

    /// What a scripted server received: every request, per connection.
    type Received = Arc<StdMutex<Vec<Vec<u8>>>>;

    /// A server on loopback whose n-th connection follows the n-th script (and is closed at
    /// its end, or at once past the last script), writing answers in pieces of `piece` bytes.
    async fn serve(scripts: Vec<Vec<Step>>, piece: usize) -> (Target, Received) {
        let (target, received, _) = serve_counting_closes(scripts, piece).await;
        (target, received)
    }

    /// [`serve`], also counting the connections the client closed while the server waited for
    /// a request.
    async fn serve_counting_closes(scripts: Vec<Vec<Step>>, piece: usize) -> (Target, Received, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = Target::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let received = Received::default();
        let closed = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&received);
        let closes = Arc::clone(&closed);
        tokio::spawn(async move {
            let mut scripts = scripts.into_iter();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let script = scripts.next().unwrap_or_default();
                let at = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Vec::new());
                    seen.len() - 1
                };
                let seen = Arc::clone(&seen);
                let closes = Arc::clone(&closes);
                tokio::spawn(async move {
                    for step in script {
                        let Some(request) = read_request(&mut stream).await else {
                            closes.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        seen.lock().unwrap()[at].extend_from_slice(&request);
                        let Step::Answer(answer) = step else { return };
                        for part in answer.chunks(piece) {
                            stream.write_all(part).await.unwrap();
                            stream.flush().await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
        });
        (target, received, closed)
    }

    /// One request: its head and a body of its `content-length`; `None` at the end of the stream.
    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => request.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&request).to_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await.ok()?;
        request.extend_from_slice(&body);
        Some(request)
    }

    fn spec(method: HttpMethod, path: &str) -> RequestSpec {
        RequestSpec {
            name: None,
            method,
            path: Some(path.to_owned()),
            headers: BTreeMap::new(),
            body: None,
            expect_status: Vec::new(),
            weight: 1,
        }
    }

    /// A client of `specs` (template 0, 1, … in that order) on `target`, over HTTP/1.1.
    fn client_of(target: &Target, specs: &[RequestSpec]) -> Client {
        let templates = super::super::request::templates(target, specs, false).unwrap();
        Client::new(target.clone(), templates, Mix::new(&[1]), false, 1)
    }

    async fn execute(conn: &mut Conn, client: &Client, request: usize) -> Outcome {
        conn.execute(client, request, Instant::now() + Duration::from_secs(5)).await
    }

    /// Whether the slot holds an open connection.
    fn open(conn: &Conn) -> bool {
        matches!(&conn.kind, Kind::H1(Some(c)) if c.reusable())
    }

    #[tokio::test]
    async fn responses_are_read_to_their_end_in_any_framing_on_one_connection() {
        let script = vec![
            Step::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Step::Answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
            Step::Answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: t\r\n\r\n",
            ),
            Step::Answer(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Step::Answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
            // HEAD: no body whatever the head says, and the connection goes on.
            Step::Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n"),
            Step::Answer(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"),
            Step::Answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the very end"),
        ];
        let want = [
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Ok,
            Outcome::Status4xx,
            Outcome::Ok,
            Outcome::Status5xx,
            Outcome::Ok,
        ];
        let requests = [0, 0, 0, 0, 0, 1, 0, 0];
        for piece in [1, 7, 4096] {
            let (target, received) = serve(vec![script.clone()], piece).await;
            let client = client_of(&target, &[spec(HttpMethod::Get, "/"), spec(HttpMethod::Head, "/")]);
            let mut conn = client.conn(0);
            for (i, (request, want)) in requests.iter().zip(want).enumerate() {
                assert_eq!(execute(&mut conn, &client, *request).await, want, "answer {i} in pieces of {piece}");
                assert_eq!(open(&conn), i + 1 < requests.len(), "answer {i}: kept alive until the close");
            }
            assert_eq!(received.lock().unwrap().len(), 1, "one connection for all");
        }
    }

    #[tokio::test]
    async fn a_large_body_is_read_through() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let mut b = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n".to_vec();
            b.extend(std::iter::repeat_n(b'x', 3_000_000));
            b
        });
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (target, received) = serve(vec![vec![Step::Answer(big), Step::Answer(ok)]], 65536).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok, "the body was consumed");
        assert_eq!(received.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn requests_go_out_as_the_templates_say() {
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let (target, received) = serve(vec![vec![Step::Answer(ok); 3]], 4096).await;
        let mut get = spec(HttpMethod::Get, "/a?b=c");
        get.headers.insert("Host".to_owned(), "virtual.test".to_owned());
        let mut post = spec(HttpMethod::Post, "/b");
        post.body = Some("{\"n\":1}".to_owned());
        post.headers.insert("content-type".to_owned(), "application/json".to_owned());
        let client = client_of(&target, &[get, post, spec(HttpMethod::Put, "/c")]);
        let mut conn = client.conn(0);
        for request in 0..3 {
            assert_eq!(execute(&mut conn, &client, request).await, Outcome::Ok);
        }
        let host = target.authority.as_str();
        let wire = String::from_utf8(received.lock().unwrap()[0].clone()).unwrap();
        assert_eq!(
            wire,
            format!(
                "GET /a?b=c HTTP/1.1\r\nhost: virtual.test\r\n\r\n\
                 POST /b HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{{\"n\":1}}\
                 PUT /c HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\r\n"
            )
        );
    }

    #[tokio::test]
    async fn broken_responses_are_connect_or_body_errors() {
        // Closed before any answer, on a new connection: Connect, and no retry.
        let (target, received) = serve(vec![vec![Step::Close]], 1).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Connect);
        assert!(!open(&conn));
        assert_eq!(received.lock().unwrap().len(), 1, "a new connection is not retried");

        // Closed mid-head, mid-body, mid-chunk; chunks longer than said; garbage: Body.
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nlonger than two\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"garbage\r\n\r\n",
        ] {
            let (target, _) = serve(vec![vec![Step::Answer(answer)]], 3).await;
            let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
            let mut conn = client.conn(0);
            assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Body, "{:?}", String::from_utf8_lossy(answer));
            assert!(!open(&conn));
        }

        // Nobody listening: Connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = Target::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        assert_eq!(execute(&mut client.conn(0), &client, 0).await, Outcome::Connect);
    }

    #[tokio::test]
    async fn a_kept_alive_connection_closed_under_a_request_is_retried_once_if_idempotent() {
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        // The first connection answers once, then takes the next request and closes.
        let scripts = || vec![vec![Step::Answer(ok), Step::Close], vec![Step::Answer(ok)]];
        let (target, received) = serve(scripts(), 4096).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/"), spec(HttpMethod::Post, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok, "GET retried on a new connection");
        assert_eq!(received.lock().unwrap().len(), 2);

        let (target, received) = serve(scripts(), 4096).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/"), spec(HttpMethod::Post, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        assert_eq!(execute(&mut conn, &client, 1).await, Outcome::Connect, "a POST may have had effects");
        assert_eq!(received.lock().unwrap().len(), 1);

        // Retried once only: the new connection closing too is the request's failure.
        let (target, received) = serve(vec![vec![Step::Answer(ok), Step::Close], vec![Step::Close]], 4096).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Connect);
        assert_eq!(received.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_replaced_for_any_method() {
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        // The first connection answers once and closes: the close comes while it is idle.
        let (target, received) = serve(vec![vec![Step::Answer(ok)], vec![Step::Answer(ok)]], 4096).await;
        let client = client_of(&target, &[spec(HttpMethod::Post, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok, "the POST was never sent on the closed one");
        let received = received.lock().unwrap();
        assert_eq!((received.len(), received[0].starts_with(b"POST")), (2, true));
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_times_out_and_closes_its_connection() {
        // The server reads the request, never answers, and waits for another.
        let (target, _, closed) = serve_counting_closes(vec![vec![Step::Answer(b""), Step::Close]], 1).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        let mut conn = client.conn(0);
        let started = Instant::now();
        let outcome = conn.execute(&client, 0, started + Duration::from_millis(100)).await;
        assert_eq!(outcome, Outcome::Timeout);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(matches!(conn.kind, Kind::H1(None)));
        // The connection's own task closes it: nothing is left open behind an abandoned request.
        while closed.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(2), "the connection stayed open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_idle_connection_is_closed() {
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (target, _, closed) = serve_counting_closes(vec![vec![Step::Answer(ok), Step::Close]], 4096).await;
        let client = client_of(&target, &[spec(HttpMethod::Get, "/")]);
        let mut conn = client.conn(0);
        assert_eq!(execute(&mut conn, &client, 0).await, Outcome::Ok);
        drop(conn);
        let dropped = Instant::now();
        while closed.load(Ordering::SeqCst) == 0 {
            assert!(dropped.elapsed() < Duration::from_secs(2), "the connection stayed open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
