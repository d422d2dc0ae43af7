//! Precise sleeps for injected latency.
//!
//! tokio's timer has a 1 ms granularity and rounds up twice (its wheel, then `epoll_wait`'s
//! millisecond timeout), so a tokio sleep ends 0 to 2 ms late, about 1 ms on average: an
//! injected 50 ms would be measured as 51. Here tokio sleeps until [`FINE`] before the deadline
//! (cancellable, as any tokio sleep) and a timer thread of its own (a condition variable with a
//! nanosecond timeout, so the kernel's timer slack of about 50 µs) wakes the task at the deadline.
//! Only that last stretch is registered with the thread, so its heap holds only the sleeps ending
//! within [`FINE`]; a sleep dropped meanwhile leaves an entry that is woken harmlessly then.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    future::Future,
    pin::Pin,
    sync::{Condvar, Mutex, OnceLock},
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::time::Instant;

/// The last stretch of a sleep that the timer thread handles.
pub const FINE: Duration = Duration::from_millis(3);

/// Sleeps until `deadline`, to within about 0.1 ms.
pub async fn sleep_until(deadline: Instant) {
    if let Some(coarse) = deadline.checked_sub(FINE)
        && coarse > Instant::now()
    {
        tokio::time::sleep_until(coarse).await;
    }
    match timer() {
        Some(timer) => Fine { deadline: deadline.into_std(), timer }.await,
        None => tokio::time::sleep_until(deadline).await,
    }
}

struct Entry {
    at: std::time::Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

struct Timer {
    heap: Mutex<Heap>,
    wake: Condvar,
}

static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();

/// The timer thread, started on first use; `None` if it could not be (tokio's timer then).
fn timer() -> Option<&'static Timer> {
    *TIMER.get_or_init(|| {
        // One per process, for its whole life.
        let timer: &'static Timer =
            Box::leak(Box::new(Timer { heap: Mutex::new(Heap::default()), wake: Condvar::new() }));
        match std::thread::Builder::new().name("chaoslab-timer".into()).spawn(move || timer.run()) {
            Ok(_) => Some(timer),
            Err(error) => {
                tracing::warn!(%error, "cannot start the precise timer thread; delays may be up to 2 ms late");
                None
            }
        }
    })
}

impl Timer {
    fn register(&self, at: std::time::Instant, waker: Waker) {
        let Ok(mut heap) = self.heap.lock() else { return waker.wake() };
        let earliest = heap.entries.peek().is_none_or(|Reverse(first)| at < first.at);
        heap.seq += 1;
        let seq = heap.seq;
        heap.entries.push(Reverse(Entry { at, seq, waker }));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let Ok(mut heap) = self.heap.lock() else { return };
        let mut due = Vec::new();
        loop {
            let now = std::time::Instant::now();
            while heap.entries.peek().is_some_and(|Reverse(first)| first.at <= now) {
                if let Some(Reverse(entry)) = heap.entries.pop() {
                    due.push(entry.waker);
                }
            }
            if !due.is_empty() {
                drop(heap);
                due.drain(..).for_each(Waker::wake);
                heap = match self.heap.lock() {
                    Ok(heap) => heap,
                    Err(_) => return,
                };
                continue;
            }
            let next = heap.entries.peek().map(|Reverse(first)| first.at.saturating_duration_since(now));
            heap = match next {
                None => match self.wake.wait(heap) {
                    Ok(heap) => heap,
                    Err(_) => return,
                },
                Some(timeout) => match self.wake.wait_timeout(heap, timeout) {
                    Ok((heap, _)) => heap,
                    Err(_) => return,
                },
            };
        }
    }
}

struct Fine {
    deadline: std::time::Instant,
    timer: &'static Timer,
}

impl Future for Fine {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::time::Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Registered at each poll before the deadline (rare: a wake-up comes at the deadline),
        // so the latest waker is always the one woken.
        self.timer.register(self.deadline, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_end_within_a_fraction_of_a_millisecond_after_their_deadline() {
        let mut late = Vec::new();
        for i in 0..40u64 {
            let deadline = Instant::now() + Duration::from_micros(5_000 + i * 137);
            sleep_until(deadline).await;
            // Never early: `duration_since` would hide an early wake-up as zero.
            let after = Instant::now().checked_duration_since(deadline);
            let after = after.unwrap_or_else(|| panic!("sleep {i} ended before its deadline"));
            late.push(after.as_secs_f64() * 1000.0);
        }
        late.sort_by(f64::total_cmp);
        let median = late[late.len() / 2];
        // tokio's own timer: about 1 ms late on average; this one about 0.1 ms (on a busy
        // machine, more: hence the loose bound).
        assert!(median < 0.6, "median lateness {median:.3} ms: {late:?}");
    }

    #[tokio::test]
    async fn many_sleeps_at_once_all_end() {
        let start = Instant::now();
        let sleeps = (0..200u64).map(|i| sleep_until(start + Duration::from_micros(i * 50)));
        futures::future::join_all(sleeps).await;
        assert!(start.elapsed() >= Duration::from_micros(199 * 50));
    }
}
