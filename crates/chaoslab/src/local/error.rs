//! Why the lab's topology could not start: one error for the processes, the pods and the
//! topology that starts them (kept apart, so `pods` and `process` need not know `lab`).

/// Why the topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot start `{exe} {role}`: {source}")]
    Spawn { exe: String, role: String, source: std::io::Error },
    #[error("cannot listen on loopback for the {service} Service's balancer: {source}")]
    Balancer { service: String, source: std::io::Error },
    #[error("{name} did not become ready within its start timeout; its last output:\n{logs}")]
    NotReady { name: String, logs: String },
}
