//! The `chaoslab.dev/v1alpha1` API: the six kinds, the pieces they share, and their CRDs.
//!
//! These types are the contract with users (`kubectl explain` reads their doc comments) and are
//! validated by the API server through the schema and CEL rules generated from them.

pub mod common;
pub mod fault;
pub mod figures;
pub mod kinds;
pub mod load;
pub mod podkill;
pub mod trial;

use std::fmt::Debug;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, Resource, core::NamespaceResourceScope};
use serde::{Serialize, de::DeserializeOwned};

pub use common::{GoDuration, Phase, RunStatus, Verdict};
pub use fault::ServiceFault;
pub use kinds::ExperimentKind;
pub use load::LoadTest;
pub use podkill::PodKill;
pub use trial::{AutoscalingCheck, CircuitBreakerTrial, Drill};

pub const GROUP: &str = "chaoslab.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "chaoslab.dev/v1alpha1";

/// CEL transition rule on every kind: the spec may change while the run is Pending, never after.
/// Changing a running experiment would make its figures describe something nobody asked for.
pub const IMMUTABLE_WHILE_RUNNING: &str = "!has(oldSelf.status) || !has(oldSelf.status.phase) || oldSelf.status.phase == 'Pending' || self.spec == oldSelf.spec";
pub const IMMUTABLE_WHILE_RUNNING_MESSAGE: &str = "spec cannot change once the run has started (status.phase is not Pending): delete the resource and create it again to run differently";

/// What the controllers need of every kind, whatever it does.
pub trait Experiment:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + CustomResourceExt
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind's name, as in `kind:`.
    const KIND: &'static str;
    /// The lifecycle part of the status, if there is a status yet.
    fn run_status(&self) -> Option<&RunStatus>;
}

macro_rules! experiment {
    ($($kind:ident),+ $(,)?) => {$(
        impl Experiment for $kind {
            const KIND: &'static str = stringify!($kind);
            fn run_status(&self) -> Option<&RunStatus> {
                self.status.as_ref().map(|s| &s.run)
            }
        }
    )+};
}
experiment!(LoadTest, PodKill, ServiceFault, CircuitBreakerTrial, AutoscalingCheck, Drill);

/// The CRDs of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        LoadTest::crd(),
        PodKill::crd(),
        ServiceFault::crd(),
        CircuitBreakerTrial::crd(),
        AutoscalingCheck::crd(),
        Drill::crd(),
    ]
}

/// The file each CRD is written to under `crds/` (and the chart's `crds/`).
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML, as `chaoslab crd` prints it and `crds/` holds it.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(crd)
}
