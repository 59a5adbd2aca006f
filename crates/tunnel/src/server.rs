//! The gateway side: accepts tunnels, checks who is on the other end, and sends requests
//! down them as the HTTP/2 *client* (the provider is the HTTP/2 server, as in cloudflared).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::body::TunnelBody;
use crate::config::ServerConfig;
use crate::error::{BoxError, RefusalCode, TunnelError};
use crate::handshake::{self, Challenge, Message};
use crate::nonce::NonceStore;
use crate::ws_io::{self, WsIo};

/// The path providers dial: `ws(s)://{gateway}/.well-known/khachapuri/tunnel`.
pub const TUNNEL_PATH: &str = "/.well-known/khachapuri/tunnel";

/// What a future returned by [`OperatorLookup::operator`] resolves to.
pub type LookupFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Address>, BoxError>> + Send + 'a>>;

/// Who may serve a name: the gateway implements this over the on-chain registry (cached).
///
/// `Ok(None)` means the name is not registered (refused as `unregistered_name`); `Err`
/// means the registry could not be asked (refused as `lookup_failed`, which the provider
/// retries soon, unlike the permanent refusals).
pub trait OperatorLookup: Send + Sync + 'static {
    /// The registered operator address of `name`.
    fn operator<'a>(&'a self, name: &'a str) -> LookupFuture<'a>;
}

/// A fixed name → operator table: for `--dev`, tests and benchmarks, where there is no
/// registry to ask.
#[derive(Debug, Clone, Default)]
pub struct StaticOperators(pub HashMap<String, Address>);

impl OperatorLookup for StaticOperators {
    fn operator<'a>(&'a self, name: &'a str) -> LookupFuture<'a> {
        let found = self.0.get(name).copied();
        Box::pin(async move { Ok(found) })
    }
}

type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// The gateway's tunnel endpoint and the table of live tunnels. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct TunnelServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    lookup: Arc<dyn OperatorLookup>,
    nonces: Mutex<NonceStore>,
    tunnels: Mutex<HashMap<String, Arc<Tunnel>>>,
    next_id: AtomicU64,
    closing: AtomicBool,
    /// Connection tasks alive (handshaking or serving), for `shutdown` to wait on.
    live: tokio::sync::watch::Sender<usize>,
}

struct Tunnel {
    id: u64,
    name: String,
    operator: Address,
    peer: Option<SocketAddr>,
    connected_at: SystemTime,
    sender: SendRequest<ReqBody>,
    /// One permit per request in flight; all of them back means idle (for draining).
    permits: Arc<Semaphore>,
    max_streams: u32,
    draining: AtomicBool,
    stop: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TunnelServer {
    /// A tunnel endpoint for the gateway at `config.host` on `config.chain_id`, checking
    /// providers against `lookup`. Fails only for a host no challenge could carry.
    pub fn new(config: ServerConfig, lookup: Arc<dyn OperatorLookup>) -> Result<Self, TunnelError> {
        let mut config = config;
        config.host = config.host.to_ascii_lowercase();
        handshake::check_host(&config.host).map_err(|e| TunnelError::Config(e.to_string()))?;
        config.h2.check()?;
        if config.max_streams_per_tunnel == 0 || config.max_outstanding_nonces == 0 {
            return Err(TunnelError::Config(
                "stream and nonce limits must be at least 1".into(),
            ));
        }
        let nonces = NonceStore::new(config.nonce_ttl, config.max_outstanding_nonces);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                lookup,
                nonces: Mutex::new(nonces),
                tunnels: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closing: AtomicBool::new(false),
                live: tokio::sync::watch::Sender::new(0),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Answers the WebSocket upgrade at [`TUNNEL_PATH`] and runs the tunnel in a spawned
    /// task: use it as the gateway's handler for that path (axum: `move |req| async move
    /// { server.upgrade(req, peer) }`). `peer` is the TCP peer, for logs and
    /// [`TunnelHandle::peer`]. Not an upgrade → 400/405; shutting down → 503.
    pub fn upgrade<B>(
        &self,
        mut req: Request<B>,
        peer: Option<SocketAddr>,
    ) -> Response<Full<Bytes>> {
        if req.method() != http::Method::GET {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "the tunnel is a WebSocket: GET with Upgrade\n",
            );
        }
        let h = req.headers();
        let has = |name: header::HeaderName, token: &str| {
            h.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
            return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
        }
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v != "13")
        {
            return plain(StatusCode::BAD_REQUEST, "WebSocket version 13 required\n");
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
            return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        };
        if self.inner.closing.load(Ordering::SeqCst) {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "gateway shutting down\n");
        }
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        let bound = self.inner.config.handshake_timeout;
        tokio::spawn(async move {
            match tokio::time::timeout(bound, on_upgrade).await {
                Ok(Ok(upgraded)) => {
                    let cfg = ws_io::ws_config(&server.inner.config.h2);
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(cfg),
                    )
                    .await;
                    if let Err(e) = server.serve_websocket(ws, peer).await {
                        tracing::info!(?peer, "tunnel ended: {e}");
                    }
                }
                Ok(Err(e)) => tracing::debug!(?peer, "tunnel upgrade failed: {e}"),
                Err(_) => tracing::debug!(?peer, "tunnel upgrade timed out"),
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let hs = resp.headers_mut();
        hs.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        hs.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&accept) {
            hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }

    /// Runs one tunnel over an already-upgraded WebSocket: handshake, then serving until
    /// the tunnel closes, is replaced or the server shuts down. For gateways that do the
    /// upgrade themselves; [`TunnelServer::upgrade`] calls it. A refusal is sent to the
    /// provider before closing and also returned.
    pub async fn serve_websocket<S>(
        &self,
        mut ws: WebSocketStream<S>,
        peer: Option<SocketAddr>,
    ) -> Result<(), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = &self.inner;
        inner.live.send_modify(|n| *n += 1);
        let _live = scopeguard(|| inner.live.send_modify(|n| *n -= 1));
        let cfg = &inner.config;
        let checked =
            match tokio::time::timeout(cfg.handshake_timeout, self.handshake(&mut ws)).await {
                Ok(r) => r,
                Err(_) => Err(TunnelError::Timeout("tunnel handshake")),
            };
        let checked = checked.and_then(|(name, op)| self.admit(&name).map(|()| (name, op)));
        let (name, operator) = match checked {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(?peer, "tunnel refused: {e}");
                ws_io::refuse(&mut ws, &e, Duration::from_secs(2)).await;
                return Err(e);
            }
        };
        ws_io::send_message(&mut ws, &Message::Accepted).await?;
        let h2 = &cfg.h2;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(h2.stream_window)
            .initial_connection_window_size(h2.connection_window)
            .max_frame_size(h2.max_frame_size)
            .keep_alive_interval(h2.ping_interval)
            .keep_alive_timeout(h2.ping_timeout)
            .keep_alive_while_idle(true)
            .handshake::<_, ReqBody>(TokioIo::new(WsIo::new(ws)))
            .await?;
        let max_streams = u32::try_from(cfg.max_streams_per_tunnel).unwrap_or(u32::MAX);
        let tunnel = Arc::new(Tunnel {
            id: inner.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.clone(),
            operator,
            peer,
            connected_at: SystemTime::now(),
            sender,
            permits: Arc::new(Semaphore::new(max_streams as usize)),
            max_streams,
            draining: AtomicBool::new(false),
            stop: Notify::new(),
        });
        let old = lock(&inner.tunnels).insert(name.clone(), tunnel.clone());
        tracing::info!(%name, %operator, ?peer, replaced = old.is_some(), "tunnel up");
        if let Some(old) = old {
            let bound = cfg.drain_timeout;
            tokio::spawn(async move { drain(&old, tokio::time::Instant::now() + bound).await });
        }
        let result = tokio::select! {
            r = conn => r.map_err(TunnelError::from),
            () = tunnel.stop.notified() => Ok(()),
        };
        tunnel.draining.store(true, Ordering::SeqCst);
        let mut map = lock(&inner.tunnels);
        if map.get(&name).is_some_and(|t| t.id == tunnel.id) {
            map.remove(&name);
        }
        drop(map);
        tracing::info!(%name, "tunnel down");
        result
    }

    /// Challenge, answer, checks in the order that gives the clearest refusal.
    async fn handshake<S>(
        &self,
        ws: &mut WebSocketStream<S>,
    ) -> Result<(String, Address), TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let inner = &self.inner;
        let cfg = &inner.config;
        let nonce = lock(&inner.nonces).issue(Instant::now()).ok_or_else(|| {
            TunnelError::refused(
                RefusalCode::Busy,
                "too many tunnel handshakes in progress; try again shortly",
            )
        })?;
        // Whatever happens, the nonce is spent when this handshake ends.
        let _spend = scopeguard(|| {
            lock(&inner.nonces).take(&nonce, Instant::now());
        });
        let challenge = Challenge {
            nonce,
            host: cfg.host.clone(),
            chain_id: cfg.chain_id,
            expires: unix_now() + cfg.nonce_ttl.as_secs(),
        };
        ws_io::send_message(ws, &Message::Challenge(challenge.clone())).await?;
        let hello = match ws_io::recv_message(ws).await? {
            Message::Hello(h) => h,
            Message::Refused { code, message } => {
                return Err(TunnelError::refused(
                    code,
                    format!("provider refused our challenge: {message}"),
                ))
            }
            _ => {
                return Err(TunnelError::refused(
                    RefusalCode::Protocol,
                    "expected a hello message",
                ))
            }
        };
        let fresh = lock(&inner.nonces).take(&challenge.nonce, Instant::now());
        if hello.nonce != challenge.nonce || !fresh || unix_now() > challenge.expires {
            return Err(TunnelError::refused(
                RefusalCode::Nonce,
                "nonce replayed or expired: sign the challenge sent on this connection",
            ));
        }
        let signer = handshake::recover_signer(&challenge, &hello)?;
        if signer != hello.operator {
            return Err(TunnelError::refused(
                RefusalCode::BadSignature,
                format!(
                    "signature is from {signer}, but the hello claims operator {}",
                    hello.operator
                ),
            ));
        }
        let registered = inner.lookup.operator(&hello.name).await.map_err(|e| {
            TunnelError::refused(
                RefusalCode::LookupFailed,
                format!("registry lookup of {} failed: {e}", hello.name),
            )
        })?;
        match registered {
            None => Err(TunnelError::refused(
                RefusalCode::UnregisteredName,
                format!("name {} is not registered", hello.name),
            )),
            Some(op) if op != signer => Err(TunnelError::refused(
                RefusalCode::WrongOperator,
                format!(
                    "signature is from {signer}, registry says operator of {} is {op}",
                    hello.name
                ),
            )),
            Some(_) => Ok((hello.name, signer)),
        }
    }

    fn admit(&self, name: &str) -> Result<(), TunnelError> {
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(TunnelError::refused(
                RefusalCode::Busy,
                "gateway shutting down",
            ));
        }
        let map = lock(&self.inner.tunnels);
        if !map.contains_key(name) && map.len() >= self.inner.config.max_tunnels {
            return Err(TunnelError::refused(
                RefusalCode::Busy,
                "gateway is at its tunnel limit",
            ));
        }
        Ok(())
    }

    /// The live tunnel for `name`, if its provider is connected and not draining.
    pub fn sender(&self, name: &str) -> Option<TunnelHandle> {
        let map = lock(&self.inner.tunnels);
        let t = map.get(name)?;
        (!t.draining.load(Ordering::SeqCst) && !t.sender.is_closed())
            .then(|| TunnelHandle { tunnel: t.clone() })
    }

    /// Names with a live tunnel (for metrics and `/healthz`-style pages).
    pub fn names(&self) -> Vec<String> {
        lock(&self.inner.tunnels).keys().cloned().collect()
    }

    /// Stops accepting tunnels, lets in-flight requests finish (at most
    /// `drain_timeout`), then closes every tunnel; providers reconnect to whichever
    /// gateway answers next. New `send_request`s fail with `Draining` meanwhile.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        let tunnels: Vec<_> = lock(&inner.tunnels).drain().map(|(_, t)| t).collect();
        let deadline = tokio::time::Instant::now() + inner.config.drain_timeout;
        futures_util::future::join_all(tunnels.iter().map(|t| drain(t, deadline))).await;
        // Handshakes in flight refuse themselves on `closing`; give them a moment to end.
        let mut live = inner.live.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), live.wait_for(|n| *n == 0)).await;
    }
}

/// Stops new requests on `t`, waits (until `deadline`) for those in flight, then closes it.
async fn drain(t: &Tunnel, deadline: tokio::time::Instant) {
    t.draining.store(true, Ordering::SeqCst);
    let idle = tokio::time::timeout_at(deadline, t.permits.acquire_many(t.max_streams)).await;
    if idle.is_err() {
        tracing::warn!(name = %t.name, "tunnel drain deadline passed with requests in flight");
    }
    t.stop.notify_one();
}

/// One live tunnel, as the gateway's proxy uses it. Cheap to clone; holding one does not
/// keep a replaced or shut-down tunnel open (its requests then fail with `Draining`).
#[derive(Clone)]
pub struct TunnelHandle {
    tunnel: Arc<Tunnel>,
}

impl std::fmt::Debug for TunnelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelHandle")
            .field("name", &self.tunnel.name)
            .field("id", &self.tunnel.id)
            .finish()
    }
}

impl TunnelHandle {
    /// The provider name the tunnel was admitted for.
    pub fn name(&self) -> &str {
        &self.tunnel.name
    }
    /// The operator address that signed the handshake (= the registry's).
    pub fn operator(&self) -> Address {
        self.tunnel.operator
    }
    /// The TCP peer the tunnel came from, as given to `upgrade`.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.tunnel.peer
    }
    /// When the tunnel was admitted.
    pub fn connected_at(&self) -> SystemTime {
        self.tunnel.connected_at
    }
    /// Requests in flight on this tunnel (response bodies not yet finished).
    pub fn in_flight(&self) -> usize {
        self.tunnel.max_streams as usize - self.tunnel.permits.available_permits()
    }

    /// Sends one request to the provider and returns its response head; bodies stream
    /// both ways under HTTP/2 flow control. A URI without scheme or authority gets
    /// `http` and the `Host` header's value (else the tunnel's name), as HTTP/2 requires.
    ///
    /// `Draining` and `Overloaded` mean the request was not sent (safe to retry or answer
    /// 503); `Http` after sending means it may have reached the provider.
    pub async fn send_request<B>(
        &self,
        req: Request<B>,
    ) -> Result<Response<TunnelBody>, TunnelError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let t = &self.tunnel;
        if t.draining.load(Ordering::SeqCst) {
            return Err(TunnelError::Draining);
        }
        let permit = t
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| TunnelError::Overloaded)?;
        let req = absolute(req, &t.name)?.map(|b| b.map_err(Into::into).boxed_unsync());
        let mut sender = t.sender.clone();
        sender.ready().await.map_err(|_| TunnelError::Draining)?;
        let resp = sender.send_request(req).await?;
        Ok(resp.map(|b| TunnelBody::new(b, permit)))
    }
}

fn absolute<B>(req: Request<B>, name: &str) -> Result<Request<B>, TunnelError> {
    if req.uri().scheme().is_some() && req.uri().authority().is_some() {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .unwrap_or_else(|| {
            name.parse()
                .unwrap_or_else(|_| http::uri::Authority::from_static("tunnel"))
        });
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|e| TunnelError::BadRequest(e.to_string()))?;
    Ok(Request::from_parts(parts, body))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

/// Runs `f` when dropped: frees a nonce slot or a live count on every exit path.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
