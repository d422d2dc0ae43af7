//! Bandwidth: a pacer (a token bucket kept as virtual time) in the body stream (http) or the
//! copy loop (tcp).
//!
//! Bytes go out in slices of at most 1/50 of the rate (20 ms worth, at least 256 bytes and at
//! most 64 KiB). The link is "busy" until `next`: a slice may go once `next` has come, and
//! moves `next` on by its own transmission time (`len / rate`). Being woken late by the timer
//! (1 ms granularity) does not slow the flow down: up to [`TOLERANCE`] of lateness is caught up.
//! A transfer of `n` bytes thus takes `(n − its last slice) / rate`, the last slice going as
//! soon as its predecessors' time is over: 1 MiB at 256 KiB/s, 4.0 s. The first slice goes at once; nothing is ever buffered beyond one slice. (The tcp copy loop
//! uses the same pacer: `super::tcp::copy`.)

use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// How much lateness is caught up (bursts of at most this much transmission time).
pub const TOLERANCE: Duration = Duration::from_millis(20);

/// Paces bytes at a rate in bytes per second.
#[derive(Debug)]
pub struct Pacer {
    rate: u64,
    /// When the link is free again.
    next: Instant,
}

impl Pacer {
    pub fn new(rate: u64, now: Instant) -> Pacer {
        Pacer { rate: rate.max(1), next: now }
    }

    /// The most bytes one slice carries.
    pub fn slice(&self) -> usize {
        (self.rate / 50).clamp(256, 64 * 1024) as usize
    }

    /// When the next slice may go.
    pub fn ready_at(&self) -> Instant {
        self.next
    }

    /// Accounts for `bytes` sent at `now` (which is at or after [`Pacer::ready_at`]).
    pub fn sent(&mut self, bytes: usize, now: Instant) {
        let floor = now.checked_sub(TOLERANCE).unwrap_or(now);
        let start = self.next.max(floor);
        self.next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
    }
}

/// A body whose data frames are paced.
#[derive(Debug)]
pub struct Shaped<B> {
    inner: B,
    pacer: Pacer,
    /// Data taken from `inner` and not sent yet.
    pending: Bytes,
    sleep: Pin<Box<Sleep>>,
}

impl<B> Shaped<B> {
    pub fn new(inner: B, rate: u64) -> Shaped<B> {
        let now = Instant::now();
        Shaped {
            inner,
            pacer: Pacer::new(rate, now),
            pending: Bytes::new(),
            sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }
}

impl<B> Body for Shaped<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let now = Instant::now();
                let at = this.pacer.ready_at();
                if at > now {
                    if this.sleep.deadline() != at {
                        this.sleep.as_mut().reset(at);
                    }
                    ready!(this.sleep.as_mut().poll(cx));
                }
                let n = this.pending.len().min(this.pacer.slice());
                let slice = this.pending.split_to(n);
                this.pacer.sent(n, Instant::now());
                return Poll::Ready(Some(Ok(Frame::data(slice))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let pending = self.pending.remaining() as u64;
        hint.set_lower(hint.lower() + pending);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + pending);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[test]
    fn slices_are_a_fiftieth_of_the_rate_within_bounds() {
        let now = Instant::now();
        assert_eq!(Pacer::new(256 * 1024, now).slice(), 5242);
        assert_eq!(Pacer::new(1, now).slice(), 256);
        assert_eq!(Pacer::new(1 << 40, now).slice(), 65536);
    }

    #[test]
    fn the_pacer_spaces_slices_by_their_transmission_time_and_catches_up_lateness() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, t0);
        assert_eq!(p.ready_at(), t0);
        p.sent(100, t0);
        assert_eq!(p.ready_at(), t0 + Duration::from_millis(100));
        // Woken 5 ms late: the next slot counts from when it was due, not from now.
        p.sent(100, t0 + Duration::from_millis(105));
        assert_eq!(p.ready_at(), t0 + Duration::from_millis(200));
        // Idle for a second: only TOLERANCE of credit, not a second's worth of burst.
        let later = t0 + Duration::from_millis(1200);
        p.sent(100, later);
        assert_eq!(p.ready_at(), later - TOLERANCE + Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_shaped_body_takes_its_size_over_the_rate() {
        let rate = 256 * 1024;
        let body = Full::new(Bytes::from(vec![7u8; 1 << 20]));
        let started = Instant::now();
        let mut shaped = Shaped::new(body, rate);
        let mut got = 0;
        let mut frames = 0;
        while let Some(frame) = shaped.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= 5242);
            got += data.len();
            frames += 1;
        }
        assert_eq!(got, 1 << 20);
        assert_eq!(frames, (1usize << 20).div_ceil(5242));
        let took = started.elapsed().as_secs_f64();
        // (1 MiB − the last, 176-byte slice) / 256 KiB/s = 3.9993 s
        assert!((took - 3.9993).abs() < 0.002, "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn trailers_pass_through_a_shaped_body() {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> =
            vec![Ok(Frame::data(Bytes::from_static(b"abc"))), Ok(Frame::trailers(http::HeaderMap::new()))];
        let mut shaped = Shaped::new(StreamBody::new(futures::stream::iter(frames)), 10);
        assert_eq!(shaped.frame().await.unwrap().unwrap().into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(shaped.frame().await.unwrap().unwrap().is_trailers());
        assert!(shaped.frame().await.is_none());
    }
}
