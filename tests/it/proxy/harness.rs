//! What the proxy tests run against, all on 127.0.0.1: the `chaoslab proxy` binary as a child
//! process (its ports read from its "proxy ready" log line), an upstream hyper server (HTTP/1.1
//! and h2c) and a TCP echo server, HTTP/1.1 and HTTP/2 clients, and the admin API.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

// --- the proxy process --------------------------------------------------------------------------

/// `chaoslab proxy` running as a child process; killed (by its PID) when dropped.
pub struct ProxyProcess {
    child: Child,
    pub routes: Vec<SocketAddr>,
    pub passes: Vec<SocketAddr>,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

fn addrs(field: &Value) -> Vec<SocketAddr> {
    let text = field.as_str().unwrap_or_default().trim_matches(['[', ']']);
    text.split(", ").filter(|s| !s.is_empty()).map(|s| s.parse().expect("an address")).collect()
}

impl ProxyProcess {
    /// Starts the proxy with `args` (the admin port on 127.0.0.1:0) and waits for it to be
    /// ready; panics with its logs if it is not within 10 s.
    pub fn start(args: &[&str]) -> ProxyProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chaoslab"))
            .args(["proxy", "--log-format", "json", "--log-level", "chaoslab=debug", "--admin-addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the chaoslab binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Value>();
        let stdout = child.stdout.take().expect("stdout");
        let kept = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value["message"] == "proxy ready"
                {
                    let _ = ready_tx.send(value);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let kept = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let ready = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(ready) => ready,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("the proxy did not get ready ({status:?}); its output:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        ProxyProcess {
            child,
            routes: addrs(&ready["routes"]),
            passes: addrs(&ready["passes"]),
            admin: ready["admin"].as_str().expect("admin address").parse().expect("admin address"),
            logs,
        }
    }

    pub fn route(&self) -> SocketAddr {
        self.routes[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM to the proxy (by its PID).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the proxy did not exit within {within:?}; logs:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // --- admin API ---

    pub async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        call(self.admin, method, path, body).await
    }

    /// PUTs a fault set and asserts it was accepted.
    pub async fn put_faults(&self, json: &str) -> Value {
        let (status, body) = self.admin("PUT", "/faults", Some(json)).await;
        assert_eq!(status, 200, "PUT /faults {json}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.admin("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fault set of `faults` (JSON list items) expiring in `secs`, with a fixed seed.
pub fn fault_set(faults: &str, secs: f64) -> String {
    let at = expires_in(secs);
    format!(r#"{{"faults":[{faults}],"expiresAt":"{at}","seed":1}}"#)
}

/// The RFC 3339 moment `secs` from now (millisecond precision).
pub fn expires_in(secs: f64) -> String {
    let at = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs_f64(secs);
    at.round(k8s_openapi::jiff::Unit::Millisecond).expect("rounds").to_string()
}

/// One HTTP/1.1 request on a new connection (`Connection: close`): status and body.
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// --- clients ------------------------------------------------------------------------------------

/// What a client got.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub elapsed: Duration,
}

/// One HTTP/1.1 keep-alive connection.
pub struct H1Client {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl H1Client {
    pub async fn connect(addr: SocketAddr) -> H1Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        H1Client { sender }
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, hyper::Error> {
        let started = Instant::now();
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body, elapsed: started.elapsed() })
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(get(path)).await.expect("an answer")
    }
}

pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::builder().uri(path).header("host", "upstream.test").body(Full::new(Bytes::new())).expect("request")
}

/// `per_connection` GETs of `path` on each of `connections` keep-alive connections at once:
/// every answer's latency in milliseconds, sorted.
pub async fn latencies(addr: SocketAddr, path: &str, connections: usize, per_connection: usize) -> Vec<f64> {
    paced_latencies(addr, path, connections, per_connection, Duration::ZERO).await
}

/// As [`latencies`], each connection pausing `pause` between an answer and its next request (so
/// that requests find the proxy and the upstream idle, as delayed requests do).
pub async fn paced_latencies(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    per_connection: usize,
    pause: Duration,
) -> Vec<f64> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let path = path.to_owned();
        tasks.spawn(async move {
            let mut client = H1Client::connect(addr).await;
            let mut out = Vec::with_capacity(per_connection);
            for _ in 0..per_connection {
                let answer = client.get(&path).await;
                assert_eq!(answer.status, 200, "{:?}", answer.body);
                out.push(answer.elapsed.as_secs_f64() * 1000.0);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
            out
        });
    }
    let mut all: Vec<f64> = tasks.join_all().await.into_iter().flatten().collect();
    all.sort_by(f64::total_cmp);
    all
}

pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// One HTTP/2 (prior knowledge) connection; clones share it.
#[derive(Clone)]
pub struct H2Client {
    sender: http2::SendRequest<Full<Bytes>>,
}

impl H2Client {
    pub async fn connect(addr: SocketAddr) -> H2Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
        tokio::spawn(conn);
        H2Client { sender }
    }

    pub async fn get(&mut self, addr: SocketAddr, path: &str) -> Result<Answer, hyper::Error> {
        let started = Instant::now();
        let request = Request::builder()
            .uri(format!("http://{addr}{path}"))
            .version(Version::HTTP_2)
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, body, elapsed: started.elapsed() })
    }
}

// --- the upstream -------------------------------------------------------------------------------

/// What the upstream saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    /// Requests per HTTP version.
    pub versions: Mutex<BTreeMap<String, u64>>,
    /// The last request's head, as `METHOD path?query` and its headers.
    pub last: Mutex<Option<(String, BTreeMap<String, String>)>>,
}

impl Seen {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// An HTTP/1.1 and h2c server on 127.0.0.1:0:
/// - `/bytes/N`: N bytes;
/// - `/echo`: the request body back, streamed;
/// - `/slow/MS`: 200 after MS milliseconds;
/// - anything else: 200 `ok`.
pub async fn upstream() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let server_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            server_seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&server_seen);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| answer(Arc::clone(&seen), request));
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

type AnyBody = BoxBody<Bytes, hyper::Error>;

fn full(body: impl Into<Bytes>) -> AnyBody {
    Full::new(body.into()).map_err(|never: Infallible| match never {}).boxed()
}

async fn answer(seen: Arc<Seen>, request: Request<Incoming>) -> Result<Response<AnyBody>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let version = format!("{:?}", request.version());
    *seen.versions.lock().unwrap().entry(version).or_default() += 1;
    let target = request.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let headers =
        request.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned())).collect();
    *seen.last.lock().unwrap() = Some((format!("{} {target}", request.method()), headers));
    let path = request.uri().path().to_owned();
    let response = if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        Response::new(full(vec![b'x'; n]))
    } else if path == "/echo" {
        Response::new(request.into_body().boxed())
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        Response::new(full("slow ok"))
    } else {
        Response::new(full("ok"))
    };
    let mut response = response;
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// A TCP echo server on 127.0.0.1:0; counts its connections.
pub async fn echo() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    (addr, connections)
}

/// Reads from `stream` until it ends, errs or `within` passes.
pub async fn read_all(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ReadEnd> {
    let mut out = Vec::new();
    let mut buffer = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return Err(ReadEnd::Timeout(out)),
            Ok(Err(error)) => return Err(ReadEnd::Error(error.kind(), out)),
            Ok(Ok(0)) => return Ok(out),
            Ok(Ok(n)) => out.extend_from_slice(&buffer[..n]),
        }
    }
}

#[derive(Debug)]
pub enum ReadEnd {
    Timeout(Vec<u8>),
    Error(std::io::ErrorKind, Vec<u8>),
}
