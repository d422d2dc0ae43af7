//! Local servers the load engine tests run against, on 127.0.0.1:0: a hyper server (HTTP/1.1
//! and h2c) with a chosen behaviour that counts what it sees, and a raw TCP server that
//! breaks connections.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::Instant,
};

/// How the server answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// 200 at once.
    Fast,
    /// 200 after a delay.
    Delay(Duration),
    /// Every n-th request (the n-th, 2n-th, … to arrive) gets a 503, the others a 200.
    FailEvery(u64),
    /// Requests that arrive in `[from, until)` are answered at `until`, the others at once.
    Stall { from: Instant, until: Instant },
}

/// What the server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: AtomicU64,
    pub connections: AtomicU64,
    in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Requests per path.
    pub paths: Mutex<BTreeMap<String, u64>>,
    /// Requests per HTTP version.
    pub versions: Mutex<BTreeMap<String, u64>>,
    /// Body bytes and `x-test` header values per path.
    pub bodies: Mutex<BTreeMap<String, (u64, String)>>,
    /// When each request arrived.
    pub arrivals: Mutex<Vec<Instant>>,
}

impl Seen {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn arrivals_between(&self, from: Instant, until: Instant) -> usize {
        self.arrivals.lock().unwrap().iter().filter(|t| **t >= from && **t < until).count()
    }
}

/// Counts a request in flight until dropped, even when the client goes away mid-request.
struct InFlight(Arc<Seen>);

impl InFlight {
    fn new(seen: &Arc<Seen>) -> InFlight {
        let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        seen.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(seen))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a hyper server (HTTP/1.1 and h2c with prior knowledge) on a free loopback port.
pub async fn start(behaviour: Behaviour) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let server_seen = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            server_seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&server_seen);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| answer(Arc::clone(&seen), behaviour, request));
                // Errors are the clients' doing (timeouts drop connections): not the test's.
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (addr, seen)
}

async fn answer(
    seen: Arc<Seen>,
    behaviour: Behaviour,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let _in_flight = InFlight::new(&seen);
    let n = seen.requests.fetch_add(1, Ordering::SeqCst) + 1;
    seen.arrivals.lock().unwrap().push(arrived);
    let path = request.uri().path().to_owned();
    *seen.paths.lock().unwrap().entry(path.clone()).or_default() += 1;
    let version = match request.version() {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_11 => "HTTP/1.1",
        _ => "other",
    };
    *seen.versions.lock().unwrap().entry(version.to_owned()).or_default() += 1;
    let header = request.headers().get("x-test").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let body = request.into_body().collect().await.map(|b| b.to_bytes().len() as u64).unwrap_or(0);
    {
        let mut bodies = seen.bodies.lock().unwrap();
        let entry = bodies.entry(path).or_default();
        entry.0 += body;
        entry.1 = header;
    }

    let mut status = StatusCode::OK;
    match behaviour {
        Behaviour::Fast => {}
        Behaviour::Delay(delay) => tokio::time::sleep(delay).await,
        Behaviour::FailEvery(every) => {
            if n.is_multiple_of(every) {
                status = StatusCode::SERVICE_UNAVAILABLE;
            }
        }
        Behaviour::Stall { from, until } => {
            if arrived >= from && arrived < until {
                tokio::time::sleep_until(until).await;
            }
        }
    }
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello from the test server\n")));
    *response.status_mut() = status;
    Ok(response)
}

/// A server that reads each request and then breaks its connection: connections 1, 3, 5, …
/// get half a response (headers promising 100 bytes, then 4 and a close), connections 2, 4,
/// 6, … are closed without a byte. Returns its address and how many connections it took.
pub async fn breaking() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                    }
                }
                if n % 2 == 1 {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf").await;
                    let _ = stream.flush().await;
                }
                // Dropping the stream closes the connection.
            });
        }
    });
    (addr, accepted)
}
