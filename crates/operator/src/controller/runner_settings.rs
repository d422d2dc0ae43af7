//! What the operator needs to know to start LoadTest runners: a leaf of `Context`, so the
//! shared glue names no controller's module.

/// What the operator needs to know to start runners.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// The image runner pods run (the operator's own).
    pub image: String,
    /// The ClusterRole runner pods are bound to.
    pub role: String,
}
