//! The six kinds by name: how a person may write each one on the command line (`drill`,
//! `drills`, `dr`, `Drill`) and where each lives in the API.

use kube::core::ApiResource;

use super::{AutoscalingCheck, CircuitBreakerTrial, Drill, LoadTest, PodKill, ServiceFault};

/// One of chaoslab's kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExperimentKind {
    LoadTest,
    PodKill,
    ServiceFault,
    CircuitBreakerTrial,
    AutoscalingCheck,
    Drill,
}

impl ExperimentKind {
    /// Every kind, in the order the CRDs are listed.
    pub const ALL: [ExperimentKind; 6] = [
        ExperimentKind::LoadTest,
        ExperimentKind::PodKill,
        ExperimentKind::ServiceFault,
        ExperimentKind::CircuitBreakerTrial,
        ExperimentKind::AutoscalingCheck,
        ExperimentKind::Drill,
    ];

    /// The kind as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentKind::LoadTest => "LoadTest",
            ExperimentKind::PodKill => "PodKill",
            ExperimentKind::ServiceFault => "ServiceFault",
            ExperimentKind::CircuitBreakerTrial => "CircuitBreakerTrial",
            ExperimentKind::AutoscalingCheck => "AutoscalingCheck",
            ExperimentKind::Drill => "Drill",
        }
    }

    /// The short name the CRD declares (`kubectl get dr`).
    pub fn short_name(self) -> &'static str {
        match self {
            ExperimentKind::LoadTest => "lt",
            ExperimentKind::PodKill => "pk",
            ExperimentKind::ServiceFault => "sf",
            ExperimentKind::CircuitBreakerTrial => "cbt",
            ExperimentKind::AutoscalingCheck => "asc",
            ExperimentKind::Drill => "dr",
        }
    }

    /// The kind exactly as in `kind:` (case matters there, as in Kubernetes).
    pub fn from_kind(kind: &str) -> Option<ExperimentKind> {
        ExperimentKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// The kind as a person types it: any case, singular or plural, or the short name.
    pub fn from_name(name: &str) -> Option<ExperimentKind> {
        let lower = name.to_ascii_lowercase();
        ExperimentKind::ALL.into_iter().find(|k| {
            let singular = k.as_str().to_ascii_lowercase();
            lower == singular || lower == format!("{singular}s") || lower == k.short_name()
        })
    }

    /// Every accepted spelling, for error messages: `loadtest (lt), podkill (pk), ...`.
    pub fn allowed_names() -> String {
        ExperimentKind::ALL
            .iter()
            .map(|k| format!("{} ({})", k.as_str().to_ascii_lowercase(), k.short_name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where the kind lives in the API, for untyped requests.
    pub fn api_resource(self) -> ApiResource {
        match self {
            ExperimentKind::LoadTest => ApiResource::erase::<LoadTest>(&()),
            ExperimentKind::PodKill => ApiResource::erase::<PodKill>(&()),
            ExperimentKind::ServiceFault => ApiResource::erase::<ServiceFault>(&()),
            ExperimentKind::CircuitBreakerTrial => ApiResource::erase::<CircuitBreakerTrial>(&()),
            ExperimentKind::AutoscalingCheck => ApiResource::erase::<AutoscalingCheck>(&()),
            ExperimentKind::Drill => ApiResource::erase::<Drill>(&()),
        }
    }

    /// Whether a run of this kind drives load through a child LoadTest named `<run>-load`.
    pub fn has_child_load(self) -> bool {
        matches!(self, ExperimentKind::CircuitBreakerTrial | ExperimentKind::AutoscalingCheck | ExperimentKind::Drill)
    }
}

impl std::fmt::Display for ExperimentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ExperimentKind;

    #[test]
    fn every_spelling_a_person_types_names_the_kind() {
        for (typed, kind) in [
            ("drill", ExperimentKind::Drill),
            ("Drills", ExperimentKind::Drill),
            ("cbt", ExperimentKind::CircuitBreakerTrial),
            ("circuitbreakertrials", ExperimentKind::CircuitBreakerTrial),
            ("ASC", ExperimentKind::AutoscalingCheck),
            ("loadtest", ExperimentKind::LoadTest),
            ("pk", ExperimentKind::PodKill),
            ("servicefault", ExperimentKind::ServiceFault),
        ] {
            assert_eq!(ExperimentKind::from_name(typed), Some(kind), "{typed}");
        }
        for wrong in ["deployment", "drillz", "", "d"] {
            assert_eq!(ExperimentKind::from_name(wrong), None, "{wrong}");
        }
        assert_eq!(ExperimentKind::from_kind("drill"), None, "kind: is case-sensitive");
    }

    #[test]
    fn names_and_short_names_are_the_crds() {
        let crds = crate::crds();
        for (kind, crd) in ExperimentKind::ALL.into_iter().zip(&crds) {
            assert_eq!(crd.spec.names.kind, kind.as_str());
            assert_eq!(crd.spec.names.short_names.as_deref(), Some(&[kind.short_name().to_owned()][..]), "{kind}");
            let resource = kind.api_resource();
            assert_eq!(resource.plural, crd.spec.names.plural);
            assert_eq!(resource.api_version, crate::API_VERSION);
        }
    }
}
