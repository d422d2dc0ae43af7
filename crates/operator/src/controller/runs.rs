//! The Drills and CircuitBreakerTrials this operator is conducting: a task per run, by UID, and
//! the signal that stops them all when the operator stops. A leaf: it knows no controller.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The runs this operator conducts, by their UID. A Running run absent from here was begun by
/// an operator that is gone.
#[derive(Clone, Debug, Default)]
pub struct Runs {
    tasks: Arc<Mutex<HashMap<String, JoinHandle<()>>>>,
    /// Cancelled when the operator stops: every run is then stopped like an abort.
    stopping: CancellationToken,
}

impl Runs {
    /// Whether the operator is stopping (its runs must stop too).
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Asks every run to stop and waits for them, at most `limit`.
    pub async fn stop_all(&self, limit: Duration) {
        self.stopping.cancel();
        let handles: Vec<JoinHandle<()>> =
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, h)| h).collect();
        if handles.is_empty() {
            return;
        }
        tracing::info!(runs = handles.len(), "stopping the runs in progress");
        if tokio::time::timeout(limit, futures::future::join_all(handles)).await.is_err() {
            tracing::warn!("runs still going at shutdown; their children end at their own expiry");
        }
    }

    pub fn conducting(&self, uid: &str) -> bool {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).get(uid).is_some_and(|h| !h.is_finished())
    }

    pub fn take(&self, uid: &str) -> Option<JoinHandle<()>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(uid)
    }

    pub fn insert(&self, uid: String, handle: JoinHandle<()>) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).insert(uid, handle);
    }
}
