//! From a guest's answer to the caller's: buffered when it is quick and small, streamed
//! when it is not, and charged exactly once either way.
//!
//! A call is priced after it ran (time and bytes out), and its receipt says what it cost.
//! Most functions answer in milliseconds, so the node first waits a short window
//! (`stream_after_ms`, `stream_after_bytes`): a body complete by then goes out whole, with
//! `Content-Length` and the receipt in a header, as before. A longer or larger one
//! (server-sent events, big downloads; `text/event-stream` at once) streams as the guest
//! writes it, chunked, with the receipt in the trailers (`Trailer: khachapuri-receipt`;
//! clients that send `TE: trailers` receive it). A stream that breaks — the guest faulted,
//! or the client is too slow past the call's budget plus `stream_write_timeout_ms` — ends
//! in an error, never a clean end, so a truncated answer cannot pass for a complete one.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Response};
use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use khachapuri_runtime::{GuestBody, RuntimeError};
use tokio::sync::mpsc;

use crate::admission::{Admission, Ticket, Usage};
use crate::metrics::Metrics;
use crate::node::RECEIPT_HEADER;
use crate::ProviderError;

/// When an answer stops being buffered and starts streaming.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamPolicy {
    /// Longest the node waits for a complete body before streaming it.
    pub(crate) after: Duration,
    /// Most bytes the node holds for one answer before streaming it.
    pub(crate) after_bytes: usize,
    /// After the call's own budget, how long a streamed answer may take to reach the client.
    pub(crate) write_grace: Duration,
}

/// A gauge held up while a call runs (dropped, also when the call is abandoned, it goes
/// down again: the in-flight count stays right after cancelled calls).
pub(crate) struct InFlight(Arc<Metrics>);

impl InFlight {
    pub(crate) fn enter(metrics: &Arc<Metrics>) -> Self {
        Metrics::inc_gauge(&metrics.in_flight);
        Self(metrics.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        Metrics::dec_gauge(&self.0.in_flight);
    }
}

/// Holds a call's ticket until it is charged; dropped before that (busy node, or the
/// client went away and the call's future was dropped) it releases the ticket, so an
/// abandoned call's reservation never keeps holding the payer's credit.
pub(crate) struct TicketGuard {
    pub(crate) admission: Arc<dyn Admission>,
    pub(crate) ticket: Option<Ticket>,
}

impl TicketGuard {
    /// Charges what the call used; returns the receipt header value, if any.
    pub(crate) async fn charge(&mut self, usage: Usage) -> Result<Option<String>, ProviderError> {
        let ticket = self.ticket.take().unwrap_or_default();
        self.admission.charge(ticket, usage).await
    }
}

impl Drop for TicketGuard {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.admission.release(t);
        }
    }
}

/// A call whose guest has started answering: what is needed to charge it and count it.
pub(crate) struct Running {
    pub(crate) ticket: TicketGuard,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
    pub(crate) timeout: Duration,
    pub(crate) policy: StreamPolicy,
    pub(crate) _in_flight: InFlight,
}

impl Running {
    fn usage(&self, bytes_out: usize) -> Usage {
        Usage {
            millis: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes_out: bytes_out as u64,
        }
    }

    /// The guest faulted: its time is charged (and what it sent), the fault is the answer.
    pub(crate) async fn fault(mut self, e: RuntimeError, bytes_out: usize) -> ProviderError {
        Metrics::inc(&self.metrics.calls_faulted);
        let usage = self.usage(bytes_out);
        if let Err(c) = self.ticket.charge(usage).await {
            tracing::warn!(error = %c, "cannot charge a faulted call");
        }
        ProviderError::from(e)
    }

    async fn complete(mut self, bytes_out: usize) -> Result<Option<String>, ProviderError> {
        Metrics::inc(&self.metrics.calls_ok);
        let usage = self.usage(bytes_out);
        self.ticket.charge(usage).await
    }
}

/// Turns the guest's answer into the node's: buffered within the policy's window, else
/// streamed by a task that charges the call when the stream ends.
pub(crate) async fn respond(
    resp: Response<GuestBody>,
    running: Running,
) -> Result<Response<Body>, ProviderError> {
    let (mut parts, mut body) = resp.into_parts();
    let mut held = BytesMut::new();
    let policy = running.policy;
    if !is_event_stream(&parts.headers) {
        let window = tokio::time::sleep(policy.after);
        tokio::pin!(window);
        loop {
            tokio::select! {
                biased;
                frame = body.frame() => match frame {
                    None => {
                        let receipt = running.complete(held.len()).await?;
                        let mut resp = Response::from_parts(parts, Body::from(held.freeze()));
                        if let Some(r) = receipt.and_then(|r| HeaderValue::from_str(&r).ok()) {
                            resp.headers_mut().insert(RECEIPT_HEADER, r);
                        }
                        return Ok(resp);
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            held.extend_from_slice(&data);
                            if held.len() >= policy.after_bytes {
                                break;
                            }
                        }
                    }
                    Some(Err(e)) => return Err(running.fault(e, 0).await),
                },
                () = &mut window => break,
            }
        }
    }
    Metrics::inc(&running.metrics.calls_streamed);
    // The length the guest may have declared is not what a chunked stream with trailers
    // carries; hyper frames the body itself.
    parts.headers.remove(header::CONTENT_LENGTH);
    if !running.ticket.admission.is_free() {
        parts
            .headers
            .insert(header::TRAILER, HeaderValue::from_static(RECEIPT_HEADER));
    }
    let (tx, rx) = mpsc::channel(8);
    let deadline =
        tokio::time::Instant::from_std(running.started) + running.timeout + policy.write_grace;
    tokio::spawn(forward(body, held.freeze(), tx, running, deadline));
    Ok(Response::from_parts(
        parts,
        Body::new(ChannelBody { rx, ended: false }),
    ))
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

/// What the forwarding task hands the connection.
enum Msg {
    Data(Bytes),
    /// The answer is complete; the trailers carry the receipt, if any.
    End(Option<HeaderMap>),
}

/// Pumps the guest's body to the client and charges the call at the end. Stops (and
/// stops the guest) when the client goes away or cannot keep up before `deadline`.
async fn forward(
    mut body: GuestBody,
    held: Bytes,
    tx: mpsc::Sender<Msg>,
    running: Running,
    deadline: tokio::time::Instant,
) {
    let mut sent = 0usize;
    if !held.is_empty() {
        let n = held.len();
        if !send(&tx, deadline, held).await {
            drop(body);
            return abandoned(running, sent).await;
        }
        sent += n;
    }
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(f) => f,
            // The guest task ends at its own deadline; this only guards the node.
            Err(_) => Some(Err(RuntimeError::Deadline(running.timeout))),
        };
        match frame {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let n = data.len();
                    if !send(&tx, deadline, data).await {
                        drop(body);
                        return abandoned(running, sent).await;
                    }
                    sent += n;
                }
            }
            Some(Err(e)) => {
                drop(body);
                let e = running.fault(e, sent).await;
                tracing::warn!(error = %e, "streamed answer broke off");
                // Dropping `tx` without `End` makes the connection end in an error.
                return;
            }
        }
    }
    drop(body);
    let trailers = match running.complete(sent).await {
        Ok(receipt) => receipt
            .and_then(|r| HeaderValue::from_str(&r).ok())
            .map(|r| {
                let mut t = HeaderMap::new();
                t.insert(HeaderName::from_static(RECEIPT_HEADER), r);
                t
            }),
        Err(e) => {
            tracing::warn!(error = %e, "cannot charge a streamed call");
            None
        }
    };
    let _ = tokio::time::timeout_at(deadline, tx.send(Msg::End(trailers))).await;
}

/// Hands one chunk to the connection; `false` when the client is gone or too slow.
async fn send(tx: &mpsc::Sender<Msg>, deadline: tokio::time::Instant, data: Bytes) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, tx.send(Msg::Data(data))).await,
        Ok(Ok(()))
    )
}

/// The client went away (or stopped reading) mid-stream: the guest is stopped, and what
/// it ran and sent is charged — the caller asked for that work.
async fn abandoned(mut running: Running, sent: usize) {
    tracing::debug!(sent, "client left a streamed answer");
    let usage = running.usage(sent);
    if let Err(e) = running.ticket.charge(usage).await {
        tracing::warn!(error = %e, "cannot charge an abandoned call");
    }
}

/// The connection's side of a streamed answer: the channel closing without `End` is an
/// error, so hyper aborts the response instead of finishing it cleanly.
struct ChannelBody {
    rx: mpsc::Receiver<Msg>,
    ended: bool,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Msg::Data(d))) => Poll::Ready(Some(Ok(Frame::data(d)))),
            Poll::Ready(Some(Msg::End(trailers))) => {
                self.ended = true;
                match trailers {
                    Some(t) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
                    None => Poll::Ready(None),
                }
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the function's answer broke off",
                ))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}
