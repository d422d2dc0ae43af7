//! The expression language of thresholds, expectations and abort rules:
//! `<metric> <op> <value>`, such as `p99 < 250ms`, `errorRate <= 1%`, `p99 <= 2x baseline` or
//! `errorRate <= baseline + 0.5%`. Parsing only; evaluation comes with the load engine.

use std::{fmt, str::FromStr, time::Duration};

use crate::api::GoDuration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    P50,
    P90,
    P95,
    P99,
    P999,
    Max,
    Mean,
    /// Failed requests / sent requests.
    ErrorRate,
    /// Achieved rate, as a percentage of the target rate or in requests per second.
    AchievedRate,
    /// Requests per second.
    Rps,
    /// Requests not sent because `maxInFlight` was reached.
    Dropped,
}

const METRICS: [(&str, Metric); 11] = [
    ("p50", Metric::P50),
    ("p90", Metric::P90),
    ("p95", Metric::P95),
    ("p99", Metric::P99),
    ("p999", Metric::P999),
    ("max", Metric::Max),
    ("mean", Metric::Mean),
    ("errorRate", Metric::ErrorRate),
    ("achievedRate", Metric::AchievedRate),
    ("rps", Metric::Rps),
    ("dropped", Metric::Dropped),
];

impl Metric {
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Metric::P50 | Metric::P90 | Metric::P95 | Metric::P99 | Metric::P999 | Metric::Max | Metric::Mean
        )
    }

    fn name(self) -> &'static str {
        METRICS.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// What an absolute value for this metric looks like, for error messages.
    fn expected(self) -> &'static str {
        match self {
            m if m.is_latency() => "a duration such as 250ms",
            Metric::ErrorRate => "a percentage such as 1%",
            Metric::AchievedRate => "a percentage of the target rate such as 99%, or requests per second such as 450",
            Metric::Rps => "requests per second such as 450",
            _ => "a count such as 10, or a percentage of requests such as 0.5%",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// The right-hand side.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Latency(Duration),
    /// A fraction: `1%` is 0.01.
    Ratio(f64),
    Number(f64),
    /// `2x baseline`: a multiple of the metric's value in the baseline phase.
    TimesBaseline(f64),
    /// `baseline + 0.5%` or `baseline + 50ms`: the baseline value plus a margin.
    BaselinePlus(Box<Value>),
}

impl Value {
    pub fn is_relative(&self) -> bool {
        matches!(self, Value::TimesBaseline(_) | Value::BaselinePlus(_))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    pub metric: Metric,
    pub op: Op,
    pub value: Value,
}

/// Why an expression does not parse; the message shows the expression and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{expression:?}: {problem}")]
pub struct ExpressionError {
    pub expression: String,
    pub problem: String,
}

impl FromStr for Expression {
    type Err = ExpressionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |problem: String| ExpressionError { expression: input.to_owned(), problem };
        let s = input.trim();
        let op_at = s.find(['<', '>']).ok_or_else(|| {
            fail("expected <metric> <op> <value> with op one of <, <=, >, >= (e.g. p99 < 250ms)".into())
        })?;
        let (lhs, rest) = s.split_at(op_at);
        let (op, rhs) = match rest {
            r if r.starts_with("<=") => (Op::Le, &r[2..]),
            r if r.starts_with(">=") => (Op::Ge, &r[2..]),
            r if r.starts_with('<') => (Op::Lt, &r[1..]),
            r => (Op::Gt, &r[1..]),
        };
        let name = lhs.trim();
        let metric = METRICS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
            fail(format!("unknown metric {name:?}; metrics are {}", names.join(", ")))
        })?;
        let value = parse_value(metric, rhs.trim()).map_err(fail)?;
        Ok(Expression { metric, op, value })
    }
}

fn parse_value(metric: Metric, s: &str) -> Result<Value, String> {
    if s.is_empty() {
        return Err(format!("missing value: {} needs {}", metric.name(), metric.expected()));
    }
    if let Some(factor) = s.strip_suffix("baseline").map(str::trim).and_then(|f| f.strip_suffix('x')) {
        let factor: f64 = factor
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a multiple of the baseline such as 2x baseline"))?;
        if !(factor.is_finite() && factor > 0.0) {
            return Err(format!("the multiple in {s:?} must be positive"));
        }
        return Ok(Value::TimesBaseline(factor));
    }
    if let Some(margin) = s.strip_prefix("baseline") {
        let margin = margin
            .trim()
            .strip_prefix('+')
            .ok_or_else(|| format!("{s:?}: write baseline + <margin>, such as baseline + 0.5% or baseline + 50ms"))?;
        return Ok(Value::BaselinePlus(Box::new(parse_absolute(metric, margin.trim())?)));
    }
    parse_absolute(metric, s)
}

fn parse_absolute(metric: Metric, s: &str) -> Result<Value, String> {
    let wrong = || format!("{s:?} is not valid here: {} needs {}", metric.name(), metric.expected());
    if metric.is_latency() {
        return s.parse::<GoDuration>().map(|d| Value::Latency(d.as_std())).map_err(|_| wrong());
    }
    if let Some(p) = s.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| wrong())?;
        if p < 0.0 || (p > 100.0 && metric != Metric::AchievedRate) {
            return Err(format!("{s:?} is out of range: percentages are 0% to 100% (achievedRate may exceed 100%)"));
        }
        return match metric {
            Metric::Rps => Err(wrong()),
            _ => Ok(Value::Ratio(p / 100.0)),
        };
    }
    let n: f64 = s.parse().map_err(|_| wrong())?;
    if !n.is_finite() || n < 0.0 {
        return Err(wrong());
    }
    match metric {
        Metric::ErrorRate => Err(wrong()),
        _ => Ok(Value::Number(n)),
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        })
    }
}

/// Check a list of expressions from a spec field, naming the field and index of the first bad
/// one. `baseline` says whether the kind measures a baseline that relative values refer to.
pub fn check_all<'a>(
    field: &str,
    expressions: impl IntoIterator<Item = &'a String>,
    baseline: bool,
) -> Result<(), String> {
    for (i, text) in expressions.into_iter().enumerate() {
        let e: Expression = text.parse().map_err(|e: ExpressionError| format!("{field}[{i}]: {e}"))?;
        if e.value.is_relative() && !baseline {
            return Err(format!(
                "{field}[{i}]: {text:?} compares with the baseline, but this run measures none: use an absolute value, or set phases.baseline"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Expression {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn absolute_expressions() {
        assert_eq!(
            parse("p99 < 250ms"),
            Expression { metric: Metric::P99, op: Op::Lt, value: Value::Latency(Duration::from_millis(250)) }
        );
        assert_eq!(parse("errorRate<=1%").value, Value::Ratio(0.01));
        assert_eq!(parse(" achievedRate >= 99% ").op, Op::Ge);
        assert_eq!(parse("achievedRate >= 450").value, Value::Number(450.0));
        assert_eq!(parse("rps > 100").value, Value::Number(100.0));
        assert_eq!(parse("dropped <= 0").value, Value::Number(0.0));
        assert_eq!(parse("p999 < 1.5s").value, Value::Latency(Duration::from_millis(1500)));
    }

    #[test]
    fn relative_expressions() {
        assert_eq!(parse("p99 <= 2x baseline").value, Value::TimesBaseline(2.0));
        assert_eq!(parse("p99 <= 1.5 x baseline").value, Value::TimesBaseline(1.5));
        assert_eq!(parse("errorRate <= baseline + 0.5%").value, Value::BaselinePlus(Box::new(Value::Ratio(0.005))));
        assert_eq!(
            parse("p50 < baseline + 50ms").value,
            Value::BaselinePlus(Box::new(Value::Latency(Duration::from_millis(50))))
        );
    }

    #[test]
    fn errors_say_what_is_allowed() {
        let err = |s: &str| s.parse::<Expression>().unwrap_err().to_string();
        assert!(err("p99 250ms").contains("op one of <, <=, >, >="));
        assert!(err("p98 < 250ms").contains("metrics are p50, p90"));
        assert!(err("p99 < fast").contains("p99 needs a duration such as 250ms"));
        assert!(err("p99 < 1%").contains("duration"));
        assert!(err("errorRate < 0.01").contains("a percentage such as 1%"));
        assert!(err("errorRate < 150%").contains("0% to 100%"));
        assert!(err("achievedRate >= -5%").contains("out of range"));
        assert_eq!(parse("achievedRate >= 120%").value, Value::Ratio(1.2));
        assert!(err("rps > 50%").contains("requests per second"));
        assert!(err("p99 < ").contains("missing value"));
        assert!(err("p99 <= -2x baseline").contains("multiple"));
        assert!(err("p99 <= baseline 50ms").contains("baseline + <margin>"));
    }

    #[test]
    fn check_all_names_the_field_and_refuses_baselines_where_there_are_none() {
        let ok = vec!["p99 < 250ms".to_string(), "errorRate < 1%".to_string()];
        assert_eq!(check_all("spec.thresholds", &ok, false), Ok(()));
        let bad = vec!["p99 < 250ms".to_string(), "p99 < soon".to_string()];
        assert!(check_all("spec.thresholds", &bad, false).unwrap_err().starts_with("spec.thresholds[1]: "));
        let relative = vec!["p99 <= 2x baseline".to_string()];
        assert!(check_all("spec.thresholds", &relative, false).unwrap_err().contains("measures none"));
        assert_eq!(check_all("spec.expectations", &relative, true), Ok(()));
    }
}
