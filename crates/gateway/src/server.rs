//! The gateway's accept loop: plain HTTP/1.1, or TLS with HTTP/1.1 and HTTP/2 (ALPN) when
//! a certificate is configured; a bound on open connections (backpressure through the
//! accept queue), a deadline for request heads, graceful drain on shutdown.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming as Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::gateway::Gateway;
use crate::proxy::Incoming;

/// Something [`serve`] hands requests to after routing; the tunnel endpoint plugs in
/// here, since it needs the raw upgrade rather than a proxied request.
pub type Hook = Arc<
    dyn Fn(
            http::Request<Body>,
            std::net::SocketAddr,
        ) -> Result<
            crate::resolve::BoxFuture<'static, http::Response<crate::body::ProxyBody>>,
            Box<http::Request<Body>>,
        > + Send
        + Sync,
>;

/// Loads a PEM certificate chain and key into a TLS acceptor offering h2 and http/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `gateway` on `listener` until `shutdown`, then drains (at most the configured
/// drain timeout). `tls` switches to HTTPS; `hook` sees each request first.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<TlsAcceptor>,
    hook: Option<Hook>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = gateway.config().clone();
    let header_timeout = Duration::from_millis(config.header_read_timeout_ms);
    let drain = Duration::from_millis(config.drain_timeout_ms);
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let tls = tls.clone();
        let hook = hook.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let proto = if tls.is_some() { "https" } else { "http" };
            let service = hyper::service::service_fn(move |req: http::Request<Body>| {
                let gateway = gateway.clone();
                let hook = hook.clone();
                async move {
                    let req = match &hook {
                        Some(hook) => match hook(req, peer) {
                            Ok(answer) => return Ok::<_, std::convert::Infallible>(answer.await),
                            Err(req) => *req,
                        },
                        None => req,
                    };
                    let host = host_of(&req);
                    let incoming = Incoming { peer, proto, host };
                    Ok(gateway.handle(req, incoming).await)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            builder.http2().timer(TokioTimer::new());
            let result = match tls {
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    drive(conn, &mut stop, drain).await
                }
                Some(acceptor) => {
                    let tls_stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                    drive(conn, &mut stop, drain).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
    // Wait until every connection has returned its slot, at most the drain timeout.
    let all = u32::try_from(config.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(drain, slots.acquire_many(all)).await;
    Ok(())
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs one connection; on shutdown asks it to finish gracefully, then cuts it after
/// `drain`.
async fn drive<C>(
    conn: C,
    stop: &mut watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), BoxError>
where
    C: Future<Output = Result<(), BoxError>> + GracefulConnection,
{
    let mut conn = pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        _ = stop.wait_for(|v| *v) => {}
    }
    conn.as_mut().graceful();
    match tokio::time::timeout(drain, conn).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// hyper-util's auto connection, seen through the one method `drive` needs.
trait GracefulConnection {
    fn graceful(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Body>,
    S::Error: Into<BoxError>,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// The Host the client asked for: the `Host` header (HTTP/1.1) or the URI authority
/// (HTTP/2's `:authority`).
fn host_of<B>(req: &http::Request<B>) -> Option<String> {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}
