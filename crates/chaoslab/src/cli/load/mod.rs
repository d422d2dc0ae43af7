//! `chaoslab load`: the load engine on the user's machine — flags turned into a LoadTest spec, or
//! a LoadTest manifest read with `-f`, checked by the rules the cluster applies, a live progress
//! line, a summary table or JSON document, and thresholds (and abort rules) that decide the exit
//! code.

use std::{
    io::IsTerminal as _,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::error::ErrorKind;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{Verdict, figures::AbortRule, load::LoadModel},
    cli::output::{self, AbortedBy, Ended, Finished, Progress},
    engine::{self, EngineConfig, EngineError},
    load::{
        Figures, RunnerShare,
        summary::{RunSummary, Stop},
    },
};

pub(crate) mod flags;

pub use flags::{FlagError, Invocation, LoadArgs, OutputFormat, invocation};

/// Runs `chaoslab load` to the end: builds its own runtime, returns the exit code.
pub fn main(args: LoadArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let invocation = match invocation(&args) {
        Ok(invocation) => invocation,
        Err(e) => return Ok(usage_error(&e)),
    };
    crate::engine::raise_open_file_limit();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let interactive = !invocation.quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let progress = Progress::new(interactive, !invocation.quiet);
    let finished = runtime.block_on(run(&invocation, progress))?;
    // Requests still open at a Ctrl-C or a stop are not waited for past the engine's end.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match invocation.output {
        OutputFormat::Text => print!("{}", output::text(&invocation, &finished)),
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&output::json(&invocation, &finished)).context("writing JSON")?)
        }
    }
    Ok(finished.exit_code())
}

/// Warnings and errors of the engine on stderr; `RUST_LOG` shows more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second subscriber (tests calling main twice) is not an error worth reporting.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// A flag error printed the way clap prints its own, with the usage line; exit status 2.
fn usage_error(e: &FlagError) -> ExitCode {
    use clap::Args as _;
    let mut command = LoadArgs::augment_args(clap::Command::new("chaoslab load"));
    let error = command.error(ErrorKind::ValueValidation, &e.0);
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// Runs the engine, folding its sealed seconds, drawing progress and acting on stop decisions,
/// until the plan ends, a decision stops it, or Ctrl-C.
async fn run(invocation: &Invocation, mut progress: Progress) -> anyhow::Result<Finished> {
    let mut summary = RunSummary::new(invocation.summary_spec()).context("preparing the run summary")?;
    let config = EngineConfig::from_profile(
        &invocation.spec.load,
        &invocation.url,
        invocation.plan.clone(),
        RunnerShare::SINGLE,
    );
    let (ticks, mut tick_rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let start = tokio::time::Instant::now();
    let wall_start = Instant::now();
    let mut engine = tokio::spawn(engine::run(config, start, Some(ticks), stop.clone()));
    let (sigint_tx, mut sigint) = mpsc::channel(2);
    let signals = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if sigint_tx.send(()).await.is_err() {
                break;
            }
        }
    });
    tracing::debug!(url = %invocation.url, stages = invocation.plan.stages.len(), "load starts");
    let mut ended = Ended::Completed;
    let mut interrupted = false;
    let mut stopped_at: Option<Duration> = None;
    let mut outcome = None;
    // spec.abortWhen (a manifest of -f): the figures of each sealed second, judged as they come.
    let abort_rules = &invocation.spec.abort_when;
    let open = invocation.spec.load.model == LoadModel::Open;
    let mut per_second: Vec<Figures> = Vec::new();
    let mut aborted_by: Option<AbortedBy> = None;
    loop {
        tokio::select! {
            tick = tick_rx.recv() => {
                let Some(tick) = tick else { break };
                for (second, bucket) in &tick.sealed {
                    if let Some(decision) = summary.fold(*second, bucket).context("folding a sealed second")? {
                        progress.notice(&decision.to_string());
                        if ended == Ended::Completed {
                            ended = match decision {
                                Stop::CapacityBroke { .. } => Ended::CapacityStopped,
                                Stop::Abort { .. } => Ended::Aborted,
                            };
                        }
                        stopped_at.get_or_insert(wall_start.elapsed());
                        stop.cancel();
                    }
                    if abort_rules.is_empty() || aborted_by.is_some() {
                        continue;
                    }
                    let mid = Duration::from_secs_f64(*second as f64 + 0.5);
                    per_second.push(bucket.figures(1.0, open.then(|| invocation.plan.level_at(mid))).figures);
                    if let Some(fired) = fired_abort_rule(abort_rules, *second, &per_second) {
                        progress.notice(&format!("aborted at {}s: {}", fired.second, fired.reason()));
                        if ended == Ended::Completed {
                            ended = Ended::Aborted;
                        }
                        stopped_at.get_or_insert(wall_start.elapsed());
                        stop.cancel();
                        aborted_by = Some(fired);
                    }
                }
                progress.draw(&tick, &summary);
            }
            Some(()) = sigint.recv() => {
                if interrupted {
                    progress.clear();
                    eprintln!("interrupted twice: exiting without a summary");
                    std::process::exit(130);
                }
                progress.notice("interrupted: stopping the load (Ctrl-C again to exit at once)");
                interrupted = true;
                if ended == Ended::Completed {
                    ended = Ended::Interrupted;
                }
                stopped_at.get_or_insert(wall_start.elapsed());
                stop.cancel();
            }
            result = &mut engine, if outcome.is_none() => {
                // The engine ended; what it sealed last may still be queued, so drain the ticks.
                outcome = Some(result);
            }
        }
    }
    progress.clear();
    signals.abort();
    let result = match outcome {
        Some(result) => result,
        None => engine.await,
    };
    let outcome = result.context("the load engine stopped unexpectedly")?.map_err(engine_error)?;
    if outcome.total.counts != summary.total().counts {
        tracing::warn!(
            engine = outcome.total.counts.total,
            summary = summary.total().counts.total,
            "the sealed seconds do not add up to the engine's total; the summary shows the sealed seconds"
        );
    }
    let planned = invocation.plan.total_duration();
    let ran = stopped_at.map_or(planned, |at| at.min(planned));
    let mut end = summary.finish(ran);
    if let Some(fired) = &aborted_by
        && end.stop.is_none()
    {
        end.verdict = Verdict::Aborted;
        end.stop = Some(Stop::Abort { second: fired.second, expression: fired.rule.clone(), reason: fired.reason() });
    }
    Ok(Finished { summary, end, ended, elapsed: wall_start.elapsed(), aborted_by })
}

/// The first rule of `spec.abortWhen` whose condition held on each of its last `for` seconds,
/// judged like the operator does (`abort_fires` over per-second figures).
fn fired_abort_rule(rules: &[AbortRule], second: u64, seconds: &[Figures]) -> Option<AbortedBy> {
    rules.iter().find_map(|rule| {
        let points = rule.r#for.as_std().as_secs().max(1);
        crate::load::verdict::abort_fires(&rule.when, points, seconds).map(|observed| AbortedBy {
            rule: rule.when.clone(),
            r#for: rule.r#for.to_string(),
            observed,
            second,
        })
    })
}

/// An engine error in the words of the command line.
fn engine_error(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Url { url, reason } => anyhow::anyhow!("cannot send load to {url}: {reason}"),
        EngineError::Request { reason, .. } => {
            anyhow::anyhow!("the request (--method, -H/--header, --body, --expect-status) cannot be built: {reason}")
        }
        other => anyhow::Error::new(other).context("the load engine failed"),
    }
}
