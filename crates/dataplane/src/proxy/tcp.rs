//! TCP mode (L4) and the pass-through ports: bytes forwarded both ways, faults decided once per
//! connection as it is accepted.
//!
//! - `reset`: the connection is closed with an RST (`SO_LINGER` 0) as soon as it is accepted;
//!   upstream is never connected.
//! - `blackhole`: upstream is never connected; what the client sends is read and discarded, and
//!   nothing is ever sent back. The connection ends when the client closes it, or is closed
//!   (FIN) when released: the set is replaced, removed or expires, or the proxy drains.
//! - `latency`, `request`: the connection waits that long before upstream is connected, so the
//!   first bytes either way are late by it (later bytes are not delayed again); `response`: the
//!   first bytes from upstream are held that long from their arrival. Once per connection, not
//!   per chunk. Both are cut short by a release.
//! - `bandwidth`: each direction paced at the rate.
//!
//! A half-close is passed on (the end of one direction shuts the other side's write half down)
//! and the connection ends when both directions have; an error either way ends both.
//! Pass-through ports (`--pass`) never read the fault set and are not in the stats' request
//! counts.

use std::{future::Future, io, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Shared,
    plan::{Decision, FaultAction},
    shaping::Pacer,
    state::{Installed, released},
    stats::unix_second,
    timer,
    upstream::Upstream,
};

/// A TCP route: faulted (`--route` in tcp mode) or pass-through (`--pass`).
#[derive(Debug)]
pub struct TcpRoute {
    pub upstream: Upstream,
    pub faulted: bool,
}

/// Accepts connections on `listener` until `stop`, each forwarded in a task of `tracker`.
pub async fn serve(
    listener: TcpListener,
    route: Arc<TcpRoute>,
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
                if route.faulted {
                    shared.stats.connection();
                } else {
                    shared.stats.pass_connection();
                }
                let number = shared.next_connection();
                tracker.spawn(connection(stream, number, Arc::clone(&route), Arc::clone(&shared)));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn connection(client: TcpStream, number: u64, route: Arc<TcpRoute>, shared: Arc<Shared>) {
    let arrived = Instant::now();
    let second = unix_second();
    // Pass-through ports never read the fault set.
    let installed = route.faulted.then(|| shared.faults.current());
    let decision = match &installed {
        Some(installed) => {
            let decision = match installed.active_plan(arrived) {
                Some(plan) if !shared.faults.is_draining() => plan.decide(number, 0, None),
                _ => Decision::default(),
            };
            shared.stats.request(second, &decision.applied);
            decision
        }
        None => Decision::default(),
    };
    let installed = installed.unwrap_or_default();
    match decision.action {
        FaultAction::Reset => {
            if let Err(error) = client.set_zero_linger() {
                tracing::debug!(%error, "cannot set SO_LINGER 0 for a reset");
            }
            return;
        }
        FaultAction::Blackhole => {
            blackhole(client, &shared, &installed).await;
            return;
        }
        // Refused by validation in tcp mode; a connection cannot carry a status.
        FaultAction::Abort { .. } | FaultAction::Pass => {}
    }
    if !decision.request_delay.is_zero() {
        hold(&shared, &installed, arrived + decision.request_delay).await;
    }
    if route.faulted {
        shared.stats.upstream_request(second);
    }
    let started = Instant::now();
    let upstream = match route.upstream.connect(shared.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(error) => {
            if route.faulted {
                shared.stats.upstream_error(second);
            }
            tracing::debug!(%error, "upstream connection failed; closing the client's");
            return;
        }
    };
    if route.faulted {
        shared.stats.upstream_answer(0, started.elapsed(), number);
    }
    let result = if decision.bandwidth.is_none() && decision.response_delay.is_zero() {
        let (mut client, mut upstream) = (client, upstream);
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 64 * 1024, 64 * 1024).await.map(|_| ())
    } else {
        let (client_read, client_write) = client.into_split();
        let (upstream_read, upstream_write) = upstream.into_split();
        let delay = decision.response_delay;
        let (shared_ref, installed_ref) = (&shared, &installed);
        let first = (!delay.is_zero()).then_some(move || hold(shared_ref, installed_ref, Instant::now() + delay));
        tokio::try_join!(
            copy(client_read, upstream_write, decision.bandwidth, None::<fn() -> std::future::Ready<()>>),
            copy(upstream_read, client_write, decision.bandwidth, first),
        )
        .map(|_| ())
    };
    if let Err(error) = result {
        tracing::trace!(%error, connection = number, "tcp connection ended");
    }
}

/// Reads and discards what the client sends until it closes, or the set is released.
async fn blackhole(mut client: TcpStream, shared: &Shared, installed: &Installed) {
    let mut changes = shared.faults.subscribe();
    if shared.faults.is_draining() || shared.faults.current().generation != installed.generation {
        return;
    }
    let mut buffer = vec![0u8; 16 * 1024];
    let swallow = async {
        while let Ok(n) = client.read(&mut buffer).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = swallow => {}
        () = released(&mut changes, installed.deadline) => {
            tracing::debug!("blackholed connection released: closing it");
        }
    }
}

/// Waits until `until`, or less if the set is released meanwhile.
async fn hold(shared: &Shared, installed: &Installed, until: Instant) {
    let mut changes = shared.faults.subscribe();
    if shared.faults.is_draining() || shared.faults.current().generation != installed.generation {
        return;
    }
    tokio::select! {
        () = timer::sleep_until(until) => {}
        () = released(&mut changes, installed.deadline) => {}
    }
}

/// Copies `from` to `to` until the end of `from`, paced at `rate` when given and awaiting
/// `before_first` (made when the first bytes arrived) before writing them; then shuts `to`'s
/// write half down. Returns the bytes copied.
pub async fn copy<R, W, H, F>(mut from: R, mut to: W, rate: Option<u64>, before_first: Option<H>) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let mut pacer = rate.map(|r| Pacer::new(r, Instant::now()));
    let size = pacer.as_ref().map_or(64 * 1024, Pacer::slice);
    let mut buffer = vec![0u8; size];
    let mut before_first = before_first;
    let mut copied = 0u64;
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        if let Some(hold) = before_first.take() {
            hold().await;
            if let Some(p) = pacer.as_mut() {
                *p = Pacer::new(rate.unwrap_or(1), Instant::now());
            }
        }
        if let Some(p) = pacer.as_mut() {
            tokio::time::sleep_until(p.ready_at()).await;
            p.sent(n, Instant::now());
        }
        to.write_all(&buffer[..n]).await?;
        copied += n as u64;
    }
    to.shutdown().await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paced_copy_takes_its_size_over_the_rate_after_the_first_hold() {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let (c, mut d) = tokio::io::duplex(1 << 20);
        let started = Instant::now();
        let writer = tokio::spawn(async move {
            a.write_all(&vec![1u8; 100 * 1024]).await.unwrap();
            a.shutdown().await.unwrap();
        });
        let hold = || tokio::time::sleep(Duration::from_millis(500));
        let copier = tokio::spawn(copy(b, c, Some(50 * 1024), Some(hold)));
        let mut out = Vec::new();
        d.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert_eq!(copier.await.unwrap().unwrap(), 100 * 1024);
        assert_eq!(out.len(), 100 * 1024);
        let took = started.elapsed().as_secs_f64();
        // 0.5 s first, then (100 KiB − one 1 KiB slice) at 50 KiB/s = 1.98 s
        assert!((took - 2.48).abs() < 0.03, "{took}");
    }
}
