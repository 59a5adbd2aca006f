//! The node's HTTP/1.1 server loop. It replaces `axum::serve` so the public port gets
//! the timeouts a port facing strangers needs: a connection must send its request head
//! within `header_read_timeout_ms` (a slowloris trickling header bytes is closed), a
//! request body must arrive within `body_read_timeout_ms`, and shutdown drains
//! in-flight calls for at most `drain_timeout_ms`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;
use tower_service::Service;

use crate::http::router;
use crate::node::Node;

/// Serves `node` on `listener` until `shutdown` resolves, then lets in-flight calls
/// finish (at most `drain_timeout_ms`).
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = node.config();
    let header_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let body_timeout = Duration::from_millis(config.body_read_timeout_ms);
    let drain = Duration::from_millis(config.drain_timeout_ms);
    let app = router(node).layer(middleware::from_fn_with_state(body_timeout, body_deadline));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(MapBody(app.clone(), peer));
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let _open = open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut conn = pin!(builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades());
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        break;
                    }
                    changed = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        if changed.is_err() {
                            // The server is gone; let the connection finish on its own.
                            let _ = conn.as_mut().await;
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    if tokio::time::timeout(drain, open_tx.closed()).await.is_err() {
        tracing::warn!(
            "shutdown: connections still open after {} ms, dropping them",
            drain.as_millis()
        );
    }
    Ok(())
}

/// The router as a `Service<Request<Incoming>>`, each request carrying the connection's
/// peer address as axum's [`ConnectInfo`] (see [`client_ip`]).
#[derive(Clone)]
struct MapBody(axum::Router, SocketAddr);

impl Service<hyper::Request<Incoming>> for MapBody {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = <axum::Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request>::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, req: hyper::Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.1));
        self.0.call(req)
    }
}

/// The address of the peer that sent `req` (the TCP peer: forwarding headers are anyone's
/// to write), when it came through [`serve`]; `None` for requests made in process.
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Gives every request body a deadline for arriving in full.
pub(crate) async fn body_deadline(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let req = req.map(|body| Body::new(DeadlineBody::new(body, limit)));
    next.run(req).await
}

/// A body that fails once its deadline passes, so a caller trickling bytes cannot hold
/// a call (and its reserved credit) open.
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(item);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let limit = self.limit.as_millis();
            return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the request body did not arrive within {limit} ms"),
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
