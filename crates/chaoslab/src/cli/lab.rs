//! `chaoslab lab [FILE]`: the one command a newcomer runs. It starts the lab app's topology on
//! loopback (frontend → catalog → inventory, each its pods behind a balancer, a proxy in front of
//! inventory), runs a Drill (pod kills included), a CircuitBreakerTrial or an AutoscalingCheck
//! (the frontend's HPA, local) from the file (default: the tour, examples/lab/tour.yaml) with the
//! same engine the operator uses, tells each milestone as it happens, and prints the report.

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::Args;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::{
    report::{self as report_cli, Summary},
    run::RunArgs,
};
use crate::{
    admission::Admitted,
    api::{AutoscalingCheck, CircuitBreakerTrial, Drill, load::LoadProfile, trial::AutoscalingCheckStatus},
    local::{
        LocalTargets, LocalWorld,
        lab::{LabOptions, LabTopology, autoscaling as lab_autoscaling},
        scaling::LocalScaling,
    },
    report::{Record, Report},
    trial::{
        autoscale::watch,
        drive::{Milestone, World as _, WorldError, conduct},
        plan::TrialPlan,
    },
};

/// The drill `chaoslab lab` runs when given no file.
pub const TOUR: &str = include_str!("../../../../examples/lab/tour.yaml");

#[derive(Args, Debug)]
pub struct LabArgs {
    /// A Drill, CircuitBreakerTrial or AutoscalingCheck file (apiVersion chaoslab.dev/v1alpha1);
    /// its Services are the lab's: frontend, catalog and inventory (faults go in front of
    /// inventory; the frontend has the chart's HPA). Default: the tour (examples/lab/tour.yaml).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// What to print at the end: md (the summary) or json (report.json).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Summary::Md)]
    pub output: Summary,
    /// Also write the whole report (report.json, report.md, SVG charts, report.html) here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The seed of the proxy's dice (which requests a percentage fault hits), for the record.
    #[arg(long, default_value_t = 1, conflicts_with = "kube")]
    pub seed: u64,
    /// Run it in the cluster of the current kubectl context instead, against the lab app the
    /// chart installs with `demo.enabled=true` (namespace chaoslab-demo): the drill is started
    /// as `chaoslab run --wait --replace` starts it, and its stored report is printed.
    #[arg(long, conflicts_with = "out")]
    pub kube: bool,
    /// A Service's `chaoslab demo` flags in place of the chart's defaults, as NAME=JSON list:
    /// the list the chart takes as `demo.services.NAME.args` (a lesson's header gives both).
    /// Repeatable; NAME is frontend, catalog or inventory.
    #[arg(long = "service-args", value_name = "NAME=[...]", value_parser = service_args, conflicts_with = "kube")]
    pub service_args: Vec<(String, Vec<String>)>,
    /// false: every pod exits at once on SIGTERM, dropping what it has in flight (the chart's
    /// `demo.gracefulShutdown`).
    #[arg(long, num_args = 0..=1, default_value_t = true, default_missing_value = "true",
          action = clap::ArgAction::Set, conflicts_with = "kube")]
    pub graceful_shutdown: bool,
}

/// `NAME=["--flag","value",...]` of `--service-args`.
fn service_args(text: &str) -> Result<(String, Vec<String>), String> {
    const SERVICES: [&str; 3] = ["frontend", "catalog", "inventory"];
    let (name, list) =
        text.split_once('=').ok_or_else(|| format!("{text:?}: write NAME=[\"--flag\",\"value\",...]"))?;
    if !SERVICES.contains(&name) {
        return Err(format!("unknown service {name:?}; allowed: {}", SERVICES.join(", ")));
    }
    let args = serde_json::from_str(list)
        .map_err(|e| format!("{name}: the flags must be a JSON list of strings, as in the chart's values: {e}"))?;
    Ok((name.to_owned(), args))
}

/// The run a file asks for.
enum Run {
    Drill(Box<Drill>),
    Trial(Box<CircuitBreakerTrial>),
    Scaling(Box<AutoscalingCheck>),
}

impl Run {
    fn parse(text: &str, source: &str) -> anyhow::Result<Run> {
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text).with_context(|| format!("{source} is not YAML"))?;
        let mut runs = documents.into_iter().filter(|d| !d.is_null());
        let (Some(document), None) = (runs.next(), runs.next()) else {
            anyhow::bail!("{source}: one resource per file, a Drill, a CircuitBreakerTrial or an AutoscalingCheck")
        };
        let api_version = document.get("apiVersion").and_then(|k| k.as_str()).unwrap_or_default();
        if api_version != crate::api::API_VERSION {
            anyhow::bail!("{source}: apiVersion is {api_version:?}; allowed: {}", crate::api::API_VERSION);
        }
        match document.get("kind").and_then(|k| k.as_str()).unwrap_or_default() {
            "Drill" | "CircuitBreakerTrial" | "AutoscalingCheck" => {}
            "LoadTest" => anyhow::bail!("{source}: a LoadTest runs with `chaoslab load -f {source}`"),
            other => {
                anyhow::bail!("{source}: kind is {other:?}; allowed: Drill, CircuitBreakerTrial, AutoscalingCheck")
            }
        }
        // Admitted as the cluster admits it (schema, unknown fields, CEL, the operator's checks),
        // so the lab runs nothing the cluster would refuse.
        match crate::admission::admit(&document).map_err(|e| anyhow::anyhow!("{source}: {e}"))? {
            Admitted::Drill(drill) => Ok(Run::Drill(drill)),
            Admitted::CircuitBreakerTrial(trial) => Ok(Run::Trial(trial)),
            Admitted::AutoscalingCheck(check) => Ok(Run::Scaling(check)),
            other => anyhow::bail!("{source}: a {} is not run by the lab", other.kind().as_str()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Run::Drill(_) => "Drill",
            Run::Trial(_) => "CircuitBreakerTrial",
            Run::Scaling(_) => "AutoscalingCheck",
        }
    }

    fn name(&self) -> String {
        let meta = match self {
            Run::Drill(d) => &d.metadata,
            Run::Trial(t) => &t.metadata,
            Run::Scaling(c) => &c.metadata,
        };
        meta.name.clone().unwrap_or_else(|| "unnamed".into())
    }

    fn load(&self) -> &LoadProfile {
        match self {
            Run::Drill(d) => &d.spec.load,
            Run::Trial(t) => &t.spec.load,
            Run::Scaling(c) => &c.spec.load,
        }
    }

    /// The plan of a Drill or a CircuitBreakerTrial; `None` for an AutoscalingCheck, which
    /// follows the HPA instead of a timeline.
    fn plan(&self) -> anyhow::Result<Option<TrialPlan>> {
        match self {
            Run::Drill(d) => TrialPlan::drill(&d.spec).map(Some),
            Run::Trial(t) => TrialPlan::circuit_breaker(&t.spec).map(Some),
            Run::Scaling(_) => Ok(None),
        }
        .map_err(|e| anyhow::anyhow!("spec: {e}"))
    }
}

/// Exit 2 on anything that keeps the run from its verdict (a file refused, a target missing, a
/// run that could not be conducted), as on an Error verdict.
pub fn main(args: LabArgs) -> anyhow::Result<ExitCode> {
    match lab_main(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

fn lab_main(args: LabArgs) -> anyhow::Result<ExitCode> {
    let (text, source) = match &args.file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (TOUR.to_owned(), "the tour".to_owned()),
    };
    let run = Run::parse(&text, &source)?;
    let plan = run.plan()?;
    if args.kube {
        return Ok(in_cluster(&run, args.output, source, text));
    }
    if let Run::Scaling(check) = &run {
        // Refused before any process starts: the lab autoscales what the chart autoscales.
        LocalScaling::hpa_of(&lab_autoscaling(), &check.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    crate::engine::raise_open_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let options = LabOptions {
        seed: args.seed,
        args: args.service_args.iter().cloned().collect(),
        abrupt_shutdown: !args.graceful_shutdown,
    };
    let report = runtime.block_on(lab(&run, plan.as_ref(), &options))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let Some(report) = report else {
        eprintln!("interrupted: the lab's processes are stopped, nothing is left running");
        return Ok(ExitCode::from(130));
    };
    if let Some(dir) = &args.out {
        let written = report_cli::write_all(&report, dir)?;
        eprintln!("wrote {} into {}", written.join(", "), dir.display());
    }
    print!("{}", report_cli::render(&report, args.output.into())?);
    Ok(report_cli::exit_code(report.verdict))
}

/// `chaoslab lab --kube`: the same file through `chaoslab run --wait --replace`, so a person
/// sees the lab's drill end the same way in a cluster.
fn in_cluster(run: &Run, output: Summary, source: String, text: String) -> ExitCode {
    eprintln!("lab: {} {} in the cluster of the current kubectl context", run.kind(), run.name());
    let args = RunArgs {
        files: vec![PathBuf::from(&source)],
        namespace: None,
        wait: true,
        timeout: None,
        junit: None,
        output,
        replace: true,
        abort_on_interrupt: false,
    };
    super::run::start_and_follow(&args, vec![(PathBuf::from(source), text)]).unwrap_or_else(|e| {
        eprintln!(
            "error: {e:#}\nThe lab's Services are the chart's demo app (namespace chaoslab-demo): \
             helm upgrade --install chaoslab charts/chaoslab -n chaoslab-system --create-namespace --set demo.enabled=true"
        );
        ExitCode::from(2)
    })
}

/// Starts the topology, conducts the run and builds its report; `None` on Ctrl-C.
async fn lab(run: &Run, plan: Option<&TrialPlan>, options: &LabOptions) -> anyhow::Result<Option<Report>> {
    let exe = std::env::current_exe().context("finding this binary to start the lab's services")?;
    let topology = LabTopology::start(&exe, options).await?;
    let services: Vec<String> = topology.targets().services.iter().map(|(n, u)| format!("{n} {u}")).collect();
    let pods = topology.targets().pods.describe();
    eprintln!("lab: {}; a proxy in front of inventory; pods: {pods}", services.join(", "));
    let targets = topology.targets().clone();
    let conducted = tokio::select! {
        conducted = conduct_in(run, plan, &targets, options) => conducted,
        _ = tokio::signal::ctrl_c() => {
            topology.stop().await;
            return Ok(None);
        }
    };
    let report = match conducted {
        Ok(report) => report,
        Err(e) => {
            let logs = topology.logs();
            topology.stop().await;
            anyhow::bail!("the run could not be conducted: {e}\nthe lab's last output:\n{logs}");
        }
    };
    topology.stop().await;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    Ok(Some(report))
}

/// Conducts `run` on the lab's `targets`, telling its milestones, and builds its report.
async fn conduct_in(
    run: &Run,
    plan: Option<&TrialPlan>,
    targets: &LocalTargets,
    options: &LabOptions,
) -> Result<Report, WorldError> {
    let started = Instant::now();
    let target = match (&run.load().target.url, &run.load().target.service) {
        (Some(url), _) => url.clone(),
        (None, Some(service)) => {
            let url = targets.services.get(&service.name).cloned().unwrap_or_default();
            format!("{} ({url})", service.name)
        }
        (None, None) => String::new(),
    };
    let record = Record::of_load("local", run.load(), target, Some(options.seed));
    if let (Run::Scaling(check), None) = (run, plan) {
        return check_scaling(check, targets, record).await;
    }
    let Some(plan) = plan else { return Err(WorldError("no plan for this kind".into())) };
    let mut world = LocalWorld::new(targets.clone())?;
    let total = Duration::from_secs(plan.timeline.load_seconds());
    eprintln!("{} {}: {} of load, {} fault(s)", run.kind(), run.name(), seconds(total), plan.faults.len());
    let tell = |m: Milestone| eprintln!("{:>6}  {}", seconds(started.elapsed()), milestone(&m));
    let outcome = conduct(plan, &mut world, tell).await?;
    let measured = world.seconds().await;
    Ok(Report::of_trial(run.kind(), &run.name(), &outcome, &measured, record))
}

/// An AutoscalingCheck on the lab's pods, their local HPA scaling them; each change of the
/// replica counts is told as it happens.
pub async fn check_scaling(
    check: &AutoscalingCheck,
    targets: &LocalTargets,
    record: Record,
) -> Result<Report, WorldError> {
    let started = Instant::now();
    let tell = Box::new(move |st: &AutoscalingCheckStatus| {
        eprintln!("{:>6}  {}", seconds(started.elapsed()), st.run.message.as_deref().unwrap_or_default());
    });
    let (mut world, target) = LocalScaling::new(targets, &check.spec, tell)?;
    let name = check.metadata.name.clone().unwrap_or_else(|| "unnamed".into());
    eprintln!(
        "AutoscalingCheck {name}: {} of load on {}, its HPA {}..{} pods; scale-down watched after it",
        seconds(target.plan.total_duration()),
        check.spec.target.deployment,
        target.min_replicas,
        targets.autoscaling.get(&check.spec.target.deployment).map_or(0, |h| h.max_replicas),
    );
    let mut st = AutoscalingCheckStatus::default();
    st.run.started_at = Some(Time(Timestamp::now()));
    let outcome = watch(&check.spec, &target, &mut world, &mut st).await?;
    st.run.verdict = Some(outcome.verdict);
    st.run.message = Some(outcome.message);
    st.run.finished_at = Some(Time(Timestamp::now()));
    let mut report = Report::of_judged(check, &st.run, &st.judgement, outcome.load_start, &outcome.seconds, record);
    report.namespace = None;
    report.replicas = st.timeline;
    Ok(report)
}

fn milestone(m: &Milestone) -> String {
    match m {
        Milestone::LoadStarted { .. } => "load started".into(),
        Milestone::Injected { fault, .. } => format!("injected {fault}"),
        Milestone::Reverted { fault, .. } => format!("reverted {fault}"),
        Milestone::Aborted { rule, observed } => format!("aborted by {rule} on {}", observed.join(", ")),
        Milestone::LoadStopped { .. } => "load stopped".into(),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::{Run, service_args};

    const TOUR: &str = include_str!("../../../../examples/lab/tour.yaml");

    /// The lab runs nothing the cluster would refuse (issue: `inject: 0s` ran, a misspelled
    /// `abortwhen:` vanished with its rule, an empty selector killed every lab pod).
    #[test]
    fn a_lab_file_is_admitted_as_the_cluster_admits_it() {
        assert!(matches!(Run::parse(TOUR, "tour.yaml"), Ok(Run::Drill(_))));
        let refused = |from: &str, to: &str| {
            assert!(TOUR.contains(from), "the tour has {from:?}");
            match Run::parse(&TOUR.replacen(from, to, 1), "tour.yaml") {
                Ok(_) => panic!("{to:?} was accepted"),
                Err(e) => e.to_string(),
            }
        };
        let e = refused("    inject: 12s", "    inject: 0s");
        assert!(e.starts_with("tour.yaml: ") && e.contains("inject must be from 1s to 1h"), "{e}");
        let e = refused("  phases:", "  abortwhen: [{when: 'errorRate > 50%', for: 2s}]\n  phases:");
        assert!(e.contains("spec.abortwhen: unknown field; allowed here: ") && e.contains("abortWhen"), "{e}");
        let e = refused("  namespace: chaoslab-demo", "  namespace: chaoslab-demo\n  labels: {a: b}\nextra: 1");
        assert!(e.contains("extra: unknown field"), "{e}");
        let e = refused("kind: Drill", "kind: PodKill");
        assert!(e.contains("tour.yaml: kind is \"PodKill\"; allowed: Drill"), "{e}");
    }

    #[test]
    fn service_args_take_a_known_service_and_a_json_list_of_flags() {
        let (name, args) = service_args(r#"catalog=["--latency","100ms"]"#).expect("valid");
        assert_eq!((name.as_str(), args), ("catalog", vec!["--latency".to_owned(), "100ms".to_owned()]));
        let unknown = service_args("checkout=[]").expect_err("unknown");
        assert!(unknown.contains("\"checkout\"") && unknown.contains("frontend, catalog, inventory"), "{unknown}");
        let not_a_list = service_args("catalog=--latency 100ms").expect_err("not JSON");
        assert!(not_a_list.starts_with("catalog: the flags must be a JSON list"), "{not_a_list}");
        assert!(service_args("catalog").expect_err("no =").contains("NAME=["));
    }
}
