//! `chaoslab run -f FILE`: starts the experiments of a file in the cluster and, with `--wait`,
//! follows them to their verdicts, prints their reports, writes JUnit XML and exits by the
//! verdicts — the performance gate of a CI pipeline.

pub mod junit;
pub mod live;
pub mod manifest;

use std::{
    io::{BufRead as _, IsTerminal as _, Read as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, DynamicObject, PostParams, PropagationPolicy},
};
use tokio::signal::unix::{SignalKind, signal};

use self::{live::Screen, manifest::Manifest};
use super::{
    cluster::{self, RunRef, RunView},
    report::{self as report_cli, Format, Summary},
};
use crate::{
    api::{GoDuration, Verdict},
    report::{Report, markdown},
};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Experiments to start: a YAML file of chaoslab kinds (several documents allowed), or `-`
    /// for stdin. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The namespace of experiments that name none (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Follow the runs to their verdicts, print their reports, and exit 0 when all passed, 1 when
    /// one failed or was aborted, 2 when one was inconclusive, errored or had no verdict.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (`90s`, `10m`, `1h`): the runs still going are aborted
    /// (their faults reverted) and the exit code is 2. Default: as long as the runs take.
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<GoDuration>,
    /// Write JUnit XML here: one test suite per run, one test case per expectation.
    #[arg(long, value_name = "FILE", requires = "wait")]
    pub junit: Option<PathBuf>,
    /// How to print the reports at the end: md (the summary) or json (report.json; an array
    /// when several ran).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Summary::Md)]
    pub output: Summary,
    /// Delete an existing experiment of the same name first (an experiment runs once), so it
    /// runs again.
    #[arg(long)]
    pub replace: bool,
    /// On Ctrl-C or SIGTERM abort the runs without asking: every fault is reverted, each ends
    /// Aborted, and the reports are printed. Without it a terminal is asked; anywhere else the
    /// runs are left to end on their own (exit 130).
    #[arg(long, requires = "wait")]
    pub abort_on_interrupt: bool,
}

/// How long a finished run may take to get its report reference before the status is shown
/// instead (the operator writes the report just after the verdict).
const REPORT_GRACE: Duration = Duration::from_secs(20);
/// How long aborted runs are given to revert their faults and end.
const ABORT_GRACE: Duration = Duration::from_secs(90);
/// How long a run may have no status before the user is told the operator may not be running.
const NO_OPERATOR_HINT: Duration = Duration::from_secs(30);
/// Consecutive failed reads of a run before following it is given up.
const MAX_READ_FAILURES: u32 = 30;

/// Runs `chaoslab run`. What stops it from reaching verdicts (a bad file, a refused spec, a lost
/// cluster) exits 2 like an Error verdict, so a CI gate never reads it as a Fail.
pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    Ok(gate(&args).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    }))
}

fn gate(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut texts = Vec::new();
    for path in &args.files {
        let text = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading stdin")?;
            text
        } else {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        };
        texts.push((path.clone(), text));
    }
    start_and_follow(args, texts)
}

/// Starts the experiments of `texts` (each with the path it was read from) and, with `--wait`,
/// follows them: `chaoslab run` after reading its files, and `chaoslab lab --kube`.
pub fn start_and_follow(args: &RunArgs, texts: Vec<(PathBuf, String)>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(run(args, texts));
    // A question on stdin may still be waiting for a line nobody will type.
    runtime.shutdown_background();
    result
}

async fn run(args: &RunArgs, texts: Vec<(PathBuf, String)>) -> anyhow::Result<ExitCode> {
    let mut manifests = Vec::new();
    for (path, text) in &texts {
        manifests.extend(manifest::parse(text, path, args.namespace.as_deref())?);
    }
    let client = Client::try_default().await.context("connecting to the cluster (kubeconfig)")?;
    for manifest in &mut manifests {
        manifest.settle_namespace(client.default_namespace());
    }
    let mut runs = Vec::new();
    for manifest in &manifests {
        match start(&client, manifest, args.replace).await {
            Ok(run) => {
                eprintln!("{run} started in namespace {}", run.namespace);
                runs.push(run);
            }
            Err(e) if runs.is_empty() => return Err(e),
            Err(e) => {
                let started: Vec<String> = runs.iter().map(|r| format!("{r} -n {}", r.namespace)).collect();
                return Err(e.context(format!("already started (still running): {}", started.join(", "))));
            }
        }
    }
    if !args.wait {
        for run in &runs {
            eprintln!("read its report once it ends: chaoslab report {run} -n {}", run.namespace);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let followed = follow(&client, &runs, args).await?;
    if followed.ended == Ended::Left {
        for run in &runs {
            eprintln!(
                "left running: {run} -n {} (chaoslab report {run} -n {} once it ends)",
                run.namespace, run.namespace
            );
        }
        return Ok(ExitCode::from(130));
    }
    let mut reports = Vec::new();
    for (run, view) in runs.iter().zip(&followed.views) {
        reports.push(report_of(&client, run, view.as_ref()).await);
    }
    print_reports(&reports, args.output)?;
    for (run, view) in runs.iter().zip(&followed.views) {
        if view.as_ref().is_some_and(|v| v.run.report_ref.is_some()) {
            eprintln!(
                "the whole report, charts inline: chaoslab report {run} -n {} -o html > {}.html",
                run.namespace, run.name
            );
        }
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit::render(&reports)).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote JUnit XML to {}", path.display());
    }
    if followed.ended == Ended::TimedOut {
        eprintln!(
            "timed out after {}: the runs still going were aborted",
            args.timeout.map(|t| t.to_string()).unwrap_or_default()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(report_cli::exit_code(worst(reports.iter().map(|r| r.verdict))))
}

/// Creates the experiment (deleting one of the same name first with `--replace`).
async fn start(client: &Client, manifest: &Manifest, replace: bool) -> anyhow::Result<RunRef> {
    let ns = manifest.object.metadata.namespace.clone().unwrap_or_default();
    let kind = manifest.kind;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &kind.api_resource());
    let name = manifest.object.metadata.name.clone().unwrap_or_default();
    let refused = |e: kube::Error| match e {
        kube::Error::Api(status) => anyhow::anyhow!("{}: the API server refused it: {}", manifest.doc, status.message),
        other => anyhow::Error::new(other).context(format!("{}: creating {kind} {ns}/{name}", manifest.doc)),
    };
    let created = match api.create(&PostParams::default(), &manifest.object).await {
        Ok(created) => created,
        Err(kube::Error::Api(status)) if status.code == 409 && replace => {
            remove(&api, &name).await.with_context(|| format!("{}: replacing {kind} {ns}/{name}", manifest.doc))?;
            api.create(&PostParams::default(), &manifest.object).await.map_err(refused)?
        }
        Err(kube::Error::Api(status)) if status.code == 409 => anyhow::bail!(
            "{}: {kind} {ns}/{name} exists already, and an experiment runs once: add --replace to delete it and run \
             it again, or read its report with chaoslab report {}/{name} -n {ns}",
            manifest.doc,
            kind.as_str().to_ascii_lowercase()
        ),
        Err(e) => return Err(refused(e)),
    };
    Ok(RunRef { kind, namespace: ns, name: created.name_any() })
}

/// Deletes `name` and waits until it is gone (its finalizer reverts whatever it still holds).
async fn remove(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<()> {
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..DeleteParams::default() };
    api.delete(name, &params).await.context("deleting it")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while api.get_opt(name).await.context("waiting for it to go")?.is_some() {
        if Instant::now() > deadline {
            anyhow::bail!(
                "it was still there 120s after its deletion: is the chaoslab operator running to remove its finalizer?"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// How following the runs ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Every run finished (on its own, or aborted by the person).
    Finished,
    /// `--timeout` passed; the runs still going were aborted.
    TimedOut,
    /// Interrupted, and the runs were left to end on their own.
    Left,
}

struct Followed {
    ended: Ended,
    /// Each run's last state (`None` if it was never read).
    views: Vec<Option<RunView>>,
}

/// Follows `runs` until every one has finished and has its report, showing the live lines,
/// handling Ctrl-C, SIGTERM and `--timeout`.
async fn follow(client: &Client, runs: &[RunRef], args: &RunArgs) -> anyhow::Result<Followed> {
    let began = Instant::now();
    let deadline = args.timeout.map(|t| tokio::time::Instant::now() + t.0);
    let mut screen = Screen::new(std::io::stderr().is_terminal());
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut views: Vec<Option<RunView>> = vec![None; runs.len()];
    let mut seen_finished: Vec<Option<Instant>> = vec![None; runs.len()];
    let mut failures = 0u32;
    let mut hinted = false;
    let mut stopping: Option<Instant> = None;
    let mut ended = Ended::Finished;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = interrupt.recv() => {
                // A second Ctrl-C while the aborted runs end stops waiting for them.
                if stopping.is_some() || !abort_wanted(&mut screen, runs, args.abort_on_interrupt, &mut interrupt).await {
                    screen.clear();
                    return Ok(Followed { ended: Ended::Left, views });
                }
                abort_all(client, runs, &views, &mut screen).await;
                stopping = Some(Instant::now());
            }
            _ = terminate.recv() => {
                if stopping.is_none() {
                    if !args.abort_on_interrupt {
                        screen.clear();
                        return Ok(Followed { ended: Ended::Left, views });
                    }
                    abort_all(client, runs, &views, &mut screen).await;
                    stopping = Some(Instant::now());
                }
            }
            _ = sleep_until(deadline), if stopping.is_none() => {
                screen.say("--timeout passed: aborting the runs still going");
                abort_all(client, runs, &views, &mut screen).await;
                stopping = Some(Instant::now());
                ended = Ended::TimedOut;
            }
        }
        let mut lines = Vec::new();
        let mut states = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            if !done(views[i].as_ref(), seen_finished[i]) {
                match cluster::view(client, run).await {
                    Ok(Some(view)) => {
                        failures = 0;
                        if view.finished() && seen_finished[i].is_none() {
                            seen_finished[i] = Some(Instant::now());
                        }
                        views[i] = Some(view);
                    }
                    Ok(None) => anyhow::bail!("{run} in {} was deleted while it was followed", run.namespace),
                    Err(e) => {
                        failures += 1;
                        if failures >= MAX_READ_FAILURES {
                            return Err(
                                anyhow::Error::new(e).context(format!("reading {run} {failures} times in a row"))
                            );
                        }
                    }
                }
            }
            let view = views[i].clone().unwrap_or_default();
            if !hinted && view.run.phase.is_none() && began.elapsed() > NO_OPERATOR_HINT {
                hinted = true;
                screen.say(&format!(
                    "{run} has no status after {}s: is the chaoslab operator running and watching {}?",
                    NO_OPERATOR_HINT.as_secs(),
                    run.namespace
                ));
            }
            let figures = if view.finished() { None } else { cluster::live_figures(client, run).await };
            let elapsed = match (&view.run.started_at, &view.run.finished_at) {
                (Some(from), Some(to)) => to.0.duration_since(from.0).unsigned_abs(),
                _ => began.elapsed(),
            };
            lines.push(live::line(run, &view, elapsed, figures.as_ref()));
            states.push(format!("{} {}", cluster::state_word(&view), view.stage.as_deref().unwrap_or_default()));
        }
        screen.show(&lines, &states);
        let all_done = views.iter().zip(&seen_finished).all(|(v, seen)| done(v.as_ref(), *seen));
        if all_done || stopping.is_some_and(|at| at.elapsed() > ABORT_GRACE) {
            screen.clear();
            return Ok(Followed { ended, views });
        }
    }
}

/// A run is done once finished with its report referenced, or finished a while without one.
fn done(view: Option<&RunView>, seen_finished: Option<Instant>) -> bool {
    match (view, seen_finished) {
        (Some(view), Some(seen)) => view.run.report_ref.is_some() || seen.elapsed() > REPORT_GRACE,
        _ => false,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether an interrupt should abort the runs: yes with `--abort-on-interrupt`; a person at a
/// terminal is asked (a second Ctrl-C means no); anywhere else no.
async fn abort_wanted(
    screen: &mut Screen,
    runs: &[RunRef],
    abort_on_interrupt: bool,
    interrupt: &mut tokio::signal::unix::Signal,
) -> bool {
    if abort_on_interrupt {
        return true;
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return false;
    }
    let names: Vec<String> = runs.iter().map(ToString::to_string).collect();
    screen.say(&format!("Abort {} (every fault is reverted at once)? [y/N] ", names.join(", ")));
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        answer = answer => matches!(answer, Ok(Ok(line)) if line.trim().eq_ignore_ascii_case("y") || line.trim().eq_ignore_ascii_case("yes")),
        _ = interrupt.recv() => false,
    }
}

/// Asks the operator to abort every run not finished yet.
async fn abort_all(client: &Client, runs: &[RunRef], views: &[Option<RunView>], screen: &mut Screen) {
    for (run, view) in runs.iter().zip(views) {
        if view.as_ref().is_some_and(RunView::finished) {
            continue;
        }
        match cluster::abort(client, run).await {
            Ok(()) => screen.say(&format!("{run}: abort asked; the operator reverts its faults")),
            Err(e) => {
                screen.say(&format!("{run}: could not ask for the abort ({e}); its faults still end at their expiry"))
            }
        }
    }
}

/// The run's stored report, or what its status says when there is none.
async fn report_of(client: &Client, run: &RunRef, view: Option<&RunView>) -> Report {
    let view = view.cloned().unwrap_or_default();
    if let Some(reference) = &view.run.report_ref {
        match cluster::stored_report(client, run, &reference.name).await {
            Ok(report) => return report,
            Err(e) => eprintln!("{run}: its report could not be read ({e:#}); showing its status instead"),
        }
    }
    cluster::summary_report(run, &view)
}

fn print_reports(reports: &[Report], format: Summary) -> anyhow::Result<()> {
    match (format, reports) {
        (Summary::Json, [one]) => print!("{}", report_cli::render(one, Format::Json)?),
        (Summary::Json, several) => {
            println!("{}", serde_json::to_string_pretty(several).context("rendering JSON")?);
        }
        (_, reports) => {
            let pages: Vec<String> = reports.iter().map(|r| markdown::render(r, &[])).collect();
            print!("{}", pages.join("\n"));
        }
    }
    Ok(())
}

/// The verdict that decides the exit code of several: a failure first (1), then anything
/// unproven (2), and Pass only when every run passed.
fn worst(verdicts: impl IntoIterator<Item = Option<Verdict>>) -> Option<Verdict> {
    let verdicts: Vec<Option<Verdict>> = verdicts.into_iter().collect();
    let order = [Some(Verdict::Fail), Some(Verdict::Aborted), Some(Verdict::Error), None, Some(Verdict::Inconclusive)];
    order.into_iter().find(|v| verdicts.contains(v)).unwrap_or(if verdicts.is_empty() {
        None
    } else {
        Some(Verdict::Pass)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_decides_the_exit_code() {
        let code =
            |verdicts: &[Option<Verdict>]| format!("{:?}", report_cli::exit_code(worst(verdicts.iter().copied())));
        let (pass, fail, unproven) = (
            format!("{:?}", ExitCode::SUCCESS),
            format!("{:?}", ExitCode::from(1)),
            format!("{:?}", ExitCode::from(2)),
        );
        assert_eq!(code(&[Some(Verdict::Pass), Some(Verdict::Pass)]), pass);
        assert_eq!(code(&[Some(Verdict::Pass), Some(Verdict::Inconclusive)]), unproven);
        assert_eq!(code(&[Some(Verdict::Error), Some(Verdict::Fail)]), fail, "a failure outranks an error");
        assert_eq!(code(&[Some(Verdict::Pass), Some(Verdict::Aborted)]), fail);
        assert_eq!(code(&[Some(Verdict::Pass), None]), unproven);
        assert_eq!(code(&[]), unproven, "nothing ran, nothing passed");
    }
}
