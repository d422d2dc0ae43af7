//! What `chaoslab run --wait` shows while it follows runs: on a terminal one line per run,
//! redrawn in place every second (state, time window, elapsed, rate, p99, errors); in a log
//! (CI) a line each time a run's state or window changes, and one every half minute.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use crate::cli::{
    cluster::{LiveFigures, RunRef, RunView, state_word},
    output::{clock, latency, percent, rate},
};

/// One run's line: `drill/tour  Running inject  42s  rate 49.8/s  p99 12.3 ms  errors 1.20%`.
pub fn line(run: &RunRef, view: &RunView, elapsed: Duration, figures: Option<&LiveFigures>) -> String {
    let mut line = format!("{run}  {}", state_word(view));
    if let Some(stage) = view.stage.as_deref().filter(|_| !view.finished()) {
        line.push(' ');
        line.push_str(stage);
    }
    line.push_str("  ");
    line.push_str(&clock(elapsed));
    if let Some(f) = figures.filter(|_| !view.finished()) {
        line.push_str(&format!("  rate {}  p99 {}  errors {}", rate(f.rate), latency(f.p99), percent(f.error_rate)));
    }
    line
}

/// Where the lines go: stderr, redrawn in place on a terminal, appended in a log.
pub struct Screen {
    terminal: bool,
    /// Lines drawn in place last time (terminal).
    drawn: usize,
    /// Each run's state and window last printed (log), and when the last line was printed.
    printed: Vec<String>,
    last_print: Option<Instant>,
}

/// How often a log gets a line when nothing changed.
const LOG_EVERY: Duration = Duration::from_secs(30);

impl Screen {
    pub fn new(terminal: bool) -> Screen {
        Screen { terminal, drawn: 0, printed: Vec::new(), last_print: None }
    }

    /// Shows `lines` (one per run); `states` says what a log line is printed on a change of.
    pub fn show(&mut self, lines: &[String], states: &[String]) {
        let mut err = std::io::stderr().lock();
        // A progress line that cannot be written is not worth stopping the run for.
        if self.terminal {
            if self.drawn > 0 {
                let _ = write!(err, "\x1b[{}A", self.drawn);
            }
            for line in lines {
                let _ = writeln!(err, "\r\x1b[2K{line}");
            }
            self.drawn = lines.len();
        } else {
            let due = self.last_print.is_none_or(|at| at.elapsed() >= LOG_EVERY);
            for (i, line) in lines.iter().enumerate() {
                if due || self.printed.get(i) != states.get(i) {
                    let _ = writeln!(err, "{line}");
                }
            }
            if due || self.printed != states {
                self.last_print = Some(Instant::now());
            }
            self.printed = states.to_vec();
        }
        let _ = err.flush();
    }

    /// Prints a message above the live lines, which are drawn again on the next `show`.
    pub fn say(&mut self, text: &str) {
        self.clear();
        eprintln!("{text}");
    }

    /// Removes the live lines from a terminal.
    pub fn clear(&mut self) {
        if self.terminal && self.drawn > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\x1b[{}A", self.drawn);
            for _ in 0..self.drawn {
                let _ = writeln!(err, "\r\x1b[2K");
            }
            let _ = write!(err, "\x1b[{}A", self.drawn);
            let _ = err.flush();
            self.drawn = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ExperimentKind, Phase, RunStatus, Verdict};

    #[test]
    fn the_line_tells_state_window_time_and_the_loads_figures() {
        let run = RunRef { kind: ExperimentKind::Drill, namespace: "shop".into(), name: "tour".into() };
        let mut view = RunView {
            run: RunStatus { phase: Some(Phase::Running), ..RunStatus::default() },
            stage: Some("inject".into()),
            ..RunView::default()
        };
        let figures = LiveFigures { second: 41, rate: 49.8, p99: Duration::from_micros(12_300), error_rate: 0.012 };
        assert_eq!(
            line(&run, &view, Duration::from_secs(42), Some(&figures)),
            "drill/tour  Running inject  42s  rate 49.8/s  p99 12.3 ms  errors 1.20%"
        );
        view.run.phase = Some(Phase::Succeeded);
        view.run.verdict = Some(Verdict::Pass);
        assert_eq!(line(&run, &view, Duration::from_secs(65), Some(&figures)), "drill/tour  Pass  1m05s");
        let pending = RunView::default();
        assert_eq!(line(&run, &pending, Duration::from_secs(3), None), "drill/tour  Pending  3s");
    }
}
