//! The report's SVG charts, drawn with plotters' SVG backend (no system libraries, no fonts
//! read: text is left to the viewer). Every chart shares one time axis, seconds since the load
//! started, with the phases shaded and labelled along the bottom and the fault windows shaded
//! red and labelled along the top, so a change lines up with what caused it.

use plotters::{
    coord::{Shift, types::RangedCoordf64},
    prelude::*,
};

use super::Report;
use crate::api::podkill::KillAction;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the {chart} chart: {reason}")]
pub struct ChartError {
    chart: &'static str,
    reason: String,
}

const SIZE: (u32, u32) = (960, 340);
const FONT: &str = "sans-serif";
/// The phases' fills, in plan order (warmup, baseline, inject, recover, cooldown).
const PHASE_FILLS: [RGBColor; 5] = [
    RGBColor(200, 200, 200),
    RGBColor(120, 170, 230),
    RGBColor(240, 190, 90),
    RGBColor(120, 200, 140),
    RGBColor(190, 160, 220),
];
const FAULT_FILL: RGBColor = RGBColor(220, 40, 40);
const THROUGHPUT: RGBColor = RGBColor(30, 90, 200);
const ERRORS: RGBColor = RGBColor(200, 30, 30);
const P50: RGBColor = RGBColor(40, 140, 60);
const P99: RGBColor = RGBColor(150, 40, 160);
/// A kill whose replacement became Ready; a hollow bar in [`OPEN_BAR`] is one that did not.
const KILL_BAR: RGBColor = RGBColor(200, 80, 30);
const OPEN_BAR: RGBColor = RGBColor(170, 20, 20);

/// Every chart `report` has data for, as `(file name, SVG)`: traffic and latency when seconds
/// were measured, replicas when the run sampled them.
pub fn render_all(report: &Report) -> Result<Vec<(&'static str, String)>, ChartError> {
    let mut charts = Vec::new();
    if !report.seconds.is_empty() {
        charts.push(("traffic.svg", traffic(report)?));
        charts.push(("latency.svg", latency(report)?));
    }
    if !report.replicas.is_empty() {
        charts.push(("replicas.svg", replicas(report)?));
    }
    if !killed(report).is_empty() {
        charts.push(("kills.svg", kills(report)?));
    }
    Ok(charts)
}

/// A PodKill's killed targets: the pod, when it was killed and when its replacement was Ready
/// (`None`: never, within the run), in seconds since the run's start.
fn killed(report: &Report) -> Vec<(&str, f64, Option<f64>)> {
    let targets = report.pod_kill.iter().flat_map(|k| &k.targets);
    targets
        .filter(|t| t.action == KillAction::Killed)
        .filter_map(|t| {
            let at = report.since_start(t.killed_at.as_ref()?.0)?;
            let ready = t.replacement_ready_at.as_ref().and_then(|r| report.since_start(r.0));
            Some((t.pod.as_str(), at, ready))
        })
        .collect()
}

/// One horizontal bar per killed target, from the kill to its replacement's Ready. A target whose
/// replacement never became Ready is drawn open to the end of the axis, hollow, and marked.
pub fn kills(report: &Report) -> Result<String, ChartError> {
    let bars = killed(report);
    let end = report.span();
    let top = bars.len().max(1) as f64;
    draw_on("kills", report, "Kill to replacement Ready, per target", Axis::Rows("targets"), top, |chart| {
        for (i, (pod, from, ready)) in bars.iter().enumerate() {
            // The first target at the top, as the Markdown table lists them.
            let row = top - i as f64 - 1.0;
            let (low, high) = (row + 0.2, row + 0.8);
            let (to, style, label) = match ready {
                Some(to) => (*to, KILL_BAR.filled(), format!("{pod} ({:.2}s)", to - from)),
                None => (end, OPEN_BAR.stroke_width(2), format!("{pod} (no Ready replacement)")),
            };
            // A recovery of milliseconds is still a visible bar.
            let to = to.max(from + end * 0.004);
            chart
                .draw_series(std::iter::once(Rectangle::new([(*from, low), (to, high)], style)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(label, (*from, high + 0.05), (FONT, 12))))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// Throughput and errors per second.
pub fn traffic(report: &Report) -> Result<String, ChartError> {
    let throughput: Vec<(f64, f64)> = report.seconds.iter().map(|s| (s.second as f64, s.throughput)).collect();
    let errors: Vec<(f64, f64)> = report.seconds.iter().map(|s| (s.second as f64, s.errors as f64)).collect();
    let top = highest(throughput.iter().chain(&errors).map(|p| p.1));
    draw("traffic", report, "Throughput and errors per second", "requests / s", top, |chart| {
        line(chart, throughput, THROUGHPUT, "throughput (answered/s)")?;
        line(chart, errors, ERRORS, "errors/s")
    })
}

/// p50 and p99 latency per second.
pub fn latency(report: &Report) -> Result<String, ChartError> {
    let p50: Vec<(f64, f64)> = report.seconds.iter().map(|s| (s.second as f64, s.p50_ms)).collect();
    let p99: Vec<(f64, f64)> = report.seconds.iter().map(|s| (s.second as f64, s.p99_ms)).collect();
    let top = highest(p50.iter().chain(&p99).map(|p| p.1));
    draw("latency", report, "Latency per second", "ms", top, |chart| {
        line(chart, p99, P99, "p99")?;
        line(chart, p50, P50, "p50")
    })
}

/// Desired and ready replicas over time, as steps (a count holds until the next sample).
pub fn replicas(report: &Report) -> Result<String, ChartError> {
    let steps = |value: fn(&crate::api::trial::ReplicaSample) -> i32| {
        let mut points: Vec<(f64, f64)> = Vec::new();
        for sample in &report.replicas {
            let Some(at) = report.offset(&sample.at) else { continue };
            if let Some(&(_, before)) = points.last() {
                points.push((at, before));
            }
            points.push((at, f64::from(value(sample))));
        }
        if let Some(&(_, last)) = points.last() {
            points.push((report.span(), last));
        }
        points
    };
    let desired = steps(|s| s.desired);
    let ready = steps(|s| s.ready);
    let top = highest(desired.iter().chain(&ready).map(|p| p.1));
    draw("replicas", report, "Replicas", "replicas", top, |chart| {
        line(chart, desired, THROUGHPUT, "desired")?;
        line(chart, ready, P50, "ready")
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart on the run's time axis, shaded, with `series` drawn over the shading.
fn draw(
    name: &'static str,
    report: &Report,
    caption: &str,
    unit: &str,
    top: f64,
    series: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<String, ChartError> {
    draw_on(name, report, caption, Axis::Values(unit), top, series)
}

/// What the vertical axis shows: values in a unit (with a legend of the series), or rows of
/// labelled bars (no numbers, no legend).
enum Axis<'a> {
    Values(&'a str),
    Rows(&'a str),
}

fn draw_on(
    name: &'static str,
    report: &Report,
    caption: &str,
    axis: Axis<'_>,
    top: f64,
    series: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), String>,
) -> Result<String, ChartError> {
    let (unit, rows) = match axis {
        Axis::Values(unit) => (unit, false),
        Axis::Rows(unit) => (unit, true),
    };
    let fail = |reason: String| ChartError { chart: name, reason };
    let mut svg = String::new();
    {
        let root: DrawingArea<SVGBackend<'_>, Shift> = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..report.span(), 0f64..top)
            .map_err(|e| fail(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(format!("seconds since {}", report.axis_origin()))
            .y_desc(unit)
            .y_labels(if rows { 0 } else { 10 })
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| fail(e.to_string()))?;
        shade(&mut chart, report, top).map_err(fail)?;
        series(&mut chart).map_err(fail)?;
        if !rows {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .label_font((FONT, 12))
                .draw()
                .map_err(|e| fail(e.to_string()))?;
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

/// The phases (or a LoadTest's stages) as pale bands labelled at the bottom, the faults as red
/// bands labelled at the top.
fn shade(chart: &mut Chart<'_, '_>, report: &Report, top: f64) -> Result<(), String> {
    let end = report.span();
    let phases = report.phases.iter().filter_map(|phase| {
        let from = report.offset(&phase.started_at)?;
        let to = phase.finished_at.as_ref().and_then(|t| report.offset(t)).unwrap_or(end);
        Some((from, to, phase.name.as_str()))
    });
    let stages = report.stages.iter().map(|s| (s.from_second, s.to_second, s.label.as_str()));
    for (i, (from, to, label)) in phases.chain(stages).enumerate() {
        let fill = PHASE_FILLS[i % PHASE_FILLS.len()];
        band(chart, from, to, top, fill.mix(0.18), label, top * 0.03)?;
    }
    for fault in &report.faults {
        let Some(from) = fault.started_at.as_ref().and_then(|t| report.offset(t)) else { continue };
        let to = fault.reverted_at.as_ref().and_then(|t| report.offset(t)).unwrap_or(end);
        band(chart, from, to, top, FAULT_FILL.mix(0.12), &format!("fault: {}", fault.name), top * 0.93)?;
    }
    Ok(())
}

fn band(
    chart: &mut Chart<'_, '_>,
    from: f64,
    to: f64,
    top: f64,
    fill: RGBAColor,
    label: &str,
    label_y: f64,
) -> Result<(), String> {
    chart
        .draw_series(std::iter::once(Rectangle::new([(from, 0.0), (to.max(from), top)], fill.filled())))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(Text::new(label.to_owned(), (from + (to - from) * 0.02, label_y), (FONT, 12))))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn line(chart: &mut Chart<'_, '_>, points: Vec<(f64, f64)>, color: RGBColor, label: &str) -> Result<(), String> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    Ok(())
}

/// The top of a value axis: the highest value with room above it for the labels, at least 1.
fn highest(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    (max * 1.25).max(1.0)
}
