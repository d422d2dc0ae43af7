//! What `chaoslab load` shows: the live progress line while it runs, and at the end the summary
//! as a text table or as one JSON document ([`JsonReport`]). Everything is rendered from the
//! run summary; nothing here measures or judges.

use std::{fmt::Write as _, io::Write as _, process::ExitCode, time::Duration};

use serde::Serialize;

use chaoslab_report::markdown::{latency_line, millis};

use crate::{
    api::{
        Verdict,
        figures::{ExpectationResult, LatencySummary, RequestCounts},
        load::{CapacityResult, LoadModel, Preset, Stage},
    },
    cli::load::flags::{Invocation, duration_text},
    engine::Tick,
    load::summary::{FinalSummary, RunSummary, area_between},
};

/// The format version of the JSON document.
pub const JSON_VERSION: u32 = 1;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Ended {
    /// The plan ran to its end.
    Completed,
    /// Ctrl-C stopped it.
    Interrupted,
    /// `--abort-on-fail` stopped it: a threshold could no longer hold.
    Aborted,
    /// The capacity search stopped at the first level that broke a threshold.
    CapacityStopped,
}

/// A run that ended, with everything the summary shows.
#[derive(Debug)]
pub struct Finished {
    pub summary: RunSummary,
    pub end: FinalSummary,
    pub ended: Ended,
    /// Wall time from the start until the engine returned.
    pub elapsed: Duration,
    /// The `spec.abortWhen` rule (a manifest of `-f`) that stopped the run.
    pub aborted_by: Option<AbortedBy>,
}

/// An abort rule that fired: its condition held on each of the last `for` seconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortedBy {
    /// The rule's `when`, as written.
    pub rule: String,
    pub r#for: String,
    /// The value of each of those seconds, in the rule's unit.
    pub observed: Vec<String>,
    /// The second (of intended start) whose sealing fired it.
    pub second: u64,
}

impl AbortedBy {
    pub fn reason(&self) -> String {
        format!("abortWhen {:?} held for {} in a row ({})", self.rule, self.r#for, self.observed.join(", "))
    }
}

impl Finished {
    /// As `chaoslab run` exits: 0 Pass, 1 Fail or aborted, 2 Inconclusive (a threshold that
    /// could not be judged, or no request succeeded); 130 (as for SIGINT) when interrupted.
    pub fn exit_code(&self) -> ExitCode {
        match (self.ended, self.end.verdict) {
            (Ended::Interrupted, _) => ExitCode::from(130),
            (_, Verdict::Pass) => ExitCode::SUCCESS,
            (_, Verdict::Inconclusive | Verdict::Error) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// The live progress line on stderr, and notices (a stop decision, an interrupt).
#[derive(Debug)]
pub struct Progress {
    /// Redraw a line in place once a second (stdout and stderr are terminals, not --quiet).
    interactive: bool,
    /// Print notices at all (not --quiet).
    notices: bool,
    drawn: bool,
    errors: u64,
    dropped: u64,
}

impl Progress {
    pub fn new(interactive: bool, notices: bool) -> Progress {
        Progress { interactive, notices, drawn: false, errors: 0, dropped: 0 }
    }

    /// Redraws the line from the last tick.
    pub fn draw(&mut self, tick: &Tick, summary: &RunSummary) {
        self.errors += tick.live.errors;
        self.dropped += tick.live.dropped;
        if !self.interactive {
            return;
        }
        let line = progress_line(tick, summary, self.errors, self.dropped);
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth stopping the run for.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Prints a notice on its own line, above the progress line.
    pub fn notice(&mut self, text: &str) {
        if !self.notices {
            return;
        }
        self.clear();
        eprintln!("{text}");
    }

    /// Removes the progress line.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

fn progress_line(tick: &Tick, summary: &RunSummary, errors: u64, dropped: u64) -> String {
    let plan = summary.plan();
    let mut line = format!("{} / {}", clock(tick.elapsed), clock(plan.total_duration()));
    let steps = summary.steps();
    if steps.len() > 1
        && let Some(i) = summary.step_at(tick.elapsed)
    {
        let _ = write!(line, "  step {}/{}", i + 1, steps.len());
    }
    let live = &tick.live;
    if summary.model() == LoadModel::Closed {
        let _ = write!(line, "  VUs {:.0}  rate {}", live.level, rate(live.sent as f64));
    } else {
        // `sent` counts the last second of wall time, so the target it is compared with is the
        // plan's mean over that same second, not its level at this instant (they differ on ramps).
        let now = tick.elapsed.as_secs_f64();
        let target = area_between(plan, (now - 1.0).max(0.0), now) / now.clamp(f64::MIN_POSITIVE, 1.0);
        let _ = write!(line, "  target {}  achieved {}", rate(target), rate(live.sent as f64));
    }
    let _ =
        write!(line, "  p99 {}  errors {errors}  dropped {dropped}  in flight {}", latency(live.p99), live.in_flight);
    line
}

/// `12s`, `1m05s`, `1h02m03s`: elapsed time that keeps its width as it grows.
pub(crate) fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

/// A latency as a person reads it, in the reports' one style: `0.41 ms`, `12.3 ms`, `1250 ms`.
pub(crate) fn latency(d: Duration) -> String {
    millis(d.as_secs_f64() * 1e3)
}

pub(crate) fn rate(r: f64) -> String {
    if r >= 100.0 || r.fract() == 0.0 { format!("{r:.0}/s") } else { format!("{r:.1}/s") }
}

pub(crate) fn percent(f: f64) -> String {
    let p = f * 100.0;
    if p == 0.0 || p >= 99.95 {
        format!("{p:.0}%")
    } else if p >= 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}

/// A level of the plan: a rate (open) or VUs (closed).
fn level(model: LoadModel, l: f64) -> String {
    match model {
        LoadModel::Open => rate(l),
        LoadModel::Closed => format!("{l:.0} VUs"),
    }
}

fn preset_name(p: Preset) -> &'static str {
    crate::load::stages::preset_name(p)
}

/// The stages as read aloud: `0→100/s in 10s, 100/s for 20s, 100→0/s in 5s`.
fn stages_text(model: LoadModel, start: u32, stages: &[Stage]) -> String {
    let mut from = start;
    let mut parts = Vec::new();
    for s in stages {
        if s.target == from {
            parts.push(format!("{} for {}", level(model, f64::from(s.target)), s.duration));
        } else {
            parts.push(format!("{}→{} in {}", from, level(model, f64::from(s.target)), s.duration));
        }
        from = s.target;
    }
    parts.join(", ")
}

fn plan_text(invocation: &Invocation) -> String {
    let plan = &invocation.plan;
    let load = &invocation.spec.load;
    let length = duration_text(plan.total_duration());
    match (load.preset, invocation.nominal()) {
        (Some(p), Some(l)) => format!(
            "{} preset around {}: {} stages, {length}",
            preset_name(p),
            level(load.model, f64::from(l)),
            plan.stages.len()
        ),
        _ if plan.stages.len() <= 6 => stages_text(load.model, plan.start, &plan.stages),
        _ => format!("{} stages, {length}", plan.stages.len()),
    }
}

fn ended_text(finished: &Finished) -> String {
    match finished.ended {
        Ended::Completed => "completed".to_owned(),
        Ended::Interrupted => "interrupted (Ctrl-C): the figures cover what ran".to_owned(),
        Ended::Aborted | Ended::CapacityStopped => match &finished.end.stop {
            Some(stop) => format!("stopped early, {stop}"),
            None => "stopped early".to_owned(),
        },
    }
}

fn counts_text(c: &RequestCounts) -> String {
    let classes = [
        (c.connect, "connect"),
        (c.timeout, "timeout"),
        (c.status4xx, "4xx"),
        (c.status5xx, "5xx"),
        (c.unexpected_status, "other status"),
        (c.body, "body"),
    ];
    let failed = c.total.saturating_sub(c.ok);
    let mut text = format!("{} sent: {} ok, {failed} failed", c.total, c.ok);
    let named: Vec<String> = classes.iter().filter(|(n, _)| *n > 0).map(|(n, name)| format!("{n} {name}")).collect();
    if !named.is_empty() {
        let _ = write!(text, " ({})", named.join(", "));
    }
    let _ = write!(text, "; {} dropped", c.dropped);
    if c.dropped > 0 {
        text.push_str(" (not sent: --max-in-flight reached)");
    }
    text
}

/// The summary as a text table.
pub fn text(invocation: &Invocation, finished: &Finished) -> String {
    let end = &finished.end;
    let window = &end.window;
    let f = &window.figures;
    let model = invocation.spec.load.model;
    let total = finished.summary.total();
    let mut out = String::new();
    let model_name = match model {
        LoadModel::Open => "open model",
        LoadModel::Closed => "closed model",
    };
    let _ = writeln!(out, "chaoslab load {} ({model_name})", invocation.url);
    if let Some(source) = &invocation.source {
        let _ = writeln!(out, "{:<15}{source}", "from");
    }
    let _ = writeln!(out, "{:<15}{}", "plan", plan_text(invocation));
    let _ = writeln!(
        out,
        "{:<15}{} of {}: {}",
        "ran",
        tenths(end.length),
        tenths(invocation.plan.total_duration()),
        ended_text(finished)
    );
    out.push('\n');
    let _ = writeln!(out, "{:<15}{}", "requests", counts_text(&total.counts));
    let rates = match f.target_rate {
        Some(target) if target > 0.0 => format!(
            "achieved {} of {} asked ({}); answered {}",
            rate(f.achieved_rate),
            rate(target),
            percent(f.achieved_rate / target),
            rate(f.rps)
        ),
        _ => format!("achieved {}; answered {}", rate(f.achieved_rate), rate(f.rps)),
    };
    let _ = writeln!(out, "{:<15}{rates}", "rate");
    let _ = writeln!(out, "{:<15}{}", "errors", percent(f.error_rate));
    let _ = writeln!(out, "{:<15}{}", "latency", latency_line(&f.latency_summary(), "  "));
    let origin = match model {
        LoadModel::Open => "counted from each request's intended start (coordinated-omission free)",
        // A VU sends when its previous answer came: the intended start is the send, and a stall
        // shows as fewer requests rather than longer latencies.
        LoadModel::Closed => "counted from the send: virtual users wait for answers, so a stall shows as a lower rate",
    };
    let _ = writeln!(out, "{:<15}{origin}", "");
    let _ = writeln!(
        out,
        "{:<15}p50 {}  p99 {}  (from the actual send)",
        "service time",
        millis(window.service.p50_ms),
        millis(window.service.p99_ms)
    );
    match model {
        LoadModel::Open => {
            let _ = writeln!(
                out,
                "{:<15}mean {}  max {}  (actual send − intended start: a late generator shows here)",
                "scheduler lag",
                latency(window.lag_mean),
                latency(window.lag_max)
            );
        }
        LoadModel::Closed => {
            let _ = writeln!(out, "{:<15}none: a virtual user's request is due when it is sent", "scheduler lag");
        }
    }
    let bound = match model {
        LoadModel::Open => format!(
            "in flight {:.1} of at most {}",
            window.in_flight,
            invocation.spec.load.max_in_flight.unwrap_or(crate::engine::DEFAULT_MAX_IN_FLIGHT)
        ),
        LoadModel::Closed => format!("in flight {:.1} with {} VUs", window.in_flight, vus_text(invocation)),
    };
    let _ =
        writeln!(out, "{:<15}{:.1} by Little's law (rate × mean latency); {bound}", "concurrency", window.concurrency);
    if window.clamped > 0 {
        let _ = writeln!(out, "{:<15}{} values above 60s were recorded as 60s", "clamped", window.clamped);
    }

    let show_steps = invocation.spec.load.preset.is_some() || invocation.spec.load.stages.is_some();
    // A step the run never reached has nothing to show; one cut short by a stop decision only
    // holds what was sent while the engine wound down, but one cut short by Ctrl-C is shown.
    let steps: Vec<_> = finished
        .summary
        .steps()
        .iter()
        .filter(|s| s.bucket.counts.total + s.bucket.counts.dropped > 0)
        .filter(|s| s.complete || finished.ended == Ended::Interrupted)
        .collect();
    if show_steps && !steps.is_empty() {
        out.push('\n');
        let _ = writeln!(
            out,
            "{:<15}{:>10}  {:>10}  {:>9}  {:>7}  {:>7}  result",
            "steps", "level", "achieved", "p99", "errors", "dropped"
        );
        for step in steps {
            let w = step.figures();
            let result = match (step.held(), step.complete) {
                (Some(true), _) => "held",
                (Some(false), _) => "BROKE",
                (None, true) => "",
                (None, false) => "partial",
            };
            let _ = writeln!(
                out,
                "{:<15}{:>10}  {:>10}  {:>9}  {:>7}  {:>7}  {result}",
                format!("  {}s-{}s", step.window.start, step.window.end),
                level(model, f64::from(step.step.level)),
                rate(w.figures.achieved_rate),
                latency(w.figures.p99),
                percent(w.figures.error_rate),
                w.figures.dropped,
            );
        }
    }
    if let Some(capacity) = &end.capacity {
        out.push('\n');
        let knee = capacity.knee.map_or("none (the first level broke)".to_owned(), |k| level(model, f64::from(k)));
        let broke = capacity.broke_at.map_or("none".to_owned(), |b| level(model, f64::from(b)));
        let _ = writeln!(
            out,
            "{:<15}knee {knee} (the highest level that held every threshold); broke at {broke}",
            "capacity"
        );
    }
    if !end.thresholds.is_empty() {
        out.push('\n');
        match end.thresholds_at {
            Some(at) => {
                let _ = writeln!(out, "thresholds at {}", level(model, f64::from(at)));
            }
            None => {
                let _ = writeln!(out, "thresholds");
            }
        }
        let width = end.thresholds.iter().map(|r| r.expression.len()).max().unwrap_or(0);
        for r in &end.thresholds {
            let _ = writeln!(
                out,
                "  {}  {:<width$}  {}",
                if r.passed { "pass" } else { "FAIL" },
                r.expression,
                threshold_detail(r)
            );
        }
    }
    out.push('\n');
    let _ = writeln!(out, "{:<15}{}", "verdict", end.verdict.as_str());
    if invocation.spec.thresholds.is_empty() {
        let _ = writeln!(out, "{:<15}no --threshold was given, so nothing could fail", "");
    }
    if let Some(note) = &end.note {
        let _ = writeln!(out, "{:<15}{note}", "");
    }
    out
}

fn threshold_detail(r: &ExpectationResult) -> String {
    let mut text = match (&r.observed, &r.threshold) {
        (Some(o), Some(t)) => format!("observed {o}, limit {t}"),
        (Some(o), None) => format!("observed {o}"),
        _ => String::new(),
    };
    if let Some(message) = &r.message {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(message);
    }
    text
}

fn vus_text(invocation: &Invocation) -> String {
    match (invocation.spec.load.vus, invocation.spec.load.preset) {
        (Some(v), None) => v.to_string(),
        _ => "varying".to_owned(),
    }
}

/// A duration to a tenth of a second: `5s`, `1m28.9s`.
fn tenths(d: Duration) -> String {
    duration_text(Duration::from_millis(u64::try_from(d.as_millis().div_ceil(100) * 100).unwrap_or(u64::MAX)))
}

/// The summary as one JSON document (`-o json`). Its shape, version 1 (camelCase keys; rates
/// per second; latencies in milliseconds; `null` where a figure does not apply):
///
/// ```text
/// { "version": 1,
///   "url": "http://…", "model": "open" | "closed", "preset": "capacity" | … | null,
///   "source": "drill.yaml (LoadTest ns/name)" | null,   // the manifest of -f
///   "plan": { "start": 0, "stages": [{ "duration": "10s", "target": 100 }], "seconds": 10.0 },
///   "run": { "ended": "completed" | "interrupted" | "aborted" | "capacityStopped",
///            "seconds": 10.0,          // how long load was sent (what the rates divide by)
///            "wallSeconds": 10.3,      // until the last request ended
///            "stop": "…" | null },     // why it stopped early
///   "requests": { "total", "ok", "connect", "timeout", "status4xx", "status5xx",
///                 "unexpectedStatus", "body", "dropped" },   // total = sent; dropped not in it
///   "achievedRate": 99.8, "targetRate": 100.0 | null, "rps": 99.8, "errorRate": 0.002,
///   "latency": { "p50Ms", "p90Ms", "p95Ms", "p99Ms", "p999Ms", "maxMs", "meanMs" },
///   "latencyFrom": "intendedStart" | "send",  // open model: from the intended start
///                                      // (coordinated-omission free); closed: a VU's send
///   "serviceTime": { …same keys… },    // from the actual send
///   "schedulerLag": { "meanMs", "maxMs" },
///   "clamped": 0,                      // values above 60s recorded as 60s
///   "concurrency": { "littlesLaw": 1.2, "inFlight": 1.1, "vus": 20 | null, "maxInFlight": 10000 | null },
///   "steps": [{ "level", "startSeconds", "settledSeconds", "endSeconds",
///               "window": [from, to],  // the whole seconds judged: the settled part
///               "complete", "requests", "achievedRate", "targetRate", "errorRate",
///               "p50Ms", "p99Ms", "held": true | false | null, "thresholds": [ … ] | null }],
///   "capacity": { "knee": 130, "brokeAt": 140 } | null,
///   "thresholds": [{ "expression", "observed", "threshold", "passed", "message" }],
///   "thresholdsAt": 140 | null,        // capacity: the level the thresholds were judged at
///   "verdict": "Pass" | "Fail" | "Inconclusive" | "Aborted", "note": "…" | null,
///   "abortedBy": { "rule", "for", "observed": ["25.0%", …], "second" } | null,  // spec.abortWhen
///   "seconds": [{ "second", "requests", "achievedRate", "targetRate", "p50Ms", "p99Ms" }] }
/// ```
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonReport {
    pub version: u32,
    pub url: String,
    pub model: LoadModel,
    pub preset: Option<Preset>,
    pub source: Option<String>,
    pub plan: JsonPlan,
    pub run: JsonRun,
    pub requests: RequestCounts,
    pub achieved_rate: f64,
    pub target_rate: Option<f64>,
    pub rps: f64,
    pub error_rate: f64,
    pub latency: LatencySummary,
    pub latency_from: LatencyFrom,
    pub service_time: LatencySummary,
    pub scheduler_lag: JsonLag,
    pub clamped: u64,
    pub concurrency: JsonConcurrency,
    pub steps: Vec<JsonStep>,
    pub capacity: Option<CapacityResult>,
    pub thresholds: Vec<ExpectationResult>,
    pub thresholds_at: Option<u32>,
    pub verdict: Verdict,
    pub note: Option<String>,
    pub aborted_by: Option<AbortedBy>,
    pub seconds: Vec<JsonSecond>,
}

/// Where latency counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LatencyFrom {
    /// The schedule's due time (open model): a late send counts.
    IntendedStart,
    /// The send (closed model): a virtual user's request is due when it is sent.
    Send,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonPlan {
    pub start: u32,
    pub stages: Vec<Stage>,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonRun {
    pub ended: Ended,
    pub seconds: f64,
    pub wall_seconds: f64,
    pub stop: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonLag {
    pub mean_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonConcurrency {
    pub littles_law: f64,
    pub in_flight: f64,
    pub vus: Option<u32>,
    pub max_in_flight: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonStep {
    pub level: u32,
    pub start_seconds: f64,
    pub settled_seconds: f64,
    pub end_seconds: f64,
    pub window: [u64; 2],
    pub complete: bool,
    pub requests: RequestCounts,
    pub achieved_rate: f64,
    pub target_rate: Option<f64>,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub held: Option<bool>,
    pub thresholds: Option<Vec<ExpectationResult>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonSecond {
    pub second: u64,
    pub requests: RequestCounts,
    pub achieved_rate: f64,
    pub target_rate: Option<f64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The summary as the JSON document described on [`JsonReport`].
pub fn json(invocation: &Invocation, finished: &Finished) -> JsonReport {
    let end = &finished.end;
    let window = &end.window;
    let f = &window.figures;
    let load = &invocation.spec.load;
    let summary = &finished.summary;
    JsonReport {
        version: JSON_VERSION,
        url: invocation.url.clone(),
        model: load.model,
        preset: load.preset,
        source: invocation.source.clone(),
        plan: JsonPlan {
            start: invocation.plan.start,
            stages: invocation.plan.stages.clone(),
            seconds: invocation.plan.total_duration().as_secs_f64(),
        },
        run: JsonRun {
            ended: finished.ended,
            seconds: end.length.as_secs_f64(),
            wall_seconds: finished.elapsed.as_secs_f64(),
            stop: end.stop.as_ref().map(ToString::to_string),
        },
        requests: summary.total().counts.clone(),
        achieved_rate: f.achieved_rate,
        target_rate: f.target_rate,
        rps: f.rps,
        error_rate: f.error_rate,
        latency: f.latency_summary(),
        latency_from: match load.model {
            LoadModel::Open => LatencyFrom::IntendedStart,
            LoadModel::Closed => LatencyFrom::Send,
        },
        service_time: window.service.clone(),
        scheduler_lag: JsonLag { mean_ms: ms(window.lag_mean), max_ms: ms(window.lag_max) },
        clamped: window.clamped,
        concurrency: JsonConcurrency {
            littles_law: window.concurrency,
            in_flight: window.in_flight,
            vus: if load.model == LoadModel::Closed { load.vus } else { None },
            max_in_flight: match load.model {
                LoadModel::Open => Some(load.max_in_flight.unwrap_or(crate::engine::DEFAULT_MAX_IN_FLIGHT)),
                LoadModel::Closed => None,
            },
        },
        steps: summary
            .steps()
            .iter()
            .map(|s| {
                let w = s.figures();
                JsonStep {
                    level: s.step.level,
                    start_seconds: s.step.start.as_secs_f64(),
                    settled_seconds: s.step.settled.as_secs_f64(),
                    end_seconds: s.step.end.as_secs_f64(),
                    window: [s.window.start, s.window.end],
                    complete: s.complete,
                    requests: s.bucket.counts.clone(),
                    achieved_rate: w.figures.achieved_rate,
                    target_rate: w.figures.target_rate,
                    error_rate: w.figures.error_rate,
                    p50_ms: ms(w.figures.p50),
                    p99_ms: ms(w.figures.p99),
                    held: s.held(),
                    thresholds: s.judgement.clone(),
                }
            })
            .collect(),
        capacity: end.capacity.clone(),
        thresholds: end.thresholds.clone(),
        thresholds_at: end.thresholds_at,
        verdict: end.verdict,
        note: end.note.clone(),
        aborted_by: finished.aborted_by.clone(),
        seconds: summary
            .seconds()
            .iter()
            .map(|s| JsonSecond {
                second: s.second,
                requests: s.counts.clone(),
                achieved_rate: s.achieved_rate,
                target_rate: s.target_rate,
                p50_ms: ms(s.p50),
                p99_ms: ms(s.p99),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GoDuration;

    #[test]
    fn figures_read_as_a_person_reads_them() {
        assert_eq!(clock(Duration::from_secs(5)), "5s");
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
        assert_eq!(latency(Duration::from_micros(412)), "0.41 ms");
        assert_eq!(latency(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(latency(Duration::from_micros(250_000)), "250 ms");
        assert_eq!(latency(Duration::from_millis(1_250)), "1250 ms");
        assert_eq!(rate(99.84), "99.8/s");
        assert_eq!(rate(100.0), "100/s");
        assert_eq!(rate(1234.4), "1234/s");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.0123), "1.23%");
        assert_eq!(percent(0.5), "50.0%");
        assert_eq!(percent(0.2388), "23.9%");
        assert_eq!(percent(1.0), "100%");
        let stages = [
            Stage { duration: GoDuration::from_secs(10), target: 100 },
            Stage { duration: GoDuration::from_secs(20), target: 100 },
            Stage { duration: GoDuration::from_secs(5), target: 0 },
        ];
        assert_eq!(stages_text(LoadModel::Open, 0, &stages), "0→100/s in 10s, 100/s for 20s, 100→0/s in 5s");
        assert_eq!(stages_text(LoadModel::Closed, 4, &stages[..1]), "4→100 VUs in 10s");
    }

    #[test]
    fn counts_name_every_error_class_seen() {
        let c = RequestCounts { total: 10, ok: 6, timeout: 1, status5xx: 3, dropped: 2, ..RequestCounts::default() };
        assert_eq!(
            counts_text(&c),
            "10 sent: 6 ok, 4 failed (1 timeout, 3 5xx); 2 dropped (not sent: --max-in-flight reached)"
        );
        assert_eq!(counts_text(&RequestCounts::default()), "0 sent: 0 ok, 0 failed; 0 dropped");
    }
}
