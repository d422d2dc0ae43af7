//! The fault-injecting proxy (`chaoslab proxy`): forwards HTTP or TCP to an upstream and applies
//! a time-bounded fault set on the way.
//!
//! - `faults` (chaoslab-core's, the contract the operator builds to): the fault set's JSON and its
//!   validation; `plan`: the set compiled for the request
//!   path and the decision per request (the order of the faults, the dice, the jitter
//!   distributions); `state`: the current set, replaced atomically, and its expiry (the
//!   dead-man switch).
//! - `http` (L7, HTTP/1.1 and h2c) and `tcp` (L4, and the pass-through ports): the data plane,
//!   a task per client connection; `upstream`: connections to the upstream; `shaping`: the
//!   bandwidth pacer; `timer`: precise sleeps for injected latency; `body`: the one body type.
//! - `stats`, `metrics`, `admin`: what the proxy saw, and the admin port.
//!
//! docs/proxy.md is the reference (flags, admin API, fault order, stats JSON).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use hyper_util::{rt::TokioExecutor, server::conn::auto};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

mod admin;
pub mod admin_client;
mod body;
pub use chaoslab_core::faults;
mod http;
mod metrics;
pub mod plan;
pub mod shaping;
pub mod state;
pub mod stats;
mod tcp;
pub mod timer;
pub mod upstream;

pub use crate::api::fault::ProxyProtocol;
pub use faults::{FaultSet, FaultSetError};
pub use state::{FaultCell, FaultsView};
pub use stats::{Stats, StatsReport};
pub use upstream::Upstream;

/// The default time to connect upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the proxy serves.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Faulted routes: listen address and upstream, in `protocol` mode.
    pub routes: Vec<(SocketAddr, Upstream)>,
    /// Pass-through routes: plain TCP forwarding, never faulted.
    pub passes: Vec<(SocketAddr, Upstream)>,
    pub protocol: ProxyProtocol,
    pub admin_addr: SocketAddr,
    /// The initial fault set (validated again here against `protocol`).
    pub faults: Option<FaultSet>,
    /// How long in-flight requests may still end after a shutdown signal.
    pub drain_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("nothing to serve: give at least one route or pass-through port")]
    NoRoute,
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("the initial fault set: {0}")]
    Faults(#[from] FaultSetError),
    #[error("the admin server failed: {0}")]
    Admin(io::Error),
}

/// What every connection shares.
pub(crate) struct Shared {
    faults: Arc<FaultCell>,
    stats: Arc<Stats>,
    connect_timeout: Duration,
    /// Connections accepted so far (their numbers seed the dice).
    connections: AtomicU64,
    server: auto::Builder<TokioExecutor>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("connections", &self.connections).finish_non_exhaustive()
    }
}

impl Shared {
    fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed)
    }
}

/// The addresses the proxy listens on (the ports are known once bound, even when 0 was asked).
#[derive(Clone, Debug)]
pub struct Addrs {
    pub routes: Vec<SocketAddr>,
    pub passes: Vec<SocketAddr>,
    pub admin: SocketAddr,
}

enum Listener {
    Http(TcpListener, Arc<http::Route>),
    Tcp(TcpListener, Arc<tcp::TcpRoute>),
}

/// A proxy whose ports are bound, ready to [`Proxy::run`].
pub struct Proxy {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    admin: TcpListener,
    ready: Arc<AtomicBool>,
    drain_timeout: Duration,
    addrs: Addrs,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    let err = |source| ProxyError::Bind { addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(4096).map_err(err)
}

impl Proxy {
    /// Validates the initial set and binds every port (routes, pass-through, admin).
    pub async fn bind(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        if config.routes.is_empty() && config.passes.is_empty() {
            return Err(ProxyError::NoRoute);
        }
        let faults = Arc::new(FaultCell::new(config.protocol));
        if let Some(set) = config.faults {
            set.validate(config.protocol, k8s_openapi::jiff::Timestamp::now())?;
            faults.install(Some(set));
        }
        let shared = Arc::new(Shared {
            faults,
            stats: Arc::new(Stats::new()),
            connect_timeout: config.connect_timeout,
            connections: AtomicU64::new(0),
            server: http::server_builder(),
        });
        let mut listeners = Vec::new();
        let mut addrs = Addrs { routes: Vec::new(), passes: Vec::new(), admin: config.admin_addr };
        for (listen, upstream) in config.routes {
            let listener = bind(listen).await?;
            addrs.routes.push(listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?);
            listeners.push(match config.protocol {
                ProxyProtocol::Http => {
                    Listener::Http(listener, Arc::new(http::Route { upstream, pool: upstream::H1Pool::default() }))
                }
                ProxyProtocol::Tcp => Listener::Tcp(listener, Arc::new(tcp::TcpRoute { upstream, faulted: true })),
            });
        }
        for (listen, upstream) in config.passes {
            let listener = bind(listen).await?;
            addrs.passes.push(listener.local_addr().map_err(|source| ProxyError::Bind { addr: listen, source })?);
            listeners.push(Listener::Tcp(listener, Arc::new(tcp::TcpRoute { upstream, faulted: false })));
        }
        let admin = bind(config.admin_addr).await?;
        addrs.admin = admin.local_addr().map_err(|source| ProxyError::Bind { addr: config.admin_addr, source })?;
        Ok(Proxy {
            shared,
            listeners,
            admin,
            ready: Arc::new(AtomicBool::new(false)),
            drain_timeout: config.drain_timeout,
            addrs,
        })
    }

    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// The fault set cell (what the admin API changes).
    pub fn faults(&self) -> Arc<FaultCell> {
        Arc::clone(&self.shared.faults)
    }

    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// Serves until `shutdown` resolves, then drains: stops accepting, answers 503 on
    /// `/readyz`, releases what faults hold back, lets requests in flight end for up to the
    /// drain timeout, and returns (connections still open are then dropped with the runtime).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ProxyError> {
        let Proxy { shared, listeners, admin, ready, drain_timeout, addrs } = self;
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut background = tokio::task::JoinSet::new();
        background.spawn(Arc::clone(&shared.faults).watch_expiry());
        let stats = Arc::clone(&shared.stats);
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                stats.tick();
            }
        });
        let admin_stop = CancellationToken::new();
        let router = admin::router(Arc::clone(&shared.faults), Arc::clone(&shared.stats), Arc::clone(&ready));
        let admin_stopped = admin_stop.clone();
        let mut admin_task = tokio::spawn(async move {
            axum::serve(admin, router).with_graceful_shutdown(admin_stopped.cancelled_owned()).await
        });
        let mut accepting = tokio::task::JoinSet::new();
        for listener in listeners {
            match listener {
                Listener::Http(listener, route) => {
                    accepting.spawn(http::serve(listener, route, Arc::clone(&shared), stop.clone(), tracker.clone()))
                }
                Listener::Tcp(listener, route) => {
                    accepting.spawn(tcp::serve(listener, route, Arc::clone(&shared), stop.clone(), tracker.clone()))
                }
            };
        }
        ready.store(true, Ordering::SeqCst);
        tracing::info!(routes = ?addrs.routes, passes = ?addrs.passes, admin = %addrs.admin, "proxy ready");

        let admin_failed = tokio::select! {
            () = shutdown => None,
            result = &mut admin_task => Some(result),
        };
        if let Some(result) = admin_failed {
            let error = match result {
                Ok(Ok(())) => io::Error::other("the admin server stopped"),
                Ok(Err(error)) => error,
                Err(join) => io::Error::other(join),
            };
            return Err(ProxyError::Admin(error));
        }

        tracing::info!(timeout = ?drain_timeout, "draining: no new connections, finishing the requests in flight");
        ready.store(false, Ordering::SeqCst);
        shared.faults.start_draining();
        stop.cancel();
        while accepting.join_next().await.is_some() {}
        tracker.close();
        if tokio::time::timeout(drain_timeout, tracker.wait()).await.is_err() {
            tracing::warn!(open = tracker.len(), "drain timeout: closing the connections still open");
        } else {
            tracing::info!("drained");
        }
        admin_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), admin_task).await;
        background.abort_all();
        Ok(())
    }
}
