//! `chaoslab report`: renders a stored report (a `report.json`, or a directory holding one) as
//! Markdown, JSON, HTML or SVG, to the terminal or into a directory; and the report files every
//! command that finishes a run writes (`report.json`, `report.md`, the charts, `report.html`).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::cluster::{self, RunRef};
use crate::{
    api::{ExperimentKind, Verdict},
    report::{self, Report, charts, html, markdown},
};

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The report to render: `<kind>/<name>` of a finished experiment in the cluster (its
    /// `status.reportRef`), a report.json, or a directory holding one (what `chaoslab lab --out`
    /// writes).
    #[arg(value_name = "REPORT", required_unless_present = "schema")]
    pub from: Option<String>,
    /// The experiment's namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// What to print: md (the summary), json (report.json), html (one self-contained page with
    /// the charts inline) or svg (the charts, one after another).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Md)]
    pub output: Format,
    /// Write every form (report.json, report.md, the SVG charts, report.html) into this
    /// directory instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the JSON Schema of report.json and exit.
    #[arg(long, conflicts_with_all = ["from", "out", "namespace"])]
    pub schema: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Json,
    Html,
    Svg,
}

/// What a command that ends a run prints at the end (`chaoslab run`, `chaoslab lab`): the forms
/// that read well in a terminal or a pipe; the rest is `chaoslab report`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Summary {
    Md,
    Json,
}

impl From<Summary> for Format {
    fn from(summary: Summary) -> Format {
        match summary {
            Summary::Md => Format::Md,
            Summary::Json => Format::Json,
        }
    }
}

pub fn main(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.schema {
        print!("{}", report::json_schema().context("rendering the schema")?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(from) = args.from else { anyhow::bail!("REPORT is required: a report.json or a directory holding one") };
    let path = PathBuf::from(&from);
    let report = match from.split_once('/') {
        Some((kind, name)) if !path.exists() && !kind.is_empty() && !name.is_empty() && !name.contains('/') => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(from_cluster(kind, name, args.namespace.as_deref()))?
        }
        _ => read(&path)?,
    };
    match &args.out {
        Some(dir) => {
            let written = write_all(&report, dir)?;
            eprintln!("wrote {} into {}", written.join(", "), dir.display());
        }
        None => print!("{}", render(&report, args.output)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the report of `kind/name` from the cluster: the ConfigMap its `status.reportRef` names.
async fn from_cluster(kind: &str, name: &str, namespace: Option<&str>) -> anyhow::Result<Report> {
    let Some(kind) = ExperimentKind::from_name(kind) else {
        anyhow::bail!("kind {kind:?}: allowed are {}", ExperimentKind::allowed_names())
    };
    let client = kube::Client::try_default().await.context("connecting to the cluster (kubeconfig)")?;
    let namespace = namespace.map(str::to_owned).unwrap_or_else(|| client.default_namespace().to_owned());
    let run = RunRef { kind, namespace, name: name.to_owned() };
    let ns = &run.namespace;
    let view = cluster::view(&client, &run).await.with_context(|| format!("reading {kind} {ns}/{name}"))?;
    let Some(view) = view else { anyhow::bail!("{kind} {ns}/{name} does not exist") };
    let Some(reference) = view.run.report_ref else {
        anyhow::bail!(
            "{run} in {ns} has no report yet (status.reportRef is empty): it is not finished, or its kind writes none yet"
        )
    };
    cluster::stored_report(&client, &run, &reference.name).await
}

/// Reads a report.json (or the one in a directory), refusing another schema.
pub fn read(from: &Path) -> anyhow::Result<Report> {
    let path = if from.is_dir() { from.join("report.json") } else { from.to_path_buf() };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// A report from its JSON, refusing another schema; `source` names where it came from.
pub(crate) fn parse(text: &str, source: &str) -> anyhow::Result<Report> {
    let value: serde_json::Value = serde_json::from_str(text).with_context(|| format!("{source} is not JSON"))?;
    match value.get("schema").and_then(|s| s.as_str()) {
        Some(report::SCHEMA) => {}
        other => anyhow::bail!(
            "{source}: schema is {}, this chaoslab reads {}",
            other.map(|s| format!("{s:?}")).unwrap_or_else(|| "missing".into()),
            report::SCHEMA
        ),
    }
    serde_json::from_value(value).with_context(|| format!("{source} is not a chaoslab report"))
}

/// `report` in one form, as printed.
pub fn render(report: &Report, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Md => markdown::render(report, &[]),
        Format::Json => report.to_json().context("rendering JSON")? + "\n",
        Format::Html => html::render(report, &charts::render_all(report)?),
        Format::Svg => charts::render_all(report)?.into_iter().map(|(_, svg)| svg + "\n").collect(),
    })
}

/// Writes every form of `report` into `dir` (created if missing); returns the file names.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let charts = charts::render_all(report)?;
    let names: Vec<&str> = charts.iter().map(|(name, _)| *name).collect();
    let mut files = vec![
        ("report.json".to_owned(), report.to_json().context("rendering JSON")? + "\n"),
        ("report.md".to_owned(), markdown::render(report, &names)),
        ("report.html".to_owned(), html::render(report, &charts)),
    ];
    files.extend(charts.into_iter().map(|(name, svg)| (name.to_owned(), svg)));
    for (name, text) in &files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(name, _)| name).collect())
}

/// The exit code of a finished run: 0 Pass, 1 Fail or Aborted, 2 Inconclusive, Error or none.
pub fn exit_code(verdict: Option<Verdict>) -> ExitCode {
    match verdict {
        Some(Verdict::Pass) => ExitCode::SUCCESS,
        Some(Verdict::Fail | Verdict::Aborted) => ExitCode::from(1),
        Some(Verdict::Inconclusive | Verdict::Error) | None => ExitCode::from(2),
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use super::exit_code;
    use crate::api::Verdict;

    #[test]
    fn exit_codes_follow_the_verdict() {
        let code = |v| format!("{:?}", exit_code(v));
        assert_eq!(code(Some(Verdict::Pass)), format!("{:?}", ExitCode::SUCCESS));
        for failed in [Verdict::Fail, Verdict::Aborted] {
            assert_eq!(code(Some(failed)), format!("{:?}", ExitCode::from(1)), "{failed:?}");
        }
        for undecided in [Some(Verdict::Inconclusive), Some(Verdict::Error), None] {
            assert_eq!(code(undecided), format!("{:?}", ExitCode::from(2)), "{undecided:?}");
        }
    }
}
