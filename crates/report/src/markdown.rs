//! The report as Markdown: the verdict and the expectations first, then recovery, the breaker,
//! a LoadTest's figures, a PodKill's targets, a ServiceFault's steps and proxy, each phase,
//! each fault, the Little's-law check and the record. Plain enough to read in a
//! terminal; GitHub and browsers render its tables.

use std::fmt::Write as _;

use super::{LoadTestFigures, PodKillFigures, Report, ServiceFaultFigures, clock};
use crate::api::{figures::LatencySummary, podkill::KillAction};

/// The names of the chart files a report directory holds next to `report.md`.
pub const CHART_FILES: [(&str, &str); 4] = [
    ("traffic.svg", "Throughput and errors"),
    ("latency.svg", "Latency"),
    ("replicas.svg", "Replicas"),
    ("kills.svg", "Kill to replacement Ready"),
];

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

    if let Some(load) = &r.load_test {
        write_load_test(out, r, load)?;
    }
    if let Some(kills) = &r.pod_kill {
        write_pod_kill(out, kills)?;
    }
    if let Some(fault) = &r.service_fault {
        write_service_fault(out, r, fault)?;
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

    // Per phase for the judged kinds; over the whole run for a LoadTest.
    let mut little: Vec<(&str, f64, f64, f64)> = r
        .phases
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.throughput?, p.latency.as_ref()?.mean_ms, in_flight(p)?)))
        .collect();
    if let Some(load) = &r.load_test
        && let (Some(l), Some(latency)) = (load.littles_law_concurrency, &load.latency)
        && latency.mean_ms > 0.0
    {
        // The status keeps L and the mean latency; the throughput it was computed from is L / W.
        little.push(("whole run", l * 1000.0 / latency.mean_ms, latency.mean_ms, l));
    }
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
        for (name, throughput, mean, l) in little {
            let limit = match r.record.concurrency_limit {
                Some(limit) if l >= f64::from(limit) * 0.9 => format!("{limit} (at the limit)"),
                Some(limit) => limit.to_string(),
                None => "-".into(),
            };
            writeln!(out, "| {name} | {throughput:.1} req/s × {} | {l:.2} | {limit} |", millis(mean))?;
        }
        writeln!(out)?;
    }

    writeln!(out, "## Record")?;
    writeln!(out)?;
    let rec = &r.record;
    writeln!(out, "- Environment: {}", rec.environment)?;
    // A summary built from a run's status (no stored report) knows no target: no empty line.
    if !rec.target.is_empty() {
        writeln!(out, "- Target: {}", rec.target)?;
    }
    if !rec.load.is_empty() {
        writeln!(out, "- Load: {}", rec.load)?;
    }
    if let Some(seed) = rec.seed {
        writeln!(out, "- Seed: {seed}")?;
    }
    if let (Some(start), Some(end)) = (&r.started_at, &r.finished_at) {
        let what = if rec.load.is_empty() { "Run" } else { "Load" };
        writeln!(out, "- {what} started {}, run finished {}", clock(start), clock(end))?;
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

/// A LoadTest's figures over the run, its requests by outcome, capacity, steps and runners.
fn write_load_test(out: &mut String, r: &Report, load: &LoadTestFigures) -> std::fmt::Result {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    writeln!(out, "## Load")?;
    writeln!(out)?;
    writeln!(out, "| Figure | Value |")?;
    writeln!(out, "|---|---|")?;
    writeln!(out, "| Target rate | {} |", or_dash(load.target_rate.map(|t| format!("{t:.1} req/s"))))?;
    writeln!(out, "| Achieved rate | {} |", or_dash(load.achieved_rate.map(|a| format!("{a:.1} req/s"))))?;
    writeln!(out, "| Error rate | {} |", or_dash(load.error_rate.map(percent)))?;
    if let Some(l) = &load.latency {
        writeln!(out, "| Latency | {} |", latency_line(l, ", "))?;
    }
    if let Some(l) = load.littles_law_concurrency {
        let limit = r.record.concurrency_limit.map(|c| format!(" (limit {c})")).unwrap_or_default();
        writeln!(out, "| In flight on average (Little's law) | {l:.2}{limit} |")?;
    }
    writeln!(out)?;
    if let Some(c) = &load.requests {
        writeln!(out, "### Requests by outcome")?;
        writeln!(out)?;
        writeln!(out, "| Sent | OK | Connect | Timeout | 4xx | 5xx | Other status | Body | Dropped |")?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.total, c.ok, c.connect, c.timeout, c.status4xx, c.status5xx, c.unexpected_status, c.body, c.dropped
        )?;
        writeln!(out)?;
    }
    if let Some(c) = &load.capacity {
        let level = |l: Option<u32>, none: &str| l.map(|l| l.to_string()).unwrap_or_else(|| none.to_owned());
        writeln!(out, "### Capacity")?;
        writeln!(out)?;
        writeln!(out, "- Knee (the highest level that held every threshold): {}", level(c.knee, "none held"))?;
        writeln!(out, "- Broke at: {}", level(c.broke_at, "nothing broke"))?;
        writeln!(out)?;
    }
    if !load.steps.is_empty() {
        writeln!(out, "### Steps")?;
        writeln!(out)?;
        writeln!(out, "| Level | Seconds | Achieved | p50 | p99 | Errors | Held |")?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
        for s in &load.steps {
            let held = match s.held {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            writeln!(
                out,
                "| {} | {}s–{}s | {:.1} req/s | {} | {} | {} | {held} |",
                s.level,
                s.from,
                s.to,
                s.achieved_rate,
                millis(s.p50_ms),
                millis(s.p99_ms),
                percent(s.error_rate)
            )?;
        }
        writeln!(out)?;
    }
    if !load.runners.is_empty() {
        writeln!(out, "### Runners")?;
        writeln!(out)?;
        writeln!(out, "| Runner | Pod | State | Starts | Sent | Note |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for runner in &load.runners {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                runner.index,
                runner.pod.as_deref().map(cell).unwrap_or_else(|| "-".into()),
                cell(&runner.state),
                runner.attempts.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                runner.sent.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                runner.message.as_deref().map(cell).unwrap_or_default(),
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

/// A PodKill's targets: what was done to each and how fast its replacement became Ready.
fn write_pod_kill(out: &mut String, kills: &PodKillFigures) -> std::fmt::Result {
    writeln!(out, "## Targets")?;
    writeln!(out)?;
    if kills.targets.is_empty() {
        writeln!(out, "No pod was chosen.")?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "| Round | Pod | Node | Owner | Action | Killed at | Replacement | Ready at | Recovery |")?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    let micro = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| {
        t.as_ref().map(|t| t.0.strftime("%H:%M:%S%.3fZ").to_string()).unwrap_or_else(|| "-".into())
    };
    for t in &kills.targets {
        let action = match (&t.action, &t.reason) {
            (_, Some(reason)) => format!("{:?}: {}", t.action, cell(reason)),
            (action, None) => format!("{action:?}"),
        };
        let recovery = match (t.recovery_seconds, t.action) {
            (Some(s), _) => format!("{s:.3} s"),
            (None, KillAction::Killed) => format!("{:?}", t.recovery),
            (None, _) => "-".into(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {action} | {} | {} | {} | {recovery} |",
            t.round,
            cell(&t.pod),
            t.node.as_deref().map(cell).unwrap_or_else(|| "-".into()),
            t.owner.as_deref().map(cell).unwrap_or_else(|| "-".into()),
            micro(&t.killed_at),
            t.replacement.as_deref().map(cell).unwrap_or_else(|| "-".into()),
            micro(&t.replacement_ready_at),
        )?;
    }
    writeln!(out)?;
    let killed = kills.killed.unwrap_or_default();
    let unready =
        kills.targets.iter().filter(|t| t.action == KillAction::Killed && t.replacement_ready_at.is_none()).count();
    let deadline = &kills.recovery_deadline;
    let slowest = match kills.max_recovery_seconds {
        Some(max) => format!("the slowest Ready replacement came {max:.3} s after its kill"),
        None => "no replacement became Ready".to_owned(),
    };
    let missing = if unready > 0 && kills.max_recovery_seconds.is_some() {
        format!("; {unready} had no Ready replacement")
    } else {
        String::new()
    };
    writeln!(out, "{killed} pod(s) killed; {slowest}{missing} (deadline {deadline}).")?;
    writeln!(out)?;
    Ok(())
}

/// A ServiceFault's steps, its routes and what its proxy saw.
fn write_service_fault(out: &mut String, r: &Report, fault: &ServiceFaultFigures) -> std::fmt::Result {
    if !fault.steps.is_empty() {
        writeln!(out, "## Steps")?;
        writeln!(out)?;
        writeln!(out, "| Step | At | What |")?;
        writeln!(out, "|---|---|---|")?;
        for s in &fault.steps {
            let at = r.offset(&s.at).map(|o| format!("{o:.1}s")).unwrap_or_else(|| clock(&s.at));
            writeln!(out, "| {} | {at} | {} |", cell(&s.step), cell(&s.message))?;
        }
        writeln!(out)?;
    }
    if !fault.routes.is_empty() {
        writeln!(out, "## Routes")?;
        writeln!(out)?;
        writeln!(out, "| Port | Proxy listens on | Upstream | Faulted |")?;
        writeln!(out, "|---|---|---|---|")?;
        for route in &fault.routes {
            let faulted = if route.faulted { "yes" } else { "no" };
            writeln!(out, "| {} | {} | {} | {faulted} |", cell(&route.port), route.listen, cell(&route.upstream))?;
        }
        writeln!(out)?;
    }
    writeln!(out, "## Proxy")?;
    writeln!(out)?;
    let Some(p) = &fault.proxy else {
        writeln!(out, "The proxy's figures were not read.")?;
        writeln!(out)?;
        return Ok(());
    };
    let counts = |map: &std::collections::BTreeMap<String, u64>| {
        if map.is_empty() {
            "none".to_owned()
        } else {
            map.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    writeln!(out, "| Figure | Value |")?;
    writeln!(out, "|---|---|")?;
    writeln!(out, "| Requests | {} |", p.requests)?;
    writeln!(out, "| Connections | {} |", p.connections)?;
    writeln!(out, "| Faults applied | {} |", counts(&p.faults_applied))?;
    writeln!(out, "| Upstream status | {} |", counts(&p.upstream_status))?;
    writeln!(out, "| Upstream errors | {} |", p.upstream_errors)?;
    writeln!(out, "| Proxy pods read | {} |", p.pods_read)?;
    writeln!(out)?;
    Ok(())
}

/// The average requests in flight in a phase, by Little's law.
pub fn in_flight(p: &crate::api::figures::PhaseResult) -> Option<f64> {
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
/// Every latency figure of `l` in one line, the figures parted by `sep`: the form of a report's
/// table and of `chaoslab load`'s summary.
pub fn latency_line(l: &LatencySummary, sep: &str) -> String {
    [
        ("p50", l.p50_ms),
        ("p90", l.p90_ms),
        ("p95", l.p95_ms),
        ("p99", l.p99_ms),
        ("p99.9", l.p999_ms),
        ("max", l.max_ms),
        ("mean", l.mean_ms),
    ]
    .map(|(name, ms)| format!("{name} {}", millis(ms)))
    .join(sep)
}

/// A latency in milliseconds, with the precision its size deserves: the one style of every
/// report and of the terminal.
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
