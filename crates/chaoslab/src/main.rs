//! The `chaoslab` binary: one image, one binary, a subcommand per role. This is the edge where
//! flags and environment become configuration and errors become exit codes.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Parser)]
#[command(
    name = "chaoslab",
    version,
    about = "A Kubernetes resilience lab: load, faults and verdicts chaoslab measures itself"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers of every chaoslab kind (what the Helm chart deploys).
    Operator(OperatorArgs),
    /// Print the CustomResourceDefinitions of every chaoslab kind as YAML.
    Crd {
        /// Write one file per CRD into this directory instead of printing them all.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Send load to a URL from this machine and judge it: exit 0 when every threshold holds,
    /// 1 when one fails.
    Load(chaoslab::cli::load::LoadArgs),
    /// The lab: start the demo app's services on loopback and run a Drill, CircuitBreakerTrial or
    /// AutoscalingCheck against them (default: a half-minute tour), or with --kube run it in the
    /// current cluster;
    /// then print the report.
    /// Exit 0 on Pass, 1 on Fail or Aborted, 2 on Inconclusive or Error.
    Lab(chaoslab::cli::lab::LabArgs),
    /// Start the experiments of a file in the cluster; with --wait follow them to their verdicts,
    /// print the reports, write JUnit XML and exit 0 on Pass, 1 on Fail or Aborted, 2 on
    /// Inconclusive or Error: a CI gate.
    Run(chaoslab::cli::run::RunArgs),
    /// Render a stored report (report.json) as Markdown, JSON, HTML or SVG charts.
    Report(chaoslab::cli::report::ReportArgs),
    /// Run one LoadTest runner (what the operator's runner Job pods run): wait for the start,
    /// send this runner's share of the load, write the report back.
    Runner(RunnerArgs),
    /// Run the fault-injecting proxy: forward HTTP or TCP to an upstream and apply a
    /// time-bounded fault set (what ServiceFault's proxy pods run).
    Proxy {
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        args: chaoslab::cli::proxy::ProxyArgs,
    },
    /// Run one service of the lab's demo app (frontend, catalog, inventory, ...), with
    /// resilience patterns that can be switched at runtime.
    Demo {
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        args: chaoslab::cli::demo::DemoArgs,
    },
}

/// Logging flags of the long-running servers.
#[derive(Args)]
struct LogArgs {
    /// Log format.
    #[arg(long, env = "CHAOSLAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `chaoslab=debug`.
    #[arg(long, env = "CHAOSLAB_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct RunnerArgs {
    /// The runner configuration (JSON), as the operator writes it into the runner Job.
    #[arg(long, env = "CHAOSLAB_RUNNER", hide_env_values = true)]
    config: String,
    /// This runner's index, 0 to runners - 1 (Kubernetes sets it in an Indexed Job's pods).
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    index: u32,
    /// Log format.
    #[arg(long, env = "CHAOSLAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `chaoslab=debug`.
    #[arg(long, env = "CHAOSLAB_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct OperatorArgs {
    /// Address of the one HTTP port: /metrics, /healthz and /readyz.
    #[arg(long, env = "CHAOSLAB_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    listen_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "CHAOSLAB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `chaoslab=debug,kube=info`.
    #[arg(long, env = "CHAOSLAB_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// Elect a leader on a Lease, so only one replica acts.
    #[arg(long, env = "CHAOSLAB_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease (in the operator's namespace).
    #[arg(long, env = "CHAOSLAB_LEASE_NAME", default_value = "chaoslab-operator")]
    lease_name: String,
    /// The operator's own namespace: holds the Lease and is never a chaos target.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// This replica's name, for leader election and Events.
    #[arg(long, env = "POD_NAME")]
    pod_name: Option<String>,
    /// The label (KEY=VALUE) a namespace needs before anything in it can be targeted.
    #[arg(long, env = "CHAOSLAB_OPT_IN_LABEL", default_value = "chaoslab.dev/chaos=enabled")]
    opt_in_label: String,
    /// Namespaces to watch, comma-separated; empty watches all.
    #[arg(long, env = "CHAOSLAB_WATCH_NAMESPACES", value_delimiter = ',', default_value = "")]
    watch_namespaces: Vec<String>,
    /// The image LoadTest runner pods run (the operator's own, as the chart sets it).
    #[arg(long, env = "CHAOSLAB_RUNNER_IMAGE", default_value = concat!("chaoslab:", env!("CARGO_PKG_VERSION")))]
    runner_image: String,
    /// The ClusterRole LoadTest runner pods are bound to in their namespace.
    #[arg(long, env = "CHAOSLAB_RUNNER_ROLE", default_value = "chaoslab-runner")]
    runner_role: String,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Plain,
    Json,
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => print_crds(out_dir).map(|()| ExitCode::SUCCESS),
        Command::Operator(args) => run_operator(args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => chaoslab::cli::load::main(args),
        Command::Lab(args) => chaoslab::cli::lab::main(args),
        Command::Run(args) => chaoslab::cli::run::main(args),
        Command::Report(args) => chaoslab::cli::report::main(args),
        Command::Runner(args) => run_runner(args),
        Command::Proxy { log, args } => {
            init_logging(log.log_format, &log.log_level)?;
            chaoslab::cli::proxy::main(args)
        }
        Command::Demo { log, args } => {
            init_logging(log.log_format, &log.log_level)?;
            chaoslab::cli::demo::main(args)
        }
    }
}

/// Exit 0 when the runner wrote its final report (the verdict is the operator's), 1 otherwise.
fn run_runner(args: RunnerArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format, &args.log_level)?;
    let assignment = chaoslab::runner::Assignment::parse(&args.config, args.index)?;
    chaoslab::engine::raise_open_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            chaoslab::serve::shutdown_signal().await;
            tracing::info!("stopping: the report so far is written as the final one");
            on_signal.cancel();
        });
        let state = chaoslab::runner::run(client, assignment, stop).await.context("runner failed")?;
        tracing::info!(?state, "runner done");
        Ok(ExitCode::SUCCESS)
    })
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("--log-level {filter:?} is not a valid filter (try info or chaoslab=debug)"))?;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Plain => registry.with(fmt::layer()).try_init(),
        LogFormat::Json => registry.with(fmt::layer().json().flatten_event(true)).try_init(),
    }
    .context("installing the logger")
}

fn run_operator(args: OperatorArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, &args.log_level)?;
    let opt_in = args.opt_in_label.parse().map_err(|e: String| anyhow::anyhow!("--opt-in-label: {e}"))?;
    let config = chaoslab::operator::Config {
        listen_addr: args.listen_addr,
        leader_election: args.leader_election,
        lease_name: args.lease_name,
        namespace: args.namespace.filter(|n| !n.is_empty()),
        pod_name: args.pod_name.filter(|n| !n.is_empty()),
        opt_in,
        watch_namespaces: args
            .watch_namespaces
            .into_iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
        runner: chaoslab::controller::loadtest::build::RunnerSettings {
            image: args.runner_image,
            role: args.runner_role,
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(chaoslab::operator::run(config)).context("operator stopped")?;
    Ok(())
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = chaoslab::api::crds();
    match out_dir {
        None => {
            for crd in &crds {
                print!("---\n{}", chaoslab::api::crd_yaml(crd)?);
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(chaoslab::api::crd_file_name(crd));
                std::fs::write(&path, chaoslab::api::crd_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(())
}
