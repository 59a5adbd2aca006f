//! The provider side: dials the gateway, proves its key, serves the gateway's requests as
//! the HTTP/2 *server*, and keeps doing so across gateway restarts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;

use crate::config::ClientConfig;
use crate::error::{BoxError, RefusalCode, TunnelError};
use crate::handshake::{self, Hello, Message};
use crate::server::TUNNEL_PATH;
use crate::ws_io::{self, WsIo};

/// The signer the provider proves its operator address with (a local key, a keystore or
/// a hardware wallet: anything alloy can sign EIP-191 messages with).
pub type TunnelSigner = Arc<dyn alloy_signer::Signer + Send + Sync>;

/// Where the tunnel stands, published on [`TunnelClient::state`] for logs, `provider
/// status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelState {
    /// Dialling the gateway (attempt 0 is the first after start or after a served session).
    Connecting {
        /// Failed attempts since the last successful session.
        attempt: u32,
    },
    /// Admitted; serving requests.
    Connected {
        /// When the gateway accepted the tunnel.
        since: SystemTime,
    },
    /// The last attempt failed or the session ended; next attempt after `retry_in`.
    Retrying {
        /// Delay before the next attempt.
        retry_in: Duration,
        /// Failed attempts since the last successful session.
        attempt: u32,
        /// What went wrong, for the operator.
        error: String,
    },
    /// The gateway (or we) refused for a reason retrying cannot fix; the next attempt is
    /// after the long [`ClientConfig::refused_backoff`].
    Refused {
        /// Why.
        code: RefusalCode,
        /// The gateway's message, e.g. "name dev is not registered".
        message: String,
        /// Delay before trying again anyway (the operator may have fixed the record).
        retry_in: Duration,
    },
    /// `run` returned after its shutdown future completed.
    Stopped,
}

/// A request extension on every request that came through the tunnel: the provider may
/// trust the gateway's `X-Forwarded-For` only on requests that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaTunnel {
    /// The gateway host the tunnel is connected to (as signed in the handshake).
    pub gateway: Arc<str>,
}

/// The provider's end of the tunnel. Build with [`TunnelClient::new`], watch
/// [`TunnelClient::state`], then [`TunnelClient::run`] until shutdown.
pub struct TunnelClient<S> {
    config: ClientConfig,
    signer: TunnelSigner,
    service: S,
    target: Target,
    state: watch::Sender<TunnelState>,
}

#[derive(Debug, Clone)]
struct Target {
    tls: bool,
    /// Host as the challenge must carry it (lowercase, IPv6 in brackets).
    host: String,
    port: u16,
    ws_uri: String,
}

fn parse_target(url: &str) -> Result<Target, TunnelError> {
    let bad = |why: &str| TunnelError::Config(format!("gateway URL {url:?}: {why}"));
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let (tls, ws_scheme, default_port) = match uri.scheme_str() {
        Some("http" | "ws") => (false, "ws", 80),
        Some("https" | "wss") => (true, "wss", 443),
        _ => return Err(bad("scheme must be http, https, ws or wss")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    let host = authority.host().to_ascii_lowercase();
    handshake::check_host(&host).map_err(|e| bad(&e.to_string()))?;
    let port = authority.port_u16().unwrap_or(default_port);
    Ok(Target {
        tls,
        ws_uri: format!("{ws_scheme}://{authority}{TUNNEL_PATH}"),
        host,
        port,
    })
}

/// Outcome of one connection attempt.
enum Session {
    /// Shutdown completed (drained); stop.
    Shutdown,
    /// Was admitted and served until the tunnel ended: reconnect promptly.
    Served(String),
}

impl<S, B> TunnelClient<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// A tunnel client that will serve `service` (the provider's router) for
    /// `config.name`, proving the key of `signer`. Fails for a URL or name that can never
    /// work.
    pub fn new(
        config: ClientConfig,
        signer: TunnelSigner,
        service: S,
    ) -> Result<Self, TunnelError> {
        let target = parse_target(&config.gateway_url)?;
        handshake::check_name(&config.name).map_err(|e| TunnelError::Config(e.to_string()))?;
        config.h2.check()?;
        Ok(Self {
            config,
            signer,
            service,
            target,
            state: watch::Sender::new(TunnelState::Connecting { attempt: 0 }),
        })
    }

    /// Subscribes to the tunnel's state.
    pub fn state(&self) -> watch::Receiver<TunnelState> {
        self.state.subscribe()
    }

    /// Connects, serves, reconnects with jittered backoff, until `shutdown` completes;
    /// then sends GOAWAY, lets in-flight requests finish (at most `drain_timeout`) and
    /// returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TunnelError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut attempt: u32 = 0;
        loop {
            self.state.send_replace(TunnelState::Connecting { attempt });
            let outcome = self.attempt(shutdown.as_mut()).await;
            let (delay, next) = match outcome {
                Ok(Session::Shutdown) => break,
                Ok(Session::Served(why)) => {
                    attempt = 0;
                    let d = backoff(&self.config, 0);
                    (
                        d,
                        TunnelState::Retrying {
                            retry_in: d,
                            attempt,
                            error: why,
                        },
                    )
                }
                Err(TunnelError::Refused { code, message }) if code.is_permanent() => {
                    attempt = attempt.saturating_add(1);
                    let d = self.config.refused_backoff;
                    tracing::error!(%code, "gateway refused the tunnel: {message}; retrying in {d:?}");
                    (
                        d,
                        TunnelState::Refused {
                            code,
                            message,
                            retry_in: d,
                        },
                    )
                }
                Err(e) => {
                    let d = backoff(&self.config, attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(
                        "tunnel to {} failed: {e}; retrying in {d:?}",
                        self.target.ws_uri
                    );
                    (
                        d,
                        TunnelState::Retrying {
                            retry_in: d,
                            attempt,
                            error: e.to_string(),
                        },
                    )
                }
            };
            self.state.send_replace(next);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.as_mut() => break,
            }
        }
        self.state.send_replace(TunnelState::Stopped);
        Ok(())
    }

    async fn attempt(
        &self,
        shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Session, TunnelError> {
        let t = &self.target;
        let cfg = ws_io::ws_config(&self.config.h2);
        let bound = self.config.connect_timeout;
        let tcp = tokio::time::timeout(
            bound,
            TcpStream::connect((t.host.trim_matches(['[', ']']), t.port)),
        )
        .await
        .map_err(|_| TunnelError::Timeout("connecting to the gateway"))??;
        let _ = tcp.set_nodelay(true);
        if t.tls {
            let tls = self.tls_config()?;
            let name =
                rustls::pki_types::ServerName::try_from(t.host.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| TunnelError::Config(format!("gateway host for TLS: {e}")))?;
            let stream = tokio::time::timeout(
                bound,
                tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
            )
            .await
            .map_err(|_| TunnelError::Timeout("TLS handshake with the gateway"))??;
            let ws = upgrade(&t.ws_uri, stream, cfg, bound).await?;
            self.session(ws, shutdown).await
        } else {
            let ws = upgrade(&t.ws_uri, tcp, cfg, bound).await?;
            self.session(ws, shutdown).await
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, TunnelError> {
        let mut c = match &self.config.tls {
            Some(c) => (**c).clone(),
            None => {
                use rustls_platform_verifier::ConfigVerifierExt;
                rustls::ClientConfig::with_platform_verifier()
                    .map_err(|e| TunnelError::Config(format!("platform TLS roots: {e}")))?
            }
        };
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(c))
    }

    async fn session<T>(
        &self,
        mut ws: WebSocketStream<T>,
        shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<Session, TunnelError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let bound = self.config.handshake_timeout;
        match tokio::time::timeout(bound, self.handshake(&mut ws)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ws_io::refuse(&mut ws, &e, Duration::from_secs(2)).await;
                return Err(e);
            }
            Err(_) => return Err(TunnelError::Timeout("tunnel handshake")),
        }
        self.state.send_replace(TunnelState::Connected {
            since: SystemTime::now(),
        });
        tracing::info!(name = %self.config.name, gateway = %self.target.ws_uri, "tunnel connected");
        let h2 = &self.config.h2;
        let svc = Tagged {
            inner: self.service.clone(),
            via: ViaTunnel {
                gateway: self.target.host.as_str().into(),
            },
        };
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(h2.stream_window)
            .initial_connection_window_size(h2.connection_window)
            .max_frame_size(h2.max_frame_size)
            .max_concurrent_streams(self.config.max_concurrent_streams)
            .keep_alive_interval(h2.ping_interval)
            .keep_alive_timeout(h2.ping_timeout)
            .serve_connection(TokioIo::new(WsIo::new(ws)), svc);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => Ok(Session::Served(match r {
                Ok(()) => "gateway closed the tunnel".to_owned(),
                Err(e) => format!("tunnel lost: {e}"),
            })),
            () = shutdown => {
                conn.as_mut().graceful_shutdown();
                if tokio::time::timeout(self.config.drain_timeout, conn).await.is_err() {
                    tracing::warn!("tunnel drain deadline passed with requests in flight");
                }
                Ok(Session::Shutdown)
            }
        }
    }

    async fn handshake<T>(&self, ws: &mut WebSocketStream<T>) -> Result<(), TunnelError>
    where
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let challenge = match ws_io::recv_message(ws).await? {
            Message::Challenge(c) => c,
            Message::Refused { code, message } => {
                return Err(TunnelError::Refused { code, message })
            }
            _ => return Err(TunnelError::Malformed("expected a challenge".into())),
        };
        if challenge.host != self.target.host {
            return Err(TunnelError::refused(
                RefusalCode::WrongGateway,
                format!(
                    "challenge is for gateway {}, but we dialled {}",
                    challenge.host, self.target.host
                ),
            ));
        }
        if let Some(want) = self.config.chain_id.filter(|c| *c != challenge.chain_id) {
            return Err(TunnelError::refused(
                RefusalCode::WrongGateway,
                format!(
                    "gateway is on chain {}, this provider on chain {want}",
                    challenge.chain_id
                ),
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if challenge.expires < now {
            return Err(TunnelError::Malformed(
                "challenge already expired (check the clocks)".into(),
            ));
        }
        let operator = self.signer.address();
        let text = handshake::signing_text(&challenge, &self.config.name, operator);
        let sig = self
            .signer
            .sign_message(text.as_bytes())
            .await
            .map_err(|e| TunnelError::Signer(e.to_string()))?;
        let hello = Hello {
            name: self.config.name.clone(),
            operator,
            nonce: challenge.nonce,
            signature: sig.as_bytes(),
        };
        ws_io::send_message(ws, &Message::Hello(hello)).await?;
        match ws_io::recv_message(ws).await? {
            Message::Accepted => Ok(()),
            Message::Refused { code, message } => Err(TunnelError::Refused { code, message }),
            _ => Err(TunnelError::Malformed(
                "expected accepted or refused".into(),
            )),
        }
    }
}

/// Connects and serves until `shutdown` completes: [`TunnelClient::new`] then
/// [`TunnelClient::run`], for callers that do not watch the state.
pub async fn run_tunnel<S, B>(
    config: ClientConfig,
    signer: TunnelSigner,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TunnelError>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    TunnelClient::new(config, signer, service)?
        .run(shutdown)
        .await
}

async fn upgrade<T>(
    uri: &str,
    stream: T,
    cfg: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
    bound: Duration,
) -> Result<WebSocketStream<T>, TunnelError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let (ws, _resp) = tokio::time::timeout(
        bound,
        tokio_tungstenite::client_async_with_config(uri, stream, Some(cfg)),
    )
    .await
    .map_err(|_| TunnelError::Timeout("WebSocket upgrade at the gateway"))??;
    Ok(ws)
}

/// Delay before attempt `attempt + 1`: `initial * 2^attempt`, capped at `max`, drawn
/// uniformly from its upper half.
pub(crate) fn backoff(config: &ClientConfig, attempt: u32) -> Duration {
    let ceiling = config
        .backoff_initial
        .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .min(config.backoff_max);
    let half = ceiling / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// The provider's service with [`ViaTunnel`] added to each request.
#[derive(Clone)]
struct Tagged<S> {
    inner: S,
    via: ViaTunnel,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tagged<S>
where
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, BoxError>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.via.clone());
        let mut svc = self.inner.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            svc.call(req).await.map_err(Into::into)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let c = ClientConfig::new("http://gw", "dev");
        for attempt in 0..40 {
            let d = backoff(&c, attempt);
            let ceiling =
                (c.backoff_initial * 2u32.saturating_pow(attempt.min(20))).min(c.backoff_max);
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| backoff(&c, 3)).collect();
        assert!(draws.len() > 1, "no jitter");
    }

    #[test]
    fn gateway_urls_parse_strictly() {
        let t = parse_target("https://GW.example").expect("https");
        assert!(t.tls && t.port == 443 && t.host == "gw.example");
        assert_eq!(t.ws_uri, "wss://GW.example/.well-known/khachapuri/tunnel");
        let t = parse_target("ws://127.0.0.1:8080").expect("ws");
        assert!(!t.tls && t.port == 8080 && t.host == "127.0.0.1");
        let t = parse_target("http://[::1]:9").expect("v6");
        assert_eq!(t.host, "[::1]");
        for bad in ["ftp://gw", "gw.example", "http://", ""] {
            assert!(parse_target(bad).is_err(), "{bad:?} accepted");
        }
    }
}
