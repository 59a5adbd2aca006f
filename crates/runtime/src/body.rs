//! Bodies crossing the guest boundary as streams: the caller's request body flows into a
//! `wasi:http` guest as it arrives (capped, with the read deadline the server put on it),
//! and the guest's response body flows out as the guest writes it, capped at the call's
//! limit and ending in an error (never a clean end) when the guest faulted midway, so a
//! truncated answer can never pass for a complete one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::runtime::Runtime;
use crate::RuntimeError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong reading the caller's body, recorded so the call's answer says so
/// (413/408/400) rather than whatever the guest made of the failed read.
#[derive(Debug, Default)]
pub(crate) struct RequestFlags(AtomicU8);

const OK: u8 = 0;
const TOO_LARGE: u8 = 1;
const TIMED_OUT: u8 = 2;
const FAILED: u8 = 3;

impl RequestFlags {
    fn set(&self, v: u8) {
        let _ = self
            .0
            .compare_exchange(OK, v, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The request-side error to answer with instead of the guest's, if any.
    pub(crate) fn error(&self, limit: usize) -> Option<RuntimeError> {
        match self.0.load(Ordering::Relaxed) {
            TOO_LARGE => Some(RuntimeError::RequestTooLarge { limit }),
            TIMED_OUT => Some(RuntimeError::RequestTimeout),
            FAILED => Some(RuntimeError::BadRequest(
                "the request body stream failed".into(),
            )),
            _ => None,
        }
    }
}

/// The caller's body on its way into a guest: at most `limit` bytes.
pub(crate) struct RequestBody<B> {
    inner: B,
    limit: usize,
    read: usize,
    flags: Arc<RequestFlags>,
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, limit: usize, flags: Arc<RequestFlags>) -> Self {
        Self {
            inner,
            limit,
            read: 0,
            flags,
        }
    }
}

/// Whether a body error is a read deadline (the server's, or the socket's).
pub(crate) fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len());
                    if this.read > this.limit {
                        this.flags.set(TOO_LARGE);
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.limit as u64)),
                        )));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                if is_timeout(&*e) {
                    this.flags.set(TIMED_OUT);
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
                } else {
                    this.flags.set(FAILED);
                    Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpProtocolError)))
                }
            }
            other => other.map(|o| o.map(|r| r.map_err(|_| unreachable_err()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

// `Ready(None)` and `Pending` carry no error; this only satisfies the types.
fn unreachable_err() -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(None)
}

/// The running guest of a streamed response: its outcome decides whether the body ended
/// cleanly. Aborted when the body is dropped (the client went away), which drops the
/// guest's store and frees its instance slot at once.
pub(crate) struct GuestTask(pub(crate) JoinHandle<Result<(), RuntimeError>>);

impl Drop for GuestTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A function's response body, streamed as the guest writes it.
///
/// It yields at most the call's `max_response_bytes` (then
/// [`RuntimeError::ResponseTooLarge`]) and ends with the guest's fault when the guest
/// trapped, ran out of time or memory after starting its answer. Dropping it stops the
/// guest. Faults seen here are counted in the runtime's metrics like any other.
pub struct GuestBody {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(Box<Streaming>),
}

struct Streaming {
    body: HyperOutgoingBody,
    guest: Option<GuestTask>,
    sent: usize,
    limit: usize,
    done: bool,
    flags: Arc<RequestFlags>,
    request_limit: usize,
    runtime: Runtime,
    cid: String,
}

impl GuestBody {
    /// A body already complete (WAGI output, errors).
    pub fn full(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Full(Some(bytes).filter(|b| !b.is_empty())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn stream(
        body: HyperOutgoingBody,
        guest: GuestTask,
        limit: usize,
        flags: Arc<RequestFlags>,
        request_limit: usize,
        runtime: Runtime,
        cid: String,
    ) -> Self {
        Self {
            kind: Kind::Stream(Box::new(Streaming {
                body,
                guest: Some(guest),
                sent: 0,
                limit,
                done: false,
                flags,
                request_limit,
                runtime,
                cid,
            })),
        }
    }
}

impl Streaming {
    fn fail(&mut self, e: RuntimeError) -> Poll<Option<Result<Frame<Bytes>, RuntimeError>>> {
        self.done = true;
        // Stop the guest now: nobody will read what it writes next.
        self.guest = None;
        let e = self.flags.error(self.request_limit).unwrap_or(e);
        self.runtime.record_fault(&self.cid, &e);
        Poll::Ready(Some(Err(e)))
    }

    /// The guest's outcome once its body stream ended.
    fn poll_guest(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), RuntimeError>> {
        let Some(task) = self.guest.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let outcome = match Pin::new(&mut task.0).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(r)) => r,
            Poll::Ready(Err(e)) => Err(RuntimeError::Internal(format!("guest task failed: {e}"))),
        };
        self.guest = None;
        Poll::Ready(outcome)
    }
}

impl Body for GuestBody {
    type Data = Bytes;
    type Error = RuntimeError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RuntimeError>>> {
        let s = match &mut self.kind {
            Kind::Full(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => s,
        };
        loop {
            if s.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut s.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // The guest's own trailers are not forwarded: the node's receipt
                    // travels in the trailers of a streamed answer.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    s.sent = s.sent.saturating_add(data.len());
                    if s.sent > s.limit {
                        let limit = s.limit;
                        return s.fail(RuntimeError::ResponseTooLarge { limit });
                    }
                    if data.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(code))) => {
                    // The stream broke: the guest's fault, if it has one, says why.
                    return match s.poll_guest(cx) {
                        Poll::Ready(Err(e)) => s.fail(e),
                        _ => s.fail(RuntimeError::BadResponse(format!(
                            "response body failed: {code}"
                        ))),
                    };
                }
                Poll::Ready(None) => {
                    return match s.poll_guest(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Err(e)) => s.fail(e),
                        Poll::Ready(Ok(())) => match s.flags.error(s.request_limit) {
                            // The guest took a failed read for the end of the body: the
                            // answer it built from a partial body is not the call's.
                            Some(e) => s.fail(e),
                            None => {
                                s.done = true;
                                Poll::Ready(None)
                            }
                        },
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

impl std::fmt::Debug for GuestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("GuestBody")
                .field("bytes", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(s) => f
                .debug_struct("GuestBody")
                .field("cid", &s.cid)
                .field("sent", &s.sent)
                .field("done", &s.done)
                .finish(),
        }
    }
}
