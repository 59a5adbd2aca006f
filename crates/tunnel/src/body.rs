//! The response body of a request sent through a tunnel.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

/// hyper's `Incoming`, plus the tunnel's in-flight slot for the request, released when the
/// body ends or is dropped. That is how the gateway knows when a drained tunnel is idle
/// and how `max_streams_per_tunnel` is enforced without counting by hand.
#[derive(Debug)]
pub struct TunnelBody {
    inner: Incoming,
    permit: Option<OwnedSemaphorePermit>,
}

impl TunnelBody {
    pub(crate) fn new(inner: Incoming, permit: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }

    /// The hyper body inside, releasing the in-flight slot now (the drain then no longer
    /// waits for this response).
    pub fn into_inner(self) -> Incoming {
        self.inner
    }
}

impl Body for TunnelBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
