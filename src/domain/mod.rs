//! Pure rules, no API client: target selection, namespace safety, and each kind's planning and
//! verdicts. Everything here is unit-tested from plain values.

pub mod expression;
pub mod guard;
pub mod podkill;
pub mod selection;
pub mod spec_check;

/// Something worth telling a person, published by the controller as a Kubernetes Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// CamelCase reason, e.g. `Killed`.
    pub reason: &'static str,
    pub message: String,
}

impl Note {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: false, reason, message: message.into() }
    }

    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: true, reason, message: message.into() }
    }
}
