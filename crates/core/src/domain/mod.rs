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
    /// The part of the run the note is about (a fault, a pod, a round), when several notes of
    /// the same reason must stay apart: an Event recorder folds Events of one reason and action
    /// into one series that keeps only the first note.
    pub about: Option<String>,
}

impl Note {
    pub fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: false, reason, message: message.into(), about: None }
    }

    /// The same note, about `part` of the run (see [`Note::about`]).
    pub fn about(mut self, part: impl Into<String>) -> Self {
        self.about = Some(part.into());
        self
    }

    pub fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Self { warning: true, reason, message: message.into(), about: None }
    }
}
