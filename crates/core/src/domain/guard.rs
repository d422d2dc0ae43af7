//! Which namespaces chaos may touch: only those that opted in by label, never the system's or
//! the operator's own.

use std::{collections::BTreeMap, fmt, str::FromStr};

/// The label a namespace carries to opt in to chaos, e.g. `chaoslab.dev/chaos=enabled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptInLabel {
    pub key: String,
    pub value: String,
}

impl Default for OptInLabel {
    fn default() -> Self {
        Self { key: "chaoslab.dev/chaos".into(), value: "enabled".into() }
    }
}

impl FromStr for OptInLabel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok(Self { key: k.trim().into(), value: v.trim().into() })
            }
            _ => Err(format!("opt-in label {s:?} must be KEY=VALUE, such as chaoslab.dev/chaos=enabled")),
        }
    }
}

impl fmt::Display for OptInLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Namespaces no experiment may target, whatever their labels.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Decides whether a namespace may be targeted.
#[derive(Clone, Debug)]
pub struct TargetGuard {
    pub opt_in: OptInLabel,
    /// The operator's own namespace: breaking it would break the thing that reverts faults.
    pub operator_namespace: Option<String>,
}

/// Why a namespace may not be targeted; the message says how to fix it where it can be fixed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "namespace {namespace} is protected and never a chaos target (kube-system, kube-public, kube-node-lease and the operator's own namespace are)"
    )]
    Protected { namespace: String },
    #[error(
        "namespace {namespace} has not opted in to chaos: label it {label} (kubectl label namespace {namespace} {label})"
    )]
    NotOptedIn { namespace: String, label: String },
}

impl Refusal {
    /// A short CamelCase reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Protected { .. } => "ProtectedNamespace",
            Refusal::NotOptedIn { .. } => "NamespaceNotOptedIn",
        }
    }
}

impl TargetGuard {
    pub fn check(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Result<(), Refusal> {
        if SYSTEM_NAMESPACES.contains(&namespace) || self.operator_namespace.as_deref() == Some(namespace) {
            return Err(Refusal::Protected { namespace: namespace.into() });
        }
        if labels.get(&self.opt_in.key) != Some(&self.opt_in.value) {
            return Err(Refusal::NotOptedIn { namespace: namespace.into(), label: self.opt_in.to_string() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> TargetGuard {
        TargetGuard { opt_in: OptInLabel::default(), operator_namespace: Some("chaoslab-system".into()) }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn opted_in_namespaces_are_allowed() {
        assert_eq!(guard().check("lab", &labels(&[("chaoslab.dev/chaos", "enabled")])), Ok(()));
    }

    #[test]
    fn namespaces_without_the_label_or_with_another_value_are_refused_with_the_fix() {
        for l in [labels(&[]), labels(&[("chaoslab.dev/chaos", "disabled")])] {
            let err = guard().check("lab", &l).unwrap_err();
            assert_eq!(err.reason(), "NamespaceNotOptedIn");
            assert!(err.to_string().contains("kubectl label namespace lab chaoslab.dev/chaos=enabled"), "{err}");
        }
    }

    #[test]
    fn system_and_operator_namespaces_are_refused_even_when_labelled() {
        let opted = labels(&[("chaoslab.dev/chaos", "enabled")]);
        for ns in ["kube-system", "kube-public", "kube-node-lease", "chaoslab-system"] {
            assert_eq!(guard().check(ns, &opted).unwrap_err().reason(), "ProtectedNamespace", "{ns}");
        }
    }

    #[test]
    fn the_label_is_configurable() {
        let g = TargetGuard { opt_in: "team.io/chaos=yes".parse().unwrap(), operator_namespace: None };
        assert!(g.check("lab", &labels(&[("team.io/chaos", "yes")])).is_ok());
        assert!(g.check("lab", &labels(&[("chaoslab.dev/chaos", "enabled")])).is_err());
        assert!("nonsense".parse::<OptInLabel>().unwrap_err().contains("KEY=VALUE"));
        assert!("=x".parse::<OptInLabel>().is_err());
    }
}
