//! A loopback HTTP/1.1 server for the coordinated-omission benchmark (`bench/load.sh co`): it
//! answers `200 ok` at once, except during the last `--stall-ms` of every `--period-ms` (by
//! default 1 s of every 10 s, counted from its start), when it stops answering: every request
//! that arrives or is being handled during a stall waits until the stall ends, then gets its
//! answer. New connections are still accepted during a stall (they wait like the rest).
//!
//!   cargo run --release --example stall-server -- --port 18182 [--period-ms 10000] [--stall-ms 1000]
//!
//! One thread (a current-thread tokio runtime), so `taskset` can pin it to one core; it answers
//! tens of thousands of requests per second outside the stalls. It prints `listening on ADDR` on
//! stdout once it accepts.

use std::{
    convert::Infallible,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

struct Config {
    port: u16,
    period: Duration,
    stall: Duration,
}

fn parse_args() -> Result<Config, String> {
    let mut config = Config { port: 18182, period: Duration::from_secs(10), stall: Duration::from_secs(1) };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => config.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--period-ms" => {
                config.period = Duration::from_millis(value()?.parse().map_err(|e| format!("--period-ms: {e}"))?)
            }
            "--stall-ms" => {
                config.stall = Duration::from_millis(value()?.parse().map_err(|e| format!("--stall-ms: {e}"))?)
            }
            other => return Err(format!("unknown flag {other}; flags: --port N --period-ms N --stall-ms N")),
        }
    }
    if config.stall >= config.period || config.period.is_zero() {
        return Err("--stall-ms must be shorter than --period-ms".into());
    }
    Ok(config)
}

/// How long a request at `elapsed` since the start must wait: until the end of the stall it
/// falls in, or not at all. Stalls are the last `stall` of each `period`.
fn wait_for(elapsed: Duration, period: Duration, stall: Duration) -> Duration {
    let period_ns = period.as_nanos();
    let into = Duration::from_nanos((elapsed.as_nanos() % period_ns) as u64);
    let stall_start = period - stall;
    if into >= stall_start { period - into } else { Duration::ZERO }
}

fn main() {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stall-server: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve(config)) {
        eprintln!("stall-server: {e}");
        std::process::exit(1);
    }
}

async fn serve(config: Config) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
    let listener = TcpListener::bind(addr).await?;
    let start = Instant::now();
    let (period, stall) = (config.period, config.stall);
    println!("listening on {addr}; stalls {} ms of every {} ms", stall.as_millis(), period.as_millis());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |_: Request<hyper::body::Incoming>| async move {
                let wait = wait_for(start.elapsed(), period, stall);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_in_the_last_part_of_each_period() {
        let (p, s) = (Duration::from_secs(10), Duration::from_secs(1));
        assert_eq!(wait_for(Duration::from_millis(0), p, s), Duration::ZERO);
        assert_eq!(wait_for(Duration::from_millis(8_999), p, s), Duration::ZERO);
        assert_eq!(wait_for(Duration::from_millis(9_000), p, s), Duration::from_secs(1));
        assert_eq!(wait_for(Duration::from_millis(9_750), p, s), Duration::from_millis(250));
        assert_eq!(wait_for(Duration::from_millis(19_500), p, s), Duration::from_millis(500));
        assert_eq!(wait_for(Duration::from_millis(20_000), p, s), Duration::ZERO);
    }
}
