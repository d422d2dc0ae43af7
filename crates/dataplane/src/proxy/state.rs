//! The proxy's current fault set, replaced atomically, and the dead-man switch.
//!
//! Each request (http) or connection (tcp) reads the set once, at its start: one read lock and
//! one `Arc` clone, never held across an await. A replacement (`PUT`), a removal (`DELETE`), the
//! set's expiry and the start of draining all *release* what the old set holds back: requests
//! waiting in a blackhole or a latency are let go at once (see the http and tcp modules for what
//! each then does).

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use super::{
    faults::{FaultSet, FaultSetError},
    plan::FaultPlan,
};
use crate::api::fault::{Fault, ProxyProtocol};

/// One installed set, as every request sees it.
#[derive(Debug, Default)]
pub struct Installed {
    /// The set as submitted, `None` for pass-through.
    pub set: Option<FaultSet>,
    /// The seed the dice use: the set's, or one drawn at random when it had none.
    pub seed: u64,
    pub plan: FaultPlan,
    /// When the set stops applying, on tokio's clock (`None`: no set).
    pub deadline: Option<Instant>,
    /// When the set begins to apply, on tokio's clock (`None`: at once).
    pub start: Option<Instant>,
    /// Counts installations, from 0 (the initial state).
    pub generation: u64,
}

impl Installed {
    /// The plan, if it applies at `now`: there is a set, it has begun and it has not expired.
    pub fn active_plan(&self, now: Instant) -> Option<&FaultPlan> {
        let begun = self.start.is_none_or(|start| now >= start);
        match self.deadline {
            Some(deadline) if begun && now < deadline && !self.plan.is_empty() => Some(&self.plan),
            _ => None,
        }
    }

    pub fn is_active(&self, now: Instant) -> bool {
        self.active_plan(now).is_some()
    }
}

/// What `GET /faults` (and a `PUT` or `DELETE`) answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultsView {
    pub faults: Vec<Fault>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Whether the set applies now (there is one, it has faults and it has not expired).
    pub active: bool,
}

/// The cell holding the current set.
#[derive(Debug)]
pub struct FaultCell {
    protocol: ProxyProtocol,
    current: RwLock<Arc<Installed>>,
    /// Bumped at every replacement, at expiry and when draining starts: the release signal.
    changes: watch::Sender<u64>,
    draining: AtomicBool,
}

impl FaultCell {
    pub fn new(protocol: ProxyProtocol) -> FaultCell {
        FaultCell {
            protocol,
            current: RwLock::new(Arc::new(Installed::default())),
            changes: watch::Sender::new(0),
            draining: AtomicBool::new(false),
        }
    }

    pub fn protocol(&self) -> ProxyProtocol {
        self.protocol
    }

    /// The set now in place (what a request reads at its start).
    pub fn current(&self) -> Arc<Installed> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            // A writer never panics while holding the lock; if one did, the value is intact.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Parses, validates and installs a set from JSON; on error nothing changes.
    pub fn put_json(&self, json: &[u8]) -> Result<Arc<Installed>, FaultSetError> {
        let set = FaultSet::parse(json, self.protocol, Timestamp::now())?;
        Ok(self.install(Some(set)))
    }

    /// Installs `set` (validated by the caller), or pass-through for `None`, and releases what
    /// the previous set held back.
    pub fn install(&self, set: Option<FaultSet>) -> Arc<Installed> {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let generation = guard.generation + 1;
        let installed = Arc::new(match set {
            None => Installed { generation, ..Installed::default() },
            Some(set) => {
                let seed = set.seed.unwrap_or_else(rand::random);
                let plan = FaultPlan::compile(&set, seed);
                let deadline = deadline_of(set.expires_at);
                let start = set.starts_at.map(deadline_of);
                Installed { set: Some(set), seed, plan, deadline: Some(deadline), start, generation }
            }
        });
        *guard = Arc::clone(&installed);
        drop(guard);
        self.release();
        installed
    }

    /// Lets go of every request held back under the current set.
    fn release(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A receiver that sees the next release.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Draining: what is held back is released and no fault applies any more.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.release();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// What `GET /faults` shows.
    pub fn view(&self) -> FaultsView {
        view_of(&self.current())
    }

    /// Watches the current set's deadline and releases what it held back when it passes (so a
    /// request blackholed before the expiry does not wait for a change that never comes);
    /// logs the expiry. Runs until the process ends.
    pub async fn watch_expiry(self: Arc<Self>) {
        let mut changes = self.subscribe();
        loop {
            // Seen first, then read: a replacement in between is seen as a change below.
            changes.borrow_and_update();
            let installed = self.current();
            match installed.deadline {
                Some(deadline) if Instant::now() < deadline => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            tracing::info!(generation = installed.generation, "the fault set expired: pass-through");
                            self.release();
                            // The release bumped `changes`: mark it seen, then wait for a new set.
                            changes.borrow_and_update();
                            if changes.changed().await.is_err() {
                                return;
                            }
                        }
                        changed = changes.changed() => if changed.is_err() { return },
                    }
                }
                _ => {
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The view of an installed set.
pub fn view_of(installed: &Installed) -> FaultsView {
    match &installed.set {
        None => FaultsView { faults: Vec::new(), expires_at: None, seed: None, active: false },
        Some(set) => FaultsView {
            faults: set.faults.clone(),
            expires_at: Some(set.expires_at),
            seed: Some(installed.seed),
            active: installed.is_active(Instant::now()),
        },
    }
}

/// `expires_at` (wall clock) as a moment on tokio's clock; a past moment is now.
fn deadline_of(expires_at: Timestamp) -> Instant {
    let now = Instant::now();
    let expires = SystemTime::from(expires_at);
    match expires.duration_since(SystemTime::now()) {
        Ok(ahead) => now.checked_add(ahead).unwrap_or_else(|| now + Duration::from_secs(86_400 * 365)),
        Err(_) => now,
    }
}

/// Waits until `changes` sees a release (or its sender is gone, which is never while the proxy
/// runs) or `deadline` passes: what holds a request back waits on this.
pub async fn released(changes: &mut watch::Receiver<u64>, deadline: Option<Instant>) {
    let expiry = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = changes.changed() => {}
        () = expiry => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::fault::FaultType;

    fn set_json(expires_in_ms: i64) -> String {
        set_with_percent(expires_in_ms, 50)
    }

    fn set_with_percent(expires_in_ms: i64, percent: u32) -> String {
        let at = Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_millis(expires_in_ms)).unwrap();
        format!(r#"{{"faults":[{{"type":"reset","percent":{percent}}}],"expiresAt":"{at}","seed":7}}"#)
    }

    #[tokio::test]
    async fn a_put_replaces_the_set_and_a_bad_one_changes_nothing() {
        let cell = FaultCell::new(ProxyProtocol::Http);
        assert!(cell.current().set.is_none());
        assert!(!cell.view().active);
        let installed = cell.put_json(set_json(60_000).as_bytes()).unwrap();
        assert_eq!(installed.generation, 1);
        assert_eq!(installed.seed, 7);
        let view = cell.view();
        assert!(view.active);
        assert_eq!(view.faults[0].kind, FaultType::Reset);
        let bad = set_with_percent(60_000, 0);
        let error = cell.put_json(bad.as_bytes()).unwrap_err();
        assert_eq!(error.to_string(), "faults[0].percent: must be above 0 and at most 100, got 0");
        assert_eq!(cell.view(), view, "unchanged");
        cell.install(None);
        assert_eq!(cell.view(), FaultsView { faults: vec![], expires_at: None, seed: None, active: false });
    }

    #[tokio::test]
    async fn a_past_set_is_accepted_and_inactive_and_expiry_releases() {
        let cell = Arc::new(FaultCell::new(ProxyProtocol::Http));
        cell.put_json(set_json(-1000).as_bytes()).unwrap();
        assert!(!cell.view().active);
        assert!(cell.view().expires_at.is_some());

        tokio::spawn(Arc::clone(&cell).watch_expiry());
        let installed = cell.put_json(set_json(150).as_bytes()).unwrap();
        assert!(installed.is_active(Instant::now()));
        let mut changes = cell.subscribe();
        changes.borrow_and_update();
        let started = Instant::now();
        // Held without a deadline of its own: only the expiry watcher's release lets it go.
        released(&mut changes, None).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_millis(400), "{waited:?}");
        assert!(!cell.current().is_active(Instant::now()));
    }

    #[tokio::test]
    async fn a_set_with_a_start_passes_through_until_then() {
        let cell = FaultCell::new(ProxyProtocol::Http);
        let at = |ms: i64| Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_millis(ms)).unwrap();
        let json = format!(
            r#"{{"faults":[{{"type":"reset"}}],"startsAt":"{}","expiresAt":"{}","seed":7}}"#,
            at(300),
            at(60_000)
        );
        let installed = cell.put_json(json.as_bytes()).unwrap();
        let now = Instant::now();
        assert!(!installed.is_active(now), "not begun");
        assert!(installed.is_active(now + Duration::from_millis(400)), "begun");
        let backwards = format!(r#"{{"faults":[],"startsAt":"{}","expiresAt":"{}"}}"#, at(60_000), at(1000));
        let error = cell.put_json(backwards.as_bytes()).unwrap_err().to_string();
        assert!(error.starts_with("startsAt: must be before expiresAt"), "{error}");
    }
}
