//! The bulkhead: at most `maxConcurrent` calls to one upstream at once, at most `maxQueue` more
//! waiting for a slot, and every other call rejected at once — so a slow dependency ties up a
//! bounded share of the service instead of all of it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::BulkheadConfig;

/// Why a call did not get a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("every slot is taken and the queue is full")]
    Full,
    #[error("no slot freed up within the wait")]
    Waited,
}

/// A slot: the call holds it until it ends (dropped).
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// The bulkhead of one upstream.
#[derive(Debug)]
pub struct Bulkhead {
    slots: Arc<Semaphore>,
    max_concurrent: u32,
    max_queue: u32,
    queued: AtomicU32,
    rejected: AtomicU64,
}

/// Gives the queue place back when a queued call stops waiting, however it stops.
struct QueuePlace<'a>(&'a AtomicU32);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bulkhead {
    pub fn new(config: &BulkheadConfig) -> Bulkhead {
        Bulkhead {
            slots: Arc::new(Semaphore::new(config.max_concurrent as usize)),
            max_concurrent: config.max_concurrent,
            max_queue: config.max_queue,
            queued: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// A slot now, else a place in the queue and a slot within `wait`, else rejected.
    pub async fn enter(&self, wait: Duration) -> Result<Slot, Rejected> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let reserved =
            self.queued.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| (q < self.max_queue).then_some(q + 1));
        if reserved.is_err() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Rejected::Full);
        }
        let _place = QueuePlace(&self.queued);
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // The semaphore is never closed; a timeout or a close both mean no slot.
            _ => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Rejected::Waited)
            }
        }
    }

    /// `(in use, queued, rejected so far)`.
    pub fn figures(&self) -> (u32, u32, u64) {
        let free = u32::try_from(self.slots.available_permits()).unwrap_or(u32::MAX);
        (
            self.max_concurrent.saturating_sub(free),
            self.queued.load(Ordering::SeqCst),
            self.rejected.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn bulkhead(max_concurrent: u32, max_queue: u32) -> Bulkhead {
        Bulkhead::new(&BulkheadConfig { enabled: true, max_concurrent, max_queue })
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn slots_then_queue_then_rejection_and_a_freed_slot_goes_to_the_queue() {
        let b = bulkhead(2, 1);
        let first = b.enter(LONG).now_or_never().expect("at once").expect("slot 1");
        let _second = b.enter(LONG).now_or_never().expect("at once").expect("slot 2");
        assert_eq!(b.figures(), (2, 0, 0));
        // The third call queues: its future is pending.
        let mut queued = Box::pin(b.enter(LONG));
        assert!((&mut queued).now_or_never().is_none(), "waits in the queue");
        assert_eq!(b.figures(), (2, 1, 0));
        // The fourth finds the queue full and is rejected at once.
        let fourth = b.enter(LONG).now_or_never().expect("at once");
        assert_eq!(fourth.err(), Some(Rejected::Full));
        assert_eq!(b.figures(), (2, 1, 1));
        // A call ends: its slot goes to the queued call, and the queue place is free again.
        drop(first);
        let third = (&mut queued).now_or_never().expect("ready").expect("slot for the queued call");
        drop(queued);
        assert_eq!(b.figures(), (2, 0, 1));
        drop(third);
        assert_eq!(b.figures(), (1, 0, 1));
    }

    #[tokio::test]
    async fn a_queued_call_that_gives_up_frees_its_place_and_counts_as_rejected() {
        let b = bulkhead(1, 1);
        let _slot = b.enter(LONG).now_or_never().expect("at once").expect("slot");
        // A queued call abandoned by its caller (the request was canceled) leaves the queue.
        let mut abandoned = Box::pin(b.enter(LONG));
        assert!((&mut abandoned).now_or_never().is_none());
        assert_eq!(b.figures().1, 1);
        drop(abandoned);
        assert_eq!(b.figures().1, 0);
        // A wait of zero ends within a timer tick: rejected as Waited (it had a queue place),
        // not Full.
        let gave_up = b.enter(Duration::ZERO).await;
        assert_eq!(gave_up.err(), Some(Rejected::Waited));
        assert_eq!(b.figures(), (1, 0, 1));
    }

    #[tokio::test]
    async fn without_a_queue_the_call_beyond_the_limit_is_rejected() {
        let b = bulkhead(1, 0);
        let _slot = b.enter(LONG).now_or_never().expect("at once").expect("slot");
        assert_eq!(b.enter(LONG).now_or_never().expect("at once").err(), Some(Rejected::Full));
    }
}
