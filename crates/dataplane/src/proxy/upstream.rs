//! Connections to an upstream: the address (a host name is resolved again for every new
//! connection, so a Service's endpoints or a DNS change are followed), TCP with a connect
//! timeout, and hyper's HTTP/1.1 and HTTP/2 client connections.
//!
//! HTTP/1.1: each client connection owns one upstream keep-alive connection while it lives
//! (HTTP/1.1 carries one request at a time, so no lock is shared by requests), taken from the
//! route's idle pool or opened on its first request, and given back to the pool when the client
//! connection ends. The pool holds at most [`POOL_MAX`] idle connections per route and never
//! reuses one idle for more than [`POOL_IDLE`].
//!
//! HTTP/2 (for clients that came in on h2): each client connection has one upstream h2
//! connection, opened on its first request and reopened once it has failed; its streams carry
//! the client's streams.

use std::{fmt, io, net::SocketAddr, str::FromStr, sync::Mutex, time::Duration};

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{net::TcpStream, time::Instant};

use super::body::ProxyBody;

/// The most idle HTTP/1.1 connections kept per route.
pub const POOL_MAX: usize = 256;
/// An idle connection older than this is closed rather than reused (servers close idle
/// connections too, and reusing one just as it closes fails the request).
pub const POOL_IDLE: Duration = Duration::from_secs(30);

/// Where a route forwards to: `host:port`, the host a name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port` as given (IPv6 in brackets).
    authority: String,
    /// Set when the host is an IP address: nothing to resolve.
    addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not an upstream: {reason} (use HOST:PORT, such as web.ns.svc:80 or 10.0.0.7:8080)")]
pub struct UpstreamParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for Upstream {
    type Err = UpstreamParseError;

    fn from_str(s: &str) -> Result<Upstream, UpstreamParseError> {
        let err = |reason| UpstreamParseError { input: s.to_owned(), reason };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Upstream { authority: s.to_owned(), addr: Some(addr) });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("no port"))?;
        port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| err("the port is not a number from 1 to 65535"))?;
        if host.is_empty() {
            return Err(err("no host"));
        }
        if host.contains(['/', ' ', '[', ']', ':', '@']) {
            return Err(err("the host is not a name or an IP address"));
        }
        Ok(Upstream { authority: s.to_owned(), addr: None })
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

/// Why an upstream connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {upstream} timed out after {timeout:?}")]
    Timeout { upstream: String, timeout: Duration },
    #[error("cannot connect to {upstream}: {source}")]
    Io { upstream: String, source: io::Error },
    #[error("HTTP handshake with {upstream} failed: {source}")]
    Handshake { upstream: String, source: hyper::Error },
}

impl ConnectError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnectError::Timeout { .. })
    }
}

impl Upstream {
    /// A new TCP connection (resolving the name again), with `TCP_NODELAY`.
    pub async fn connect(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let connect = async {
            match self.addr {
                Some(addr) => TcpStream::connect(addr).await,
                None => TcpStream::connect(self.authority.as_str()).await,
            }
        };
        let stream = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ConnectError::Timeout { upstream: self.authority.clone(), timeout })?
            .map_err(|source| ConnectError::Io { upstream: self.authority.clone(), source })?;
        // Small requests and answers must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// One upstream HTTP/1.1 connection: its sending side (its I/O runs in a task of its own).
#[derive(Debug)]
pub struct H1Conn {
    pub sender: http1::SendRequest<ProxyBody>,
    /// When it last carried a request (or was opened).
    pub last_used: Instant,
    /// Requests it carried.
    pub used: u64,
}

impl H1Conn {
    pub async fn open(upstream: &Upstream, timeout: Duration) -> Result<H1Conn, ConnectError> {
        let stream = upstream.connect(timeout).await?;
        let mut builder = http1::Builder::new();
        builder.writev(true).title_case_headers(false);
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { upstream: upstream.to_string(), source })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(H1Conn { sender, last_used: Instant::now(), used: 0 })
    }

    /// Whether it may carry another request now or once its current response is read.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// A route's idle upstream HTTP/1.1 connections. Locked when a client connection takes its
/// first one and when it ends, never per request.
#[derive(Debug, Default)]
pub struct H1Pool {
    idle: Mutex<Vec<H1Conn>>,
}

impl H1Pool {
    /// The most recently used idle connection that is still open and fresh enough.
    pub fn take(&self) -> Option<H1Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(conn) = idle.pop() {
            if conn.is_open() && conn.last_used.elapsed() < POOL_IDLE {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for another client connection, if it is open and the pool has room. (It may
    /// still be finishing a response: its next user waits for it to be ready, or opens another
    /// if it closes instead.)
    pub fn give_back(&self, conn: H1Conn) {
        if !conn.is_open() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            // The oldest go first: they are the likeliest to be closed by the server.
            idle.retain(|c| c.is_open() && c.last_used.elapsed() < POOL_IDLE);
            if idle.len() < POOL_MAX {
                idle.push(conn);
            }
        }
    }

    /// Idle connections now.
    pub fn len(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Opens an upstream HTTP/2 connection (prior knowledge).
pub async fn open_h2(upstream: &Upstream, timeout: Duration) -> Result<http2::SendRequest<ProxyBody>, ConnectError> {
    let stream = upstream.connect(timeout).await?;
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { upstream: upstream.to_string(), source })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::trace!(%error, "upstream HTTP/2 connection ended");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_as_host_and_port() {
        assert_eq!("10.0.0.7:8080".parse::<Upstream>().unwrap().addr, Some("10.0.0.7:8080".parse().unwrap()));
        assert_eq!("[::1]:80".parse::<Upstream>().unwrap().addr, Some("[::1]:80".parse().unwrap()));
        let named: Upstream = "web-chaoslab-shadow.ns.svc:80".parse().unwrap();
        assert_eq!((named.addr, named.to_string().as_str()), (None, "web-chaoslab-shadow.ns.svc:80"));
        for bad in ["web", "web:", ":80", "web:0", "web:http", "web:70000", "http://web:80", "::1:80"] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_is_resolved_and_a_refused_connect_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let named: Upstream = format!("localhost:{port}").parse().unwrap();
        named.connect(Duration::from_secs(2)).await.unwrap();
        drop(listener);
        let error = named.connect(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(error, ConnectError::Io { .. }), "{error}");
    }
}
