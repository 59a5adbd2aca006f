//! The provider tunnel: a provider with no public address serves the gateway over one
//! outbound WebSocket, so `https://{name}.{domain}/…` reaches it behind any NAT.
//!
//! This crate owns both ends of the protocol: [`TunnelServer`] (the gateway) and
//! [`TunnelClient`] (the provider, `provider run --tunnel GATEWAY_URL`).
//!
//! # Protocol
//!
//! 1. The provider dials `ws(s)://{gateway}/.well-known/khachapuri/tunnel` ([`TUNNEL_PATH`]).
//! 2. **Handshake**, as JSON text messages ([`handshake`] has the exact forms and the
//!    strict decoder): the gateway sends a *challenge* (32 random bytes of nonce, its
//!    host, its chain id, an expiry); the provider checks host and chain are the ones it
//!    meant, and answers *hello* (name, operator address, nonce, signature); the gateway
//!    answers *accepted* or *refused* with a code and an operator-readable message, then
//!    closes.
//! 3. **HTTP/2 with reversed roles** over binary messages: the gateway is the HTTP/2
//!    client, the provider the HTTP/2 server, as cloudflared does. Each gateway request
//!    is one HTTP/2 stream.
//!
//! The signature is EIP-191 `personal_sign` over [`handshake::signing_text`]: a fixed,
//! versioned text (`khachapuri-tunnel-login-v1`, then one field per line: gateway host,
//! chain id, name, checksummed operator, nonce, expiry). EIP-191 rather than EIP-712
//! because every wallet and signer (keystore, hardware) signs it, the text is readable
//! where a human approves it, and there is no contract to bind a domain to; the first
//! line separates it from every other Khachapuri signature (vouchers are EIP-712).
//!
//! The gateway admits a tunnel only when: the nonce is the one it issued on this
//! connection and is still outstanding ([`NonceStore`]: single use, expiring, bounded),
//! the expiry has not passed, the signature recovers to the claimed operator, and the
//! registry ([`OperatorLookup`]) names that address as the name's operator. Otherwise it
//! refuses with a [`RefusalCode`] and a message such as `name x is not registered`,
//! `signature is from 0x…, registry says operator of x is 0x…` or `nonce replayed or
//! expired: …`; the provider publishes it as [`TunnelState::Refused`] and, for refusals
//! retrying cannot fix ([`RefusalCode::is_permanent`]), waits
//! [`ClientConfig::refused_backoff`] (5 min) before trying again.
//!
//! # Why HTTP/2 over a WebSocket (and not yamux or our own multiplexer)
//!
//! HTTP/2 already is the multiplexer the tunnel needs: per-stream and per-connection flow
//! control (a 1 GiB upload runs in flat memory), PING keepalive (dead peers are found,
//! NAT mappings kept warm), GOAWAY (graceful drain on either side), header compression,
//! and streamed bodies both ways (SSE is not buffered). hyper and h2 were in the lockfile
//! already, and the gateway's requests *are* HTTP requests, so nothing is re-framed:
//! yamux would have added a crate and still needed HTTP/1.1 per stream. The WebSocket
//! carries it because it passes through every HTTP proxy, load balancer and TLS
//! terminator the gateway may sit behind, on the gateway's ordinary port.
//!
//! # Gateway side
//!
//! ```no_run
//! # use std::{net::SocketAddr, sync::Arc};
//! # use khachapuri_tunnel::*;
//! # async fn sketch(lookup: Arc<dyn OperatorLookup>, req: http::Request<hyper::body::Incoming>, peer: SocketAddr) -> Result<(), TunnelError> {
//! let tunnels = TunnelServer::new(ServerConfig::new("khachapuri.xyz", 8453), lookup)?;
//! // In the router, for GET /.well-known/khachapuri/tunnel:
//! let _switching_protocols = tunnels.upgrade(req, Some(peer));
//! // In the proxy, for a name whose registry endpoint is this gateway's own URL:
//! # let proxied: http::Request<http_body_util::Empty<bytes::Bytes>> = http::Request::default();
//! match tunnels.sender("dev") {
//!     Some(tunnel) => {
//!         let _response = tunnel.send_request(proxied).await?; // Response<TunnelBody>, streaming
//!     }
//!     None => { /* 502: provider not connected */ }
//! }
//! // On shutdown: drain in-flight requests (bounded), then close every tunnel.
//! tunnels.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! `send_request` fails with [`TunnelError::Draining`] or [`TunnelError::Overloaded`]
//! without having sent anything (retry or 503); a name that reconnects replaces its old
//! tunnel (newer wins, the old one drains). The gateway adds `X-Forwarded-For` itself.
//!
//! # Provider side
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use khachapuri_tunnel::*;
//! # async fn sketch(router: axum::Router, signer: alloy_signer_local::PrivateKeySigner) -> Result<(), TunnelError> {
//! let mut config = ClientConfig::new("https://khachapuri.xyz", "dev");
//! config.chain_id = Some(8453);
//! let client = TunnelClient::new(config, Arc::new(signer), router)?;
//! let mut state = client.state(); // watch: Connecting / Connected / Retrying / Refused / Stopped
//! tokio::spawn(async move {
//!     while state.changed().await.is_ok() {
//!         tracing::info!(state = ?*state.borrow(), "tunnel");
//!     }
//! });
//! client.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! Requests arriving through the tunnel carry a [`ViaTunnel`] extension: trust the
//! gateway's `X-Forwarded-For` only on those.
//!
//! # Choices worth knowing
//!
//! - **A nonce is bound to its connection.** The gateway issues one per WebSocket and
//!   admits only a hello echoing *that* nonce, then spends it ([`NonceStore::take`]) even
//!   if the rest fails. A captured answer replayed on another connection is refused as
//!   `nonce` before its signature is even looked at; the store adds expiry and the bound
//!   on handshakes in progress (`busy` when full, never eviction).
//! - **The gateway drains without GOAWAY.** HTTP/2 lets either side send GOAWAY, but
//!   hyper's (h2's) client exposes no way to send one. So on `shutdown` (or when a newer
//!   tunnel replaces an old one) the gateway stops routing locally (`Draining`), waits for
//!   the requests in flight (bounded by `drain_timeout`, counted by [`TunnelBody`]), then
//!   closes the WebSocket; the provider sees the close and reconnects at once. The
//!   provider's own shutdown does send GOAWAY (it is the HTTP/2 server).
//! - **`send_request` answers `Response<TunnelBody>`**, hyper's `Incoming` plus the
//!   request's in-flight slot, rather than a bare `Incoming`: that is what makes drains
//!   and `max_streams_per_tunnel` exact without the caller counting.
//! - **The provider checks the challenge too**: host (against the URL it dialled) and
//!   chain id (when configured). A rogue gateway cannot get a signature it could replay at
//!   the real one, because the real one's host is in the signed text.
//!
//! # Limits
//!
//! Every wait is bounded and every limit is a field of [`ServerConfig`], [`ClientConfig`]
//! or [`H2Config`] (documented there with the reason for its default). Handshake
//! messages are capped at [`handshake::MAX_MESSAGE_BYTES`], WebSocket messages at
//! [`H2Config::max_ws_message`]. Per-source-address limits on handshakes are the
//! gateway's (the lead's) to add in front of `upgrade`.

mod body;
mod client;
mod config;
mod error;
pub mod handshake;
mod nonce;
mod server;
mod ws_io;

pub use body::TunnelBody;
pub use client::{run_tunnel, TunnelClient, TunnelSigner, TunnelState, ViaTunnel};
pub use config::{ClientConfig, H2Config, ServerConfig};
pub use error::{BoxError, RefusalCode, TunnelError};
pub use nonce::NonceStore;
pub use server::{
    LookupFuture, OperatorLookup, StaticOperators, TunnelHandle, TunnelServer, TUNNEL_PATH,
};
