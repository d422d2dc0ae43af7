//! The service's lifecycle: readiness (not ready during the start delay or once shutting down),
//! the warm-up's extra latency, what SIGTERM leads to, and the count of requests in flight that
//! a graceful shutdown drains. Pure apart from the in-flight counter's wake-up; time is a
//! parameter, so each rule is tested without sleeping.
//!
//! A graceful shutdown in Kubernetes: the pod gets SIGTERM while its endpoint is still listed,
//! and kube-proxies and load balancers take a moment to stop sending to it. So the service first
//! fails readiness and keeps serving for `shutdownDelay`, then stops accepting connections and
//! lets the requests in flight finish, for at most `drainTimeout`, and exits 0. Without it
//! (`graceful: false`) the process exits at once and every request in flight is lost — what the
//! pod-kill drill measures.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::config;

/// What `/readyz` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Within the start delay: ready in this long.
    Starting {
        ready_in: Duration,
    },
    Ready,
    /// SIGTERM came: serving on, but no longer taking new traffic.
    ShuttingDown,
}

/// What SIGTERM leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownPlan {
    /// Exit at once, dropping every request in flight.
    ExitNow,
    /// Fail readiness and serve on for `serve_for`, then stop accepting and wait at most
    /// `drain_for` for the requests in flight, then exit 0.
    Graceful { serve_for: Duration, drain_for: Duration },
}

impl ShutdownPlan {
    pub fn of(config: &config::Lifecycle) -> ShutdownPlan {
        if config.graceful {
            ShutdownPlan::Graceful {
                serve_for: config.shutdown_delay.as_std(),
                drain_for: config.drain_timeout.as_std(),
            }
        } else {
            ShutdownPlan::ExitNow
        }
    }
}

/// When the service started and whether it is shutting down.
#[derive(Debug)]
pub struct Lifecycle {
    started: Instant,
    shutdown_at: Mutex<Option<Instant>>,
}

impl Lifecycle {
    pub fn new(started: Instant) -> Lifecycle {
        Lifecycle { started, shutdown_at: Mutex::new(None) }
    }

    /// Records SIGTERM at `now` (the first one counts).
    pub fn begin_shutdown(&self, now: Instant) {
        if let Ok(mut at) = self.shutdown_at.lock() {
            at.get_or_insert(now);
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutdown_at.lock().map(|at| at.is_some()).unwrap_or(true)
    }

    pub fn readiness(&self, now: Instant, config: &config::Lifecycle) -> Readiness {
        if self.shutting_down() {
            return Readiness::ShuttingDown;
        }
        let ready_at = self.started + config.start_delay.as_std();
        if now < ready_at { Readiness::Starting { ready_in: ready_at - now } } else { Readiness::Ready }
    }

    /// The warm-up's extra latency at `now`: `warmupLatency` when the start delay ends, falling
    /// linearly to nothing over `warmup`.
    pub fn warmup_extra(&self, now: Instant, config: &config::Lifecycle) -> Duration {
        let warmup = config.warmup.as_std();
        if warmup.is_zero() {
            return Duration::ZERO;
        }
        let from = self.started + config.start_delay.as_std();
        let into = now.saturating_duration_since(from);
        if into >= warmup {
            return Duration::ZERO;
        }
        config.warmup_latency.as_std().mul_f64(1.0 - into.as_secs_f64() / warmup.as_secs_f64())
    }
}

/// The requests in flight, and a wake-up when there are none.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicU64,
    idle: Notify,
}

/// One request in flight; it leaves the count when dropped (answered or canceled).
#[derive(Debug)]
pub struct InFlightGuard {
    of: Arc<InFlight>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.of.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.of.idle.notify_waiters();
        }
    }
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard { of: self.clone() }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        loop {
            // Registered before the check, so a drop between the check and the wait is seen.
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;
    use crate::api::GoDuration;

    fn lifecycle(start_delay: u64, warmup: u64, warmup_latency_ms: u64) -> config::Lifecycle {
        config::Lifecycle {
            start_delay: GoDuration::from_secs(start_delay),
            warmup: GoDuration::from_secs(warmup),
            warmup_latency: GoDuration(Duration::from_millis(warmup_latency_ms)),
            ..config::Lifecycle::default()
        }
    }

    #[test]
    fn not_ready_during_the_start_delay_nor_once_shutting_down() {
        let t0 = Instant::now();
        let l = Lifecycle::new(t0);
        let config = lifecycle(10, 0, 0);
        assert_eq!(l.readiness(t0, &config), Readiness::Starting { ready_in: Duration::from_secs(10) });
        let at = t0 + Duration::from_millis(9_500);
        assert_eq!(l.readiness(at, &config), Readiness::Starting { ready_in: Duration::from_millis(500) });
        assert_eq!(l.readiness(t0 + Duration::from_secs(10), &config), Readiness::Ready);
        assert_eq!(l.readiness(t0, &lifecycle(0, 0, 0)), Readiness::Ready, "no delay: ready at once");
        l.begin_shutdown(t0 + Duration::from_secs(20));
        assert!(l.shutting_down());
        assert_eq!(l.readiness(t0 + Duration::from_secs(21), &config), Readiness::ShuttingDown);
    }

    #[test]
    fn warm_up_latency_falls_linearly_after_the_start_delay() {
        let t0 = Instant::now();
        let l = Lifecycle::new(t0);
        let config = lifecycle(2, 10, 200);
        let at = |ms: u64| l.warmup_extra(t0 + Duration::from_millis(ms), &config);
        assert_eq!(at(0), Duration::from_millis(200), "full extra before and at the end of the delay");
        assert_eq!(at(2_000), Duration::from_millis(200));
        assert_eq!(at(7_000), Duration::from_millis(100), "half way");
        assert_eq!(at(12_000), Duration::ZERO);
        assert_eq!(l.warmup_extra(t0, &lifecycle(0, 0, 200)), Duration::ZERO, "no warm-up");
    }

    #[test]
    fn sigterm_leads_to_the_plan_the_config_says() {
        let mut config = config::Lifecycle::default();
        assert_eq!(
            ShutdownPlan::of(&config),
            ShutdownPlan::Graceful { serve_for: Duration::from_secs(5), drain_for: Duration::from_secs(20) }
        );
        config.graceful = false;
        assert_eq!(ShutdownPlan::of(&config), ShutdownPlan::ExitNow);
    }

    #[test]
    fn idle_waits_for_the_last_request_in_flight() {
        let in_flight = Arc::new(InFlight::default());
        assert_eq!(in_flight.idle().now_or_never(), Some(()), "nothing in flight: idle at once");
        let one = in_flight.enter();
        let two = in_flight.enter();
        assert_eq!(in_flight.count(), 2);
        let mut idle = Box::pin(in_flight.idle());
        assert!((&mut idle).now_or_never().is_none());
        drop(one);
        assert!((&mut idle).now_or_never().is_none(), "one is still in flight");
        drop(two);
        assert_eq!((&mut idle).now_or_never(), Some(()));
        assert_eq!(in_flight.count(), 0);
    }
}
