//! `chaoslab proxy`: flags turned into the proxy's configuration.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    api::{GoDuration, fault::ProxyProtocol},
    proxy::{DEFAULT_CONNECT_TIMEOUT, FaultSet, Proxy, ProxyConfig, Upstream},
};

const EXAMPLES: &str = "\
Examples:
  # HTTP faults on port 8080 in front of a Service; its port 5432 passed through untouched
  chaoslab proxy --route 0.0.0.0:8080=web-chaoslab-shadow.shop.svc:80 \\
      --pass 0.0.0.0:5432=web-chaoslab-shadow.shop.svc:5432

  # Start with a fault set for 10 minutes: 30% of /api requests answer 503, the others 50ms
  # late; at expiresAt the proxy is a plain pass-through on its own
  chaoslab proxy --route 8080=localhost:9000 --faults '{\"expiresAt\": \"'$(date -u -d +10min +%FT%TZ)'\",
      \"faults\": [{\"type\": \"abort\", \"percent\": 30, \"abort\": {\"status\": 503},
                  \"match\": {\"pathPrefix\": \"/api\"}},
                 {\"type\": \"latency\", \"latency\": {\"delay\": \"50ms\"}}]}'

  # TCP faults for 5 minutes: reset 10% of the connections, the others limited to 64 KiB/s
  # each way
  chaoslab proxy --protocol tcp --route 6379=redis.cache.svc:6379 --faults '{\"expiresAt\":
      \"'$(date -u -d +5min +%FT%TZ)'\", \"faults\": [{\"type\": \"reset\", \"percent\": 10},
      {\"type\": \"bandwidth\", \"bandwidth\": {\"bytesPerSecond\": 65536}}]}'

  # Change the faults at runtime, read what the proxy saw, stop injecting now
  curl -X PUT --data @faults.json localhost:9901/faults
  curl localhost:9901/stats
  curl -X DELETE localhost:9901/faults

A fault set is {\"faults\": [...], \"expiresAt\": \"<RFC 3339, at most 25h ahead>\", \"seed\": <integer,
optional>}, the faults as in a ServiceFault's spec (type latency, abort, reset, blackhole or
bandwidth; percent; match; latency, abort or bandwidth parameters). At expiresAt the proxy stops
injecting on its own. Admin port: GET/PUT/DELETE /faults, GET /stats, /metrics, /healthz,
/readyz. On SIGTERM the proxy stops accepting, answers 503 on /readyz, lets requests in flight
end for up to --drain-timeout and exits 0. Exit status 1 when a port cannot be bound or the admin
server fails, 2 for a bad flag. Reference: docs/proxy.md.";

/// Flags of `chaoslab proxy`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct ProxyArgs {
    /// A faulted route: listen on LISTEN (ADDRESS:PORT, or a PORT on every address) and forward
    /// to UPSTREAM (HOST:PORT, the host resolved again for every new upstream connection).
    /// Repeatable; in the environment, comma-separated.
    #[arg(long = "route", value_name = "LISTEN=UPSTREAM", env = "CHAOSLAB_PROXY_ROUTES", value_delimiter = ',',
          value_parser = parse_route)]
    pub routes: Vec<Route>,

    /// A pass-through route: plain TCP forwarding, never faulted (for the Service's other
    /// ports). Repeatable; in the environment, comma-separated.
    #[arg(long = "pass", value_name = "LISTEN=UPSTREAM", env = "CHAOSLAB_PROXY_PASS", value_delimiter = ',',
          value_parser = parse_route)]
    pub passes: Vec<Route>,

    /// How the --route ports are read: `http` (HTTP/1.1 and h2c; faults per request, match and
    /// abort allowed) or `tcp` (faults per connection).
    #[arg(long, env = "CHAOSLAB_PROXY_PROTOCOL", value_enum, default_value_t = Protocol::Http)]
    pub protocol: Protocol,

    /// The admin port: /faults, /stats, /metrics, /healthz, /readyz.
    #[arg(long, env = "CHAOSLAB_PROXY_ADMIN_ADDR", default_value = "0.0.0.0:9901")]
    pub admin_addr: SocketAddr,

    /// The initial fault set (JSON, see below); none means pass-through until a PUT /faults.
    #[arg(long, value_name = "JSON", env = "CHAOSLAB_FAULTS", hide_env_values = true)]
    pub faults: Option<String>,

    /// After SIGTERM, how long requests in flight may still end before the proxy exits.
    #[arg(long, env = "CHAOSLAB_PROXY_DRAIN_TIMEOUT", default_value = "10s")]
    pub drain_timeout: GoDuration,

    /// How long connecting upstream may take (502 after a failure, 504 after this timeout).
    #[arg(long, env = "CHAOSLAB_PROXY_CONNECT_TIMEOUT", default_value_t = GoDuration(DEFAULT_CONNECT_TIMEOUT))]
    pub connect_timeout: GoDuration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Http,
    Tcp,
}

/// One `LISTEN=UPSTREAM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: Upstream,
}

fn parse_route(s: &str) -> Result<Route, String> {
    let (listen, upstream) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not LISTEN=UPSTREAM (such as 0.0.0.0:8080=web.ns.svc:80)"))?;
    let listen = match listen.parse::<u16>() {
        Ok(port) => SocketAddr::from(([0, 0, 0, 0], port)),
        Err(_) => listen
            .parse::<SocketAddr>()
            .map_err(|_| format!("{listen:?} is not a listen address: use ADDRESS:PORT or a PORT"))?,
    };
    let upstream = upstream.parse::<Upstream>().map_err(|e| e.to_string())?;
    Ok(Route { listen, upstream })
}

impl ProxyArgs {
    /// The proxy's configuration, or what is wrong with the flags.
    pub fn config(self) -> Result<ProxyConfig, String> {
        if self.routes.is_empty() && self.passes.is_empty() {
            return Err("give at least one --route or --pass".to_owned());
        }
        let protocol = match self.protocol {
            Protocol::Http => ProxyProtocol::Http,
            Protocol::Tcp => ProxyProtocol::Tcp,
        };
        let faults = match self.faults.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
            None => None,
            Some(json) => Some(
                FaultSet::parse(json.as_bytes(), protocol, k8s_openapi::jiff::Timestamp::now())
                    .map_err(|e| format!("--faults: {e}"))?,
            ),
        };
        Ok(ProxyConfig {
            routes: self.routes.into_iter().map(|r| (r.listen, r.upstream)).collect(),
            passes: self.passes.into_iter().map(|r| (r.listen, r.upstream)).collect(),
            protocol,
            admin_addr: self.admin_addr,
            faults,
            drain_timeout: self.drain_timeout.as_std(),
            connect_timeout: self.connect_timeout.as_std(),
        })
    }
}

pub fn main(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    crate::engine::raise_open_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let proxy = Proxy::bind(config).await?;
        proxy.run(crate::serve::shutdown_signal()).await
    });
    // Connections still open after the drain are dropped here; a DNS lookup in flight is not
    // waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result.context("chaoslab proxy")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn parse(args: &[&str]) -> Result<ProxyConfig, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("proxy").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.args.config()
    }

    #[test]
    fn routes_passes_and_defaults() {
        let config = parse(&[
            "--route",
            "127.0.0.1:8080=web.ns.svc:80",
            "--route",
            "8081=10.0.0.1:81",
            "--pass",
            "5432=db:5432",
        ])
        .unwrap();
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[1].0, "0.0.0.0:8081".parse().unwrap());
        assert_eq!(config.routes[0].1.to_string(), "web.ns.svc:80");
        assert_eq!(config.passes[0].1.to_string(), "db:5432");
        assert_eq!(config.protocol, ProxyProtocol::Http);
        assert_eq!(config.admin_addr, "0.0.0.0:9901".parse().unwrap());
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
        assert!(config.faults.is_none());
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        assert!(parse(&[]).unwrap_err().contains("at least one --route or --pass"));
        assert!(parse(&["--route", "8080"]).unwrap_err().contains("LISTEN=UPSTREAM"));
        assert!(parse(&["--route", "8080=web"]).unwrap_err().contains("no port"));
        let soon = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(60);
        let tcp_abort = format!(r#"{{"faults":[{{"type":"abort","abort":{{}}}}],"expiresAt":"{soon}"}}"#);
        let error = parse(&["--protocol", "tcp", "--route", "1=a:1", "--faults", &tcp_abort]).unwrap_err();
        assert!(error.starts_with("--faults: faults[0].type: abort needs protocol http"), "{error}");
        let ok = parse(&["--route", "1=a:1", "--faults", &tcp_abort]).unwrap();
        assert_eq!(ok.faults.unwrap().faults.len(), 1);
    }
}
