//! Bodies as they pass through: streamed frame by frame (never collected, so a 1 GiB
//! upload or an endless event stream costs one frame of memory), each direction cut when
//! it stays silent longer than the idle timeout.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt as _;
use tokio::time::{Instant, Sleep};

/// Errors of a proxied body, boxed: they come from hyper on either side or the timer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type the gateway sends (to providers and to clients).
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body that ends in an error when no frame arrives for `idle`.
pub struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the clock starts now and restarts at every frame.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

/// The error a silent body ends with.
#[derive(Debug, thiserror::Error)]
#[error("body idle for more than {0:?}")]
pub struct Idle(pub Duration);

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + this.idle;
                this.sleep.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Idle(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body` streamed with the idle timeout, boxed.
pub fn proxied<B>(body: B, idle: Duration) -> ProxyBody
where
    B: Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    IdleTimeout::new(body, idle).boxed()
}

/// A complete small body (error answers, health).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_ends_in_an_error_and_a_talking_one_does_not() {
        let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, BoxError>::new(1);
        let mut body = IdleTimeout::new(rx, Duration::from_secs(5));
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                let _ = tx.send_data(Bytes::from_static(b"x")).await;
            }
            // Then silence, sender kept alive.
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = body.frame().await.expect("frame").expect("data");
            assert_eq!(frame.into_data().expect("data"), Bytes::from_static(b"x"));
        }
        let err = body.frame().await.expect("an error").expect_err("idle");
        assert!(err.is::<Idle>(), "{err}");
    }
}
