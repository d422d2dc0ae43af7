//! `chaoslab demo`: flags turned into the lab app's configuration, then the service served until
//! SIGTERM. `--config` gives the whole configuration as JSON (the shape of `/admin/config`);
//! each flag given overrides its field, and the upstream flags apply to every upstream.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{ArgAction, ValueEnum, error::ErrorKind};
use serde_json::Value;

use crate::{
    api::GoDuration,
    demo::{
        ConfigError, Demo, DemoConfig, Exit,
        config::{CallMode, Distribution, FallbackMode, Upstream, WindowType},
    },
};

const EXAMPLES: &str = "\
Examples:
  # A topology on one machine: frontend → catalog → inventory (docs/lab.md has the flags the
  # chart and the drills use)
  chaoslab demo --name inventory --listen 127.0.0.1:18082 --latency 5ms --jitter 2ms
  chaoslab demo --name catalog --listen 127.0.0.1:18081 --latency 10ms \\
      --upstream inventory=http://127.0.0.1:18082/ --timeout 500ms --circuit-breaker
  chaoslab demo --name frontend --listen 127.0.0.1:18080 --latency 80ms --jitter 20ms \\
      --max-concurrency 12 --upstream catalog=http://127.0.0.1:18081/ --timeout 2s
  chaoslab load -f examples/drills/01-baseline.yaml http://127.0.0.1:18080

  # Flip a pattern at runtime: make inventory fail every request, then look at catalog's breaker
  curl -X PATCH localhost:18082/admin/config -d '{\"work\": {\"errorPercent\": 100}}'
  curl localhost:18081/admin/state

  # The whole configuration from a file (the JSON of GET /admin/config; docs/lab.md)
  chaoslab demo --config @catalog.json --listen 127.0.0.1:18081

Endpoints: every path but these is the work route; /healthz (liveness), /readyz (readiness),
/metrics (Prometheus), /admin/config (GET, PUT, PATCH), /admin/state (GET).
On SIGTERM: readiness fails, the service serves on for --shutdown-delay, then drains the
requests in flight for at most --drain-timeout and exits 0; with --graceful-shutdown=false it
exits at once with status 143, dropping them. Exit status 2 for a bad flag or configuration.";

/// Flags of `chaoslab demo`.
#[derive(Clone, Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct DemoArgs {
    /// The service's name, in its answers and as the `service` label of its metrics (default: demo).
    #[arg(long, env = "CHAOSLAB_DEMO_NAME")]
    pub name: Option<String>,
    /// The address to listen on.
    #[arg(long, env = "CHAOSLAB_DEMO_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The whole configuration as JSON, or @FILE to read it from a file: the shape GET
    /// /admin/config returns (docs/lab.md). Flags given override its fields.
    #[arg(long, env = "CHAOSLAB_DEMO_CONFIG", value_name = "JSON|@FILE")]
    pub config: Option<String>,
    /// Serve /admin/config and /admin/state (no authentication: a lab target).
    #[arg(long, env = "CHAOSLAB_DEMO_ADMIN", default_value_t = true, action = ArgAction::Set)]
    pub admin: bool,

    /// Everything else: the work, the upstreams and their patterns, the lifecycle. Boxed: the
    /// binary's subcommands are an enum, and these flags would make this one its largest by far.
    #[command(flatten)]
    pub knobs: Box<Knobs>,
}

/// The flags of `chaoslab demo` that set the configuration's fields.
#[derive(Clone, Debug, clap::Args)]
pub struct Knobs {
    /// Base latency of each request (a sleep, no CPU), such as 20ms.
    #[arg(long, env = "CHAOSLAB_DEMO_LATENCY", value_name = "DURATION", help_heading = "Work")]
    pub latency: Option<GoDuration>,
    /// Random extra latency: uniform on [0, jitter], or the standard deviation of a normal one.
    #[arg(long, env = "CHAOSLAB_DEMO_JITTER", value_name = "DURATION", help_heading = "Work")]
    pub jitter: Option<GoDuration>,
    /// The jitter's distribution.
    #[arg(long, env = "CHAOSLAB_DEMO_LATENCY_DISTRIBUTION", value_enum, help_heading = "Work")]
    pub latency_distribution: Option<DistributionArg>,
    /// CPU time burnt per request on a blocking thread (at most one per core at once), so an HPA
    /// has CPU to scale on.
    #[arg(long, env = "CHAOSLAB_DEMO_CPU", value_name = "DURATION", help_heading = "Work")]
    pub cpu: Option<GoDuration>,
    /// Pad each JSON answer to this many bytes.
    #[arg(long, env = "CHAOSLAB_DEMO_RESPONSE_BYTES", value_name = "BYTES", help_heading = "Work")]
    pub response_bytes: Option<u32>,
    /// Percentage of requests answered 500 on purpose (0 to 100).
    #[arg(long, env = "CHAOSLAB_DEMO_ERROR_RATE", value_name = "PERCENT", help_heading = "Work")]
    pub error_rate: Option<f64>,
    /// The most requests of the work route in flight at once; beyond it, 503 at once (load
    /// shedding). 0: no limit.
    #[arg(long, env = "CHAOSLAB_DEMO_MAX_CONCURRENCY", value_name = "N", help_heading = "Work")]
    pub max_concurrency: Option<u32>,

    /// An upstream to call on each request, repeatable: NAME=http://host:port/path.
    #[arg(long = "upstream", env = "CHAOSLAB_DEMO_UPSTREAMS", value_name = "NAME=URL", value_delimiter = ',',
          help_heading = "Upstreams", value_parser = parse_upstream)]
    pub upstreams: Vec<(String, String)>,
    /// Call the upstreams one after another (stopping at the first required failure) or all
    /// at once.
    #[arg(long, env = "CHAOSLAB_DEMO_CALLS", value_enum, help_heading = "Upstreams")]
    pub calls: Option<CallsArg>,
    /// Upstream calls are optional: a failed one does not fail the request.
    #[arg(long, env = "CHAOSLAB_DEMO_OPTIONAL", num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set, help_heading = "Upstreams")]
    pub optional: Option<bool>,
    /// Timeout of each call attempt (and of a wait for a bulkhead slot).
    #[arg(long, env = "CHAOSLAB_DEMO_TIMEOUT", value_name = "DURATION", help_heading = "Upstreams")]
    pub timeout: Option<GoDuration>,

    /// Retries after a failed or timed-out attempt (0 to 10).
    #[arg(long, env = "CHAOSLAB_DEMO_RETRIES", value_name = "N", help_heading = "Retries")]
    pub retries: Option<u32>,
    /// Backoff base: retry n waits a random time up to min(max, base × 2^(n-1)).
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_BACKOFF", value_name = "DURATION", help_heading = "Retries")]
    pub retry_backoff: Option<GoDuration>,
    /// The longest backoff.
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_MAX_BACKOFF", value_name = "DURATION", help_heading = "Retries")]
    pub retry_max_backoff: Option<GoDuration>,
    /// Bound retries by a budget (default on); --retry-budget=false lets every retry through.
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_BUDGET", num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set, help_heading = "Retries")]
    pub retry_budget: Option<bool>,
    /// The budget: retries at most this share of the calls in the window (0 to 1).
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_BUDGET_RATIO", value_name = "RATIO", help_heading = "Retries")]
    pub retry_budget_ratio: Option<f64>,
    /// The budget's floor: this many retries per second of the window are always allowed.
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_BUDGET_MIN_PER_SECOND", value_name = "N", help_heading = "Retries")]
    pub retry_budget_min_per_second: Option<f64>,
    /// The budget's sliding window (whole seconds).
    #[arg(long, env = "CHAOSLAB_DEMO_RETRY_BUDGET_WINDOW", value_name = "DURATION", help_heading = "Retries")]
    pub retry_budget_window: Option<GoDuration>,

    /// Put a circuit breaker on each upstream.
    #[arg(long, env = "CHAOSLAB_DEMO_CIRCUIT_BREAKER", num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set, help_heading = "Circuit breaker")]
    pub circuit_breaker: Option<bool>,
    /// The sliding window: the last N calls (count) or the calls of the last N seconds (time).
    #[arg(long, env = "CHAOSLAB_DEMO_BREAKER_WINDOW_TYPE", value_enum, help_heading = "Circuit breaker")]
    pub breaker_window_type: Option<WindowArg>,
    /// The window's size: calls (count) or seconds (time).
    #[arg(long, env = "CHAOSLAB_DEMO_BREAKER_WINDOW_SIZE", value_name = "N", help_heading = "Circuit breaker")]
    pub breaker_window_size: Option<u32>,
    /// Calls the window must hold before the rates are judged.
    #[arg(long, env = "CHAOSLAB_DEMO_BREAKER_MINIMUM_CALLS", value_name = "N", help_heading = "Circuit breaker")]
    pub breaker_minimum_calls: Option<u32>,
    /// Open at this failure rate (percent, 1 to 100).
    #[arg(long, env = "CHAOSLAB_DEMO_BREAKER_FAILURE_RATE", value_name = "PERCENT", help_heading = "Circuit breaker")]
    pub breaker_failure_rate: Option<f64>,
    /// Open at this slow-call rate (percent, 1 to 100).
    #[arg(
        long,
        env = "CHAOSLAB_DEMO_BREAKER_SLOW_CALL_RATE",
        value_name = "PERCENT",
        help_heading = "Circuit breaker"
    )]
    pub breaker_slow_call_rate: Option<f64>,
    /// A call at least this long is slow.
    #[arg(
        long,
        env = "CHAOSLAB_DEMO_BREAKER_SLOW_CALL_DURATION",
        value_name = "DURATION",
        help_heading = "Circuit breaker"
    )]
    pub breaker_slow_call_duration: Option<GoDuration>,
    /// How long the breaker stays open before trial calls.
    #[arg(
        long,
        env = "CHAOSLAB_DEMO_BREAKER_OPEN_DURATION",
        value_name = "DURATION",
        help_heading = "Circuit breaker"
    )]
    pub breaker_open_duration: Option<GoDuration>,
    /// Trial calls while half-open.
    #[arg(long, env = "CHAOSLAB_DEMO_BREAKER_HALF_OPEN_CALLS", value_name = "N", help_heading = "Circuit breaker")]
    pub breaker_half_open_calls: Option<u32>,

    /// Put a bulkhead on each upstream.
    #[arg(long, env = "CHAOSLAB_DEMO_BULKHEAD", num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set, help_heading = "Bulkhead and fallback")]
    pub bulkhead: Option<bool>,
    /// Calls in flight to one upstream at once.
    #[arg(
        long,
        env = "CHAOSLAB_DEMO_BULKHEAD_MAX_CONCURRENT",
        value_name = "N",
        help_heading = "Bulkhead and fallback"
    )]
    pub bulkhead_max_concurrent: Option<u32>,
    /// Calls waiting for a slot; one more is rejected at once.
    #[arg(long, env = "CHAOSLAB_DEMO_BULKHEAD_QUEUE", value_name = "N", help_heading = "Bulkhead and fallback")]
    pub bulkhead_queue: Option<u32>,
    /// What answers when a call fails: nothing (the request fails if the upstream is required),
    /// a static body, or the last good answer.
    #[arg(long, env = "CHAOSLAB_DEMO_FALLBACK", value_enum, help_heading = "Bulkhead and fallback")]
    pub fallback: Option<FallbackArg>,
    /// The static fallback's JSON body.
    #[arg(long, env = "CHAOSLAB_DEMO_FALLBACK_BODY", value_name = "JSON", help_heading = "Bulkhead and fallback")]
    pub fallback_body: Option<String>,

    /// Not ready for this long after the start (slow start).
    #[arg(long, env = "CHAOSLAB_DEMO_START_DELAY", value_name = "DURATION", help_heading = "Lifecycle")]
    pub start_delay: Option<GoDuration>,
    /// After the start delay, extra latency falls from --warmup-latency to nothing over this long.
    #[arg(long, env = "CHAOSLAB_DEMO_WARMUP", value_name = "DURATION", help_heading = "Lifecycle")]
    pub warmup: Option<GoDuration>,
    /// The warm-up's extra latency at its start.
    #[arg(long, env = "CHAOSLAB_DEMO_WARMUP_LATENCY", value_name = "DURATION", help_heading = "Lifecycle")]
    pub warmup_latency: Option<GoDuration>,
    /// Shut down gracefully on SIGTERM (default); false exits at once, dropping requests in flight.
    #[arg(long, env = "CHAOSLAB_DEMO_GRACEFUL_SHUTDOWN", num_args = 0..=1, default_missing_value = "true",
          action = ArgAction::Set, help_heading = "Lifecycle")]
    pub graceful_shutdown: Option<bool>,
    /// Graceful: serve on this long after SIGTERM with readiness failing (default 5s).
    #[arg(long, env = "CHAOSLAB_DEMO_SHUTDOWN_DELAY", value_name = "DURATION", help_heading = "Lifecycle")]
    pub shutdown_delay: Option<GoDuration>,
    /// Graceful: then wait at most this long for the requests in flight (default 20s).
    #[arg(long, env = "CHAOSLAB_DEMO_DRAIN_TIMEOUT", value_name = "DURATION", help_heading = "Lifecycle")]
    pub drain_timeout: Option<GoDuration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistributionArg {
    Uniform,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CallsArg {
    Sequence,
    Parallel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WindowArg {
    Count,
    Time,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FallbackArg {
    None,
    Static,
    LastGood,
}

/// `NAME=URL`.
fn parse_upstream(text: &str) -> Result<(String, String), String> {
    let (name, url) =
        text.split_once('=').ok_or_else(|| "expected NAME=URL, such as inventory=http://inventory:8080/".to_owned())?;
    Ok((name.trim().to_owned(), url.trim().to_owned()))
}

/// The configuration the flags ask for: `--config` (or the defaults), then each flag given.
pub fn config(args: &DemoArgs) -> Result<DemoConfig, String> {
    let mut config = match &args.config {
        None => DemoConfig::default(),
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("--config @{path}: cannot read it: {e}"))?
                }
                None => text.clone(),
            };
            DemoConfig::from_json_text(&text).map_err(|e| format!("--config: {e}"))?
        }
    };
    if let Some(name) = &args.name {
        config.name = name.clone();
    }
    let k = &args.knobs;
    let w = &mut config.work;
    set(&mut w.latency, k.latency);
    set(&mut w.jitter, k.jitter);
    set(
        &mut w.distribution,
        k.latency_distribution.map(|d| match d {
            DistributionArg::Uniform => Distribution::Uniform,
            DistributionArg::Normal => Distribution::Normal,
        }),
    );
    set(&mut w.cpu, k.cpu);
    set(&mut w.response_bytes, k.response_bytes);
    set(&mut w.error_percent, k.error_rate);
    set(&mut config.max_concurrent_requests, k.max_concurrency);
    set(
        &mut config.calls,
        k.calls.map(|c| match c {
            CallsArg::Sequence => CallMode::Sequence,
            CallsArg::Parallel => CallMode::Parallel,
        }),
    );
    for (name, url) in &k.upstreams {
        match config.upstreams.iter_mut().find(|u| &u.name == name) {
            Some(known) => known.url = url.clone(),
            None => config.upstreams.push(Upstream::new(name, url)),
        }
    }
    let fallback_body: Option<Value> = match &k.fallback_body {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| format!("--fallback-body: not JSON: {e}"))?),
    };
    for u in &mut config.upstreams {
        if let Some(optional) = k.optional {
            u.required = !optional;
        }
        set(&mut u.timeout, k.timeout);
        let r = &mut u.retries;
        set(&mut r.max, k.retries);
        set(&mut r.backoff, k.retry_backoff);
        set(&mut r.max_backoff, k.retry_max_backoff);
        set(&mut r.budget.enabled, k.retry_budget);
        set(&mut r.budget.ratio, k.retry_budget_ratio);
        set(&mut r.budget.min_per_second, k.retry_budget_min_per_second);
        set(&mut r.budget.window, k.retry_budget_window);
        let c = &mut u.circuit_breaker;
        set(&mut c.enabled, k.circuit_breaker);
        set(
            &mut c.sliding_window_type,
            k.breaker_window_type.map(|t| match t {
                WindowArg::Count => WindowType::Count,
                WindowArg::Time => WindowType::Time,
            }),
        );
        set(&mut c.sliding_window_size, k.breaker_window_size);
        set(&mut c.minimum_calls, k.breaker_minimum_calls);
        set(&mut c.failure_rate_threshold, k.breaker_failure_rate);
        set(&mut c.slow_call_rate_threshold, k.breaker_slow_call_rate);
        set(&mut c.slow_call_duration, k.breaker_slow_call_duration);
        set(&mut c.open_duration, k.breaker_open_duration);
        set(&mut c.half_open_calls, k.breaker_half_open_calls);
        set(&mut u.bulkhead.enabled, k.bulkhead);
        set(&mut u.bulkhead.max_concurrent, k.bulkhead_max_concurrent);
        set(&mut u.bulkhead.max_queue, k.bulkhead_queue);
        set(
            &mut u.fallback.mode,
            k.fallback.map(|f| match f {
                FallbackArg::None => FallbackMode::None,
                FallbackArg::Static => FallbackMode::Static,
                FallbackArg::LastGood => FallbackMode::LastGood,
            }),
        );
        set(&mut u.fallback.body, fallback_body.clone());
    }
    let l = &mut config.lifecycle;
    set(&mut l.start_delay, k.start_delay);
    set(&mut l.warmup, k.warmup);
    set(&mut l.warmup_latency, k.warmup_latency);
    set(&mut l.graceful, k.graceful_shutdown);
    set(&mut l.shutdown_delay, k.shutdown_delay);
    set(&mut l.drain_timeout, k.drain_timeout);
    config.validate().map_err(|e| with_flag(args, &e))?;
    Ok(config)
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// A configuration error, naming the flag that set the field when one did.
fn with_flag(args: &DemoArgs, e: &ConfigError) -> String {
    let k = &args.knobs;
    let leaf = e.field.rsplit('.').next().unwrap_or(&e.field);
    let flag = match (e.field.as_str(), leaf) {
        ("name", _) if args.name.is_some() => Some("--name"),
        ("work.latency", _) if k.latency.is_some() => Some("--latency"),
        ("work.jitter", _) if k.jitter.is_some() => Some("--jitter"),
        ("work.cpu", _) if k.cpu.is_some() => Some("--cpu"),
        ("work.responseBytes", _) if k.response_bytes.is_some() => Some("--response-bytes"),
        ("work.errorPercent", _) if k.error_rate.is_some() => Some("--error-rate"),
        (_, "url") if !k.upstreams.is_empty() => Some("--upstream"),
        (_, "name") if !k.upstreams.is_empty() => Some("--upstream"),
        (_, "timeout") if k.timeout.is_some() => Some("--timeout"),
        (_, "max") if k.retries.is_some() => Some("--retries"),
        (_, "backoff") if k.retry_backoff.is_some() => Some("--retry-backoff"),
        (_, "maxBackoff") if k.retry_max_backoff.is_some() => Some("--retry-max-backoff"),
        (_, "ratio") if k.retry_budget_ratio.is_some() => Some("--retry-budget-ratio"),
        (_, "minPerSecond") if k.retry_budget_min_per_second.is_some() => Some("--retry-budget-min-per-second"),
        (_, "window") if k.retry_budget_window.is_some() => Some("--retry-budget-window"),
        (_, "slidingWindowSize") if k.breaker_window_size.is_some() => Some("--breaker-window-size"),
        (_, "minimumCalls") if k.breaker_minimum_calls.is_some() => Some("--breaker-minimum-calls"),
        (_, "failureRateThreshold") if k.breaker_failure_rate.is_some() => Some("--breaker-failure-rate"),
        (_, "slowCallRateThreshold") if k.breaker_slow_call_rate.is_some() => Some("--breaker-slow-call-rate"),
        (_, "slowCallDuration") if k.breaker_slow_call_duration.is_some() => Some("--breaker-slow-call-duration"),
        (_, "openDuration") if k.breaker_open_duration.is_some() => Some("--breaker-open-duration"),
        (_, "halfOpenCalls") if k.breaker_half_open_calls.is_some() => Some("--breaker-half-open-calls"),
        (_, "maxConcurrent") if k.bulkhead_max_concurrent.is_some() => Some("--bulkhead-max-concurrent"),
        (_, "maxQueue") if k.bulkhead_queue.is_some() => Some("--bulkhead-queue"),
        ("lifecycle.startDelay", _) if k.start_delay.is_some() => Some("--start-delay"),
        ("lifecycle.warmup", _) if k.warmup.is_some() => Some("--warmup"),
        ("lifecycle.warmupLatency", _) if k.warmup_latency.is_some() => Some("--warmup-latency"),
        ("lifecycle.shutdownDelay", _) if k.shutdown_delay.is_some() => Some("--shutdown-delay"),
        ("lifecycle.drainTimeout", _) if k.drain_timeout.is_some() => Some("--drain-timeout"),
        _ => None,
    };
    match flag {
        Some(flag) => format!("{flag}: {e}"),
        None if args.config.is_some() => format!("--config: {e}"),
        None => e.to_string(),
    }
}

/// Runs the service until SIGTERM (or Ctrl-C): exit 0 after a graceful shutdown, 143 at once
/// without one, 2 for a bad configuration.
pub fn main(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let config = match config(&args) {
        Ok(config) => config,
        Err(message) => return Ok(usage_error(&message)),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let exit = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let demo = Demo::new(config)?;
        let exit = crate::demo::serve(listener, demo, args.admin, crate::serve::shutdown_signal()).await?;
        anyhow::Ok(exit)
    })?;
    match exit {
        // The point of the switch: what the clients of a process that just dies see.
        Exit::Abrupt { .. } => std::process::exit(143),
        Exit::Drained | Exit::DrainTimedOut { .. } => {
            // CPU work still spinning on a blocking thread is not waited for.
            runtime.shutdown_timeout(Duration::from_millis(100));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A configuration error printed the way clap prints its own, with the usage line; exit 2.
fn usage_error(message: &str) -> ExitCode {
    use clap::Args as _;
    let mut command = DemoArgs::augment_args(clap::Command::new("chaoslab demo"));
    let error = command.error(ErrorKind::ValueValidation, message);
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DemoArgs,
    }

    fn parse(flags: &[&str]) -> DemoArgs {
        Cli::try_parse_from(["demo"].iter().chain(flags)).map(|c| c.args).unwrap_or_else(|e| panic!("{flags:?}: {e}"))
    }

    fn convert(flags: &[&str]) -> Result<DemoConfig, String> {
        config(&parse(flags))
    }

    #[test]
    fn flags_set_the_fields_and_upstream_flags_apply_to_every_upstream() {
        let c = convert(&[
            "--name",
            "catalog",
            "--latency",
            "10ms",
            "--jitter",
            "4ms",
            "--latency-distribution",
            "normal",
            "--cpu",
            "1ms",
            "--error-rate",
            "2.5",
            "--max-concurrency",
            "12",
            "--upstream",
            "inventory=http://127.0.0.1:18082/",
            "--upstream",
            "prices=http://127.0.0.1:18083/",
            "--calls",
            "parallel",
            "--timeout",
            "150ms",
            "--retries",
            "2",
            "--retry-budget=false",
            "--circuit-breaker",
            "--breaker-window-type",
            "time",
            "--breaker-window-size",
            "10",
            "--bulkhead",
            "--bulkhead-max-concurrent",
            "4",
            "--fallback",
            "last-good",
            "--graceful-shutdown=false",
            "--shutdown-delay",
            "1s",
        ])
        .expect("valid");
        assert_eq!(c.name, "catalog");
        assert_eq!(c.work.distribution, Distribution::Normal);
        assert_eq!(c.work.error_percent, 2.5);
        assert_eq!(c.max_concurrent_requests, 12);
        assert_eq!(c.calls, CallMode::Parallel);
        assert_eq!(c.upstreams.len(), 2);
        for u in &c.upstreams {
            assert_eq!(u.timeout, GoDuration(Duration::from_millis(150)));
            assert_eq!(u.retries.max, 2);
            assert!(!u.retries.budget.enabled);
            assert!(u.circuit_breaker.enabled && u.bulkhead.enabled);
            assert_eq!(u.circuit_breaker.sliding_window_type, WindowType::Time);
            assert_eq!(u.bulkhead.max_concurrent, 4);
            assert_eq!(u.fallback.mode, FallbackMode::LastGood);
            assert!(u.required);
        }
        assert!(!c.lifecycle.graceful);
        assert_eq!(c.lifecycle.shutdown_delay, GoDuration::from_secs(1));
    }

    #[test]
    fn flags_override_the_config_json_and_upstreams_merge_by_name() {
        let json = r#"{"name": "catalog", "work": {"latency": "50ms", "errorPercent": 1},
                       "upstreams": [{"name": "inventory", "url": "http://inventory:8080/", "timeout": "3s"}]}"#;
        let c = convert(&["--config", json, "--error-rate", "0", "--upstream", "inventory=http://127.0.0.1:9/"])
            .expect("valid");
        assert_eq!(c.work.latency, GoDuration(Duration::from_millis(50)), "from the JSON");
        assert_eq!(c.work.error_percent, 0.0, "the flag wins");
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].url, "http://127.0.0.1:9/");
        assert_eq!(c.upstreams[0].timeout, GoDuration::from_secs(3), "kept from the JSON");
    }

    #[test]
    fn errors_name_the_flag_or_the_config_field() {
        let e = convert(&["--error-rate", "150"]).expect_err("refused");
        assert!(e.starts_with("--error-rate: work.errorPercent: must be a percentage"), "{e}");
        let e = convert(&["--upstream", "inventory=https://x/"]).expect_err("refused");
        assert!(e.starts_with("--upstream: upstreams[0].url:"), "{e}");
        let e = convert(&["--config", r#"{"work": {"latency": "1"}}"#]).expect_err("refused");
        assert!(e.starts_with("--config: work.latency:"), "{e}");
        let e = convert(&["--config", "@/nonexistent/demo.json"]).expect_err("refused");
        assert!(e.starts_with("--config @/nonexistent/demo.json: cannot read it"), "{e}");
        let e = convert(&["--upstream", "a=http://a/", "--fallback-body", "{"]).expect_err("refused");
        assert!(e.starts_with("--fallback-body: not JSON"), "{e}");
        let e = convert(&["--upstream", "a=http://a/", "--retries", "11"]).expect_err("refused");
        assert!(e.starts_with("--retries: upstreams[0].retries.max: must be at most 10"), "{e}");
        let err = Cli::try_parse_from(["demo", "--upstream", "no-equals"]).err().expect("refused").to_string();
        assert!(err.contains("expected NAME=URL"), "{err}");
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory as _;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Examples:") && help.contains("/admin/config"));
        for arg in Cli::command().get_arguments() {
            assert!(arg.get_help().is_some() || arg.get_long_help().is_some(), "{} has no help", arg.get_id());
        }
    }
}
