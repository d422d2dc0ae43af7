//! The judged kinds' core (CircuitBreakerTrial, AutoscalingCheck, Drill), written once for every
//! environment: the phase timeline and fault slots, and the judgement of what a run measured.
//! Pure: it knows nothing of Kubernetes or of processes, only of plans and measured figures.

pub mod judge;
pub mod timeline;
