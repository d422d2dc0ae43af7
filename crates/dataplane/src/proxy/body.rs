//! The one body type the proxy sends either way: a streamed body from the other side (paced or
//! not), a fixed one (an abort's) or none. An enum, so nothing is boxed per request.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::shaping::Shaped;

#[derive(Debug)]
pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    Shaped(Shaped<Incoming>),
}

impl ProxyBody {
    /// `body` as it came, paced at `rate` when given.
    pub fn stream(body: Incoming, rate: Option<u64>) -> ProxyBody {
        match rate {
            Some(rate) => ProxyBody::Shaped(Shaped::new(body, rate)),
            None => ProxyBody::Incoming(body),
        }
    }

    pub fn full(bytes: Bytes) -> ProxyBody {
        if bytes.is_empty() { ProxyBody::Empty } else { ProxyBody::Full(Some(bytes)) }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Shaped(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Shaped(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Shaped(body) => body.size_hint(),
        }
    }
}
