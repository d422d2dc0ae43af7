//! The judged kinds' core (CircuitBreakerTrial, AutoscalingCheck, Drill), written once for every
//! environment: the plan of a run (timeline, fault slots, load, rules), the decisions of what is
//! due at each moment, and the judgement of what a run measured.
//! Pure: it knows nothing of Kubernetes or of processes, only of plans and measured figures.

pub mod autoscale;
pub mod breaker;
pub mod cue;
pub mod drive;
pub mod judge;
pub mod plan;
pub mod scaling;
pub mod timeline;
