//! The report as Markdown: the verdict and the expectations first, then recovery, the breaker,
//! each phase, each fault, the Little's-law check and the record. Plain enough to read in a
//! terminal; GitHub and browsers render its tables.

use std::fmt::Write as _;

use super::{Report, clock};
use crate::api::figures::PhaseResult;

/// The names of the chart files a report directory holds next to `report.md`.
pub const CHART_FILES: [(&str, &str); 3] =
    [("traffic.svg", "Throughput and errors"), ("latency.svg", "Latency"), ("replicas.svg", "Replicas")];

/// Renders `report`; `charts` lists the chart files written beside it, linked at the end.
pub fn render(report: &Report, charts: &[&str]) -> String {
    let mut out = String::new();
    let _ = write_report(&mut out, report, charts);
    out
}

fn write_report(out: &mut String, r: &Report, charts: &[&str]) -> std::fmt::Result {
    let scope = r.namespace.as_deref().map(|ns| format!("{ns}/")).unwrap_or_default();
    writeln!(out, "# {} {scope}{}: {}", r.kind, r.name, r.verdict_word())?;
    writeln!(out)?;
    if let Some(message) = &r.message {
        writeln!(out, "> {message}")?;
        writeln!(out)?;
    }
    if let Some(abort) = &r.aborted_by {
        writeln!(out, "Aborted by `{}` at {}, on {}.", abort.rule, clock(&abort.at), abort.observed.join(", "))?;
        writeln!(out)?;
    }

    writeln!(out, "## Expectations")?;
    writeln!(out)?;
    if r.expectations.is_empty() {
        writeln!(out, "None were judged.")?;
    } else {
        writeln!(out, "| Expectation | Observed | Threshold | Result |")?;
        writeln!(out, "|---|---|---|---|")?;
        for e in &r.expectations {
            let result = match (&e.message, e.passed) {
                (_, true) => "pass".to_owned(),
                (Some(why), false) => format!("FAIL: {}", cell(why)),
                (None, false) => "FAIL".to_owned(),
            };
            writeln!(
                out,
                "| `{}` | {} | {} | {result} |",
                cell(&e.expression),
                e.observed.as_deref().map(cell).unwrap_or_else(|| "-".into()),
                e.threshold.as_deref().map(cell).unwrap_or_else(|| "-".into()),
            )?;
        }
    }
    writeln!(out)?;

    if let Some(recovery) = &r.recovery {
        writeln!(out, "## Recovery")?;
        writeln!(out)?;
        let detect = recovery.time_to_detect_seconds.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "never".into());
        let recover = recovery
            .time_to_recover_seconds
            .map(|s| format!("{s:.1} s"))
            .unwrap_or_else(|| "not within the run".into());
        writeln!(out, "- Time to detect (injection to the first second that broke the SLO): {detect}")?;
        writeln!(out, "- Time to recover (the faults' end to the SLO holding again): {recover}")?;
        writeln!(out)?;
    }

    if let Some(b) = &r.breaker {
        writeln!(out, "## Circuit breaker")?;
        writeln!(out)?;
        writeln!(out, "- Opened after: {}", b.opens_after.as_deref().unwrap_or("never"))?;
        writeln!(out, "- Closed after the heal: {}", b.closes_after.as_deref().unwrap_or("never"))?;
        match (b.dependency_calls_baseline, b.dependency_calls_open) {
            (Some(base), Some(open)) if base > 0.0 => writeln!(
                out,
                "- Calls reaching the dependency: {base:.1}/s in the baseline, {open:.1}/s while open ({:.1} % fewer)",
                (1.0 - open / base) * 100.0
            )?,
            (base, open) => writeln!(
                out,
                "- Calls reaching the dependency: {} in the baseline, {} while open",
                per_second(base),
                per_second(open)
            )?,
        }
        writeln!(out)?;
    }

    if !r.phases.is_empty() {
        writeln!(out, "## Phases")?;
        writeln!(out)?;
        writeln!(out, "| Phase | Window | Throughput | p50 | p99 | Errors |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for p in &r.phases {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                p.name.as_str(),
                window(r, Some(&p.started_at), p.finished_at.as_ref()),
                p.throughput.map(|t| format!("{t:.1} req/s")).unwrap_or_else(|| "-".into()),
                p.latency.as_ref().map(|l| millis(l.p50_ms)).unwrap_or_else(|| "-".into()),
                p.latency.as_ref().map(|l| millis(l.p99_ms)).unwrap_or_else(|| "-".into()),
                p.error_rate.map(percent).unwrap_or_else(|| "-".into()),
            )?;
        }
        writeln!(out)?;
    }

    if !r.faults.is_empty() {
        writeln!(out, "## Faults")?;
        writeln!(out)?;
        writeln!(out, "| Fault | Active | Effect |")?;
        writeln!(out, "|---|---|---|")?;
        for f in &r.faults {
            let effect = match (f.observed, &f.effect) {
                (_, Some(evidence)) => cell(evidence),
                (Some(false), None) => "none observed".into(),
                _ => "-".into(),
            };
            writeln!(
                out,
                "| {} | {} | {effect} |",
                cell(&f.name),
                window(r, f.started_at.as_ref(), f.reverted_at.as_ref())
            )?;
        }
        writeln!(out)?;
    }

    let little: Vec<(&PhaseResult, f64)> = r.phases.iter().filter_map(|p| Some((p, in_flight(p)?))).collect();
    if !little.is_empty() {
        writeln!(out, "## Little's law")?;
        writeln!(out)?;
        writeln!(
            out,
            "Throughput × mean latency = the requests in flight on average (L = λW). Near the limit, \
             requests queue (closed model) or are dropped (open model)."
        )?;
        writeln!(out)?;
        writeln!(out, "| Phase | Throughput × mean latency | In flight | Limit |")?;
        writeln!(out, "|---|---|---|---|")?;
        for (p, l) in little {
            let mean = p.latency.as_ref().map(|l| l.mean_ms).unwrap_or_default();
            let limit = match r.record.concurrency_limit {
                Some(limit) if l >= f64::from(limit) * 0.9 => format!("{limit} (at the limit)"),
                Some(limit) => limit.to_string(),
                None => "-".into(),
            };
            writeln!(
                out,
                "| {} | {:.1} req/s × {} | {l:.2} | {limit} |",
                p.name.as_str(),
                p.throughput.unwrap_or_default(),
                millis(mean)
            )?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Record")?;
    writeln!(out)?;
    let rec = &r.record;
    writeln!(out, "- Environment: {}", rec.environment)?;
    writeln!(out, "- Target: {}", rec.target)?;
    writeln!(out, "- Load: {}", rec.load)?;
    if let Some(seed) = rec.seed {
        writeln!(out, "- Seed: {seed}")?;
    }
    if let (Some(start), Some(end)) = (&r.started_at, &r.finished_at) {
        writeln!(out, "- Load started {}, run finished {}", clock(start), clock(end))?;
    }
    writeln!(out, "- chaoslab {} (report schema {})", rec.chaoslab_version, r.schema)?;

    if !charts.is_empty() {
        writeln!(out)?;
        writeln!(out, "## Charts")?;
        for file in charts {
            let title = CHART_FILES.iter().find(|(f, _)| f == file).map(|(_, t)| *t).unwrap_or(file);
            writeln!(out)?;
            writeln!(out, "![{title}]({file})")?;
        }
    }
    Ok(())
}

/// The average requests in flight in a phase, by Little's law.
pub fn in_flight(p: &PhaseResult) -> Option<f64> {
    Some(p.throughput? * p.latency.as_ref()?.mean_ms / 1000.0)
}

/// `from–to` in seconds since the load's start (`8.0s–18.0s`).
fn window(
    r: &Report,
    from: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    to: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> String {
    let at = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.and_then(|t| r.offset(t)).map(|s| format!("{s:.1}s")).unwrap_or_else(|| "?".into())
    };
    match (from, to) {
        (None, _) => "not started".into(),
        (Some(_), None) => format!("{}–", at(from)),
        _ => format!("{}–{}", at(from), at(to)),
    }
}

/// Milliseconds to a sensible precision (`0.42 ms`, `12.5 ms`, `212 ms`).
pub fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A fraction as a percentage (`1.2 %`).
pub fn percent(fraction: f64) -> String {
    format!("{:.1} %", fraction * 100.0)
}

fn per_second(calls: Option<f64>) -> String {
    calls.map(|c| format!("{c:.1}/s")).unwrap_or_else(|| "unknown".into())
}

/// Text safe in a table cell: no pipes, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
