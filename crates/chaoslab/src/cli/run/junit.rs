//! JUnit XML of finished runs, for CI systems: one test suite per run, one test case per
//! expectation (or LoadTest threshold), and a `verdict` case whenever the expectations alone do
//! not explain the verdict (an abort, an inconclusive or failed run, a run with none).

use std::fmt::Write as _;

use crate::{api::Verdict, report::Report};

/// The JUnit XML of `reports`, as written by `--junit`.
pub fn render(reports: &[Report]) -> String {
    let suites: Vec<Suite> = reports.iter().map(Suite::of).collect();
    let count = |f: fn(&Case) -> bool| suites.iter().flat_map(|s| &s.cases).filter(|c| f(c)).count();
    let (tests, failures, errors) = (
        count(|_| true),
        count(|c| matches!(c.outcome, Outcome::Failure(_))),
        count(|c| matches!(c.outcome, Outcome::Error(_))),
    );
    let time: f64 = suites.iter().map(|s| s.seconds).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"chaoslab\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">"
    );
    for suite in &suites {
        suite.write(&mut xml);
    }
    xml.push_str("</testsuites>\n");
    xml
}

struct Suite<'a> {
    report: &'a Report,
    name: String,
    seconds: f64,
    cases: Vec<Case>,
}

struct Case {
    name: String,
    outcome: Outcome,
}

enum Outcome {
    Passed,
    /// The system under test did not hold: a failed expectation, a Fail or an abort.
    Failure(String),
    /// Nothing was proven: the run was inconclusive, errored, or an expectation could not be judged.
    Error(String),
}

impl<'a> Suite<'a> {
    fn of(report: &'a Report) -> Suite<'a> {
        let name = match &report.namespace {
            Some(ns) => format!("{} {ns}/{}", report.kind, report.name),
            None => format!("{} {}", report.kind, report.name),
        };
        let seconds = match (&report.started_at, &report.finished_at) {
            (Some(from), Some(to)) => to.0.duration_since(from.0).as_secs_f64().max(0.0),
            _ => 0.0,
        };
        let mut cases: Vec<Case> = report
            .expectations
            .iter()
            .map(|e| {
                let observed = e.observed.as_deref().unwrap_or("nothing");
                let outcome = match (&e.message, e.passed) {
                    (_, true) => Outcome::Passed,
                    (Some(why), false) => Outcome::Error(format!("not judged: {why}")),
                    (None, false) => Outcome::Failure(match &e.threshold {
                        Some(threshold) => format!("observed {observed}, threshold {threshold}"),
                        None => format!("observed {observed}"),
                    }),
                };
                Case { name: e.expression.clone(), outcome }
            })
            .collect();
        let all_held = cases.iter().all(|c| matches!(c.outcome, Outcome::Passed));
        let explained = !cases.is_empty()
            && match report.verdict {
                Some(Verdict::Pass) => all_held,
                Some(Verdict::Fail) => !all_held,
                _ => false,
            };
        if !explained {
            let why = report.message.clone().unwrap_or_else(|| format!("the verdict is {}", report.verdict_word()));
            let outcome = match report.verdict {
                Some(Verdict::Pass) => Outcome::Passed,
                Some(Verdict::Fail) => Outcome::Failure(why),
                Some(Verdict::Aborted) => Outcome::Failure(match &report.aborted_by {
                    Some(rule) => format!("aborted by {}: {}", rule.rule, rule.observed.join(", ")),
                    None => why,
                }),
                Some(Verdict::Inconclusive | Verdict::Error) | None => Outcome::Error(why),
            };
            cases.push(Case { name: "verdict".into(), outcome });
        }
        Suite { report, name, seconds, cases }
    }

    fn write(&self, xml: &mut String) {
        let failures = self.cases.iter().filter(|c| matches!(c.outcome, Outcome::Failure(_))).count();
        let errors = self.cases.iter().filter(|c| matches!(c.outcome, Outcome::Error(_))).count();
        let timestamp =
            self.report.started_at.as_ref().map(|t| format!(" timestamp=\"{}\"", t.0.strftime("%Y-%m-%dT%H:%M:%S")));
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{:.3}\"{}>",
            escape(&self.name),
            self.cases.len(),
            self.seconds,
            timestamp.unwrap_or_default()
        );
        let _ = writeln!(xml, "    <properties>");
        let _ = writeln!(xml, "      <property name=\"verdict\" value=\"{}\"/>", self.report.verdict_word());
        if let Some(message) = &self.report.message {
            let _ = writeln!(xml, "      <property name=\"message\" value=\"{}\"/>", escape(message));
        }
        let _ = writeln!(xml, "    </properties>");
        let class = escape(&format!(
            "chaoslab.{}.{}",
            self.report.kind,
            self.report
                .namespace
                .as_ref()
                .map(|ns| format!("{ns}.{}", self.report.name))
                .unwrap_or(self.report.name.clone())
        ));
        for case in &self.cases {
            let open = format!("    <testcase classname=\"{class}\" name=\"{}\" time=\"0\"", escape(&case.name));
            let _ = match &case.outcome {
                Outcome::Passed => writeln!(xml, "{open}/>"),
                Outcome::Failure(why) => writeln!(
                    xml,
                    "{open}>\n      <failure type=\"{}\" message=\"{}\"/>\n    </testcase>",
                    self.report.verdict_word(),
                    escape(why)
                ),
                Outcome::Error(why) => writeln!(
                    xml,
                    "{open}>\n      <error type=\"{}\" message=\"{}\"/>\n    </testcase>",
                    self.report.verdict_word(),
                    escape(why)
                ),
            };
        }
        let _ = writeln!(xml, "  </testsuite>");
    }
}

/// Text as an XML attribute value: the five special characters escaped, control characters
/// (which XML 1.0 forbids) dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::figures::{AbortRecord, ExpectationResult};

    fn expectation(expression: &str, passed: bool) -> ExpectationResult {
        ExpectationResult {
            expression: expression.into(),
            observed: Some(if passed { "212ms" } else { "412ms" }.into()),
            threshold: Some("300ms".into()),
            passed,
            message: None,
        }
    }

    fn report(verdict: Option<Verdict>, expectations: Vec<ExpectationResult>) -> Report {
        let mut report = crate::report::fixture::drill();
        report.namespace = Some("shop".into());
        report.verdict = verdict;
        report.message = Some("why & how <it> ended".into());
        report.expectations = expectations;
        report.aborted_by = None;
        report
    }

    /// The cases of the one suite: (name, "passed" | "failure: ..." | "error: ...").
    fn cases(xml: &str) -> Vec<(String, String)> {
        let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        root.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|case| {
                let name = case.attribute("name").unwrap_or_default().to_owned();
                let outcome = match case.children().find(|c| c.is_element()) {
                    None => "passed".to_owned(),
                    Some(child) => {
                        format!("{}: {}", child.tag_name().name(), child.attribute("message").unwrap_or_default())
                    }
                };
                (name, outcome)
            })
            .collect()
    }

    fn totals(xml: &str) -> (String, String, String) {
        let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
        let root = doc.root_element();
        let get = |a: &str| root.attribute(a).unwrap_or_default().to_owned();
        (get("tests"), get("failures"), get("errors"))
    }

    #[test]
    fn a_pass_is_one_passing_case_per_expectation() {
        let xml = render(&[report(Some(Verdict::Pass), vec![expectation("p99 < 300ms", true)])]);
        assert_eq!(cases(&xml), [("p99 < 300ms".to_owned(), "passed".to_owned())]);
        assert_eq!(totals(&xml), ("1".into(), "0".into(), "0".into()));
        let doc = roxmltree::Document::parse(&xml).expect("XML");
        let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).expect("a suite");
        assert_eq!(suite.attribute("name"), Some("Drill shop/tour"));
        let verdict = doc.descendants().find(|n| n.attribute("name") == Some("verdict")).expect("verdict property");
        assert_eq!(verdict.attribute("value"), Some("Pass"));
    }

    #[test]
    fn a_fail_names_the_expectation_that_failed_with_its_figures() {
        let xml = render(&[report(
            Some(Verdict::Fail),
            vec![expectation("errorRate < 1%", true), expectation("p99 < 300ms", false)],
        )]);
        assert_eq!(
            cases(&xml),
            [
                ("errorRate < 1%".to_owned(), "passed".to_owned()),
                ("p99 < 300ms".to_owned(), "failure: observed 412ms, threshold 300ms".to_owned()),
            ]
        );
        assert_eq!(totals(&xml), ("2".into(), "1".into(), "0".into()));
    }

    #[test]
    fn an_abort_fails_the_verdict_case_naming_the_rule() {
        let mut aborted = report(Some(Verdict::Aborted), vec![expectation("p99 < 300ms", true)]);
        aborted.aborted_by = Some(AbortRecord {
            rule: "errorRate > 20%".into(),
            observed: vec!["25%".into(), "31%".into()],
            at: aborted.started_at.clone().expect("started"),
        });
        let xml = render(&[aborted]);
        assert_eq!(cases(&xml)[1], ("verdict".to_owned(), "failure: aborted by errorRate > 20%: 25%, 31%".to_owned()));
    }

    #[test]
    fn inconclusive_error_and_undecided_runs_are_errors_not_passes() {
        for verdict in [Some(Verdict::Inconclusive), Some(Verdict::Error), None] {
            let xml = render(&[report(verdict, vec![expectation("p99 < 300ms", true)])]);
            let got = cases(&xml);
            assert_eq!(
                got.last(),
                Some(&("verdict".to_owned(), "error: why & how <it> ended".to_owned())),
                "{verdict:?}"
            );
            assert_eq!(totals(&xml).2, "1", "{verdict:?}");
        }
        // A run with no expectations is judged by its verdict alone.
        let xml = render(&[report(Some(Verdict::Pass), vec![])]);
        assert_eq!(cases(&xml), [("verdict".to_owned(), "passed".to_owned())]);
        // An expectation that could not be judged is an error, whatever else held.
        let mut unjudged = expectation("recoveredWithin 30s", false);
        unjudged.message = Some("no SLO given".into());
        let xml = render(&[report(Some(Verdict::Fail), vec![unjudged])]);
        assert_eq!(cases(&xml)[0].1, "error: not judged: no SLO given");
    }

    #[test]
    fn several_runs_are_several_suites_with_totals() {
        let xml = render(&[
            report(Some(Verdict::Pass), vec![expectation("a", true)]),
            report(Some(Verdict::Fail), vec![expectation("b", false)]),
        ]);
        let doc = roxmltree::Document::parse(&xml).expect("XML");
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("testsuite")).count(), 2);
        assert_eq!(totals(&xml), ("2".into(), "1".into(), "0".into()));
    }
}
