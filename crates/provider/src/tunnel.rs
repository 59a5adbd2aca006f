//! Serving the node through a gateway tunnel (`provider run --tunnel GATEWAY_URL`), for a
//! provider with no public address: the node dials the gateway and answers the requests
//! the gateway sends over that one connection. The client side of the protocol is the
//! tunnel crate's; this module only plugs the node's router into it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use khachapuri_chain::PrivateKeySigner;
use khachapuri_tunnel::{ClientConfig, TunnelClient, TunnelState};
use tokio::sync::watch;

use crate::error::ProviderError;
use crate::node::Node;

/// The node's router for tunnel traffic. Only the gateway can send requests here (the
/// provider dialled it and checked its host), so the last `X-Forwarded-For` entry, the
/// one the gateway appended, is the caller's address: per-client limits apply to callers,
/// not to the gateway.
pub fn tunnel_router(node: Arc<Node>) -> axum::Router {
    let body_timeout = Duration::from_millis(node.config().body_read_timeout_ms);
    crate::http::router(node)
        .layer(middleware::from_fn_with_state(
            body_timeout,
            crate::server::body_deadline,
        ))
        .layer(middleware::from_fn(caller_from_gateway))
}

async fn caller_from_gateway(mut req: Request, next: Next) -> Response {
    let caller = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
    if let Some(ip) = caller {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 0)));
    }
    next.run(req).await
}

/// Serves `node` through the gateway at `gateway_url` until `shutdown`, proving the
/// operator key `signer`; `chain_id` pins the registry's chain. Reconnects on its own
/// (jittered backoff); `state` reports every change (connected, retrying, refused).
pub async fn serve_tunnel(
    node: Arc<Node>,
    gateway_url: &str,
    chain_id: u64,
    signer: PrivateKeySigner,
    state: impl Fn(&TunnelState) + Send + 'static,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProviderError> {
    let mut config = ClientConfig::new(gateway_url, node.config().name.clone());
    config.chain_id = Some(chain_id);
    let client = TunnelClient::new(config, Arc::new(signer), tunnel_router(node))
        .map_err(|e| ProviderError::Config(format!("--tunnel {gateway_url}: {e}")))?;
    let mut watch: watch::Receiver<TunnelState> = client.state();
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let now = watch.borrow_and_update().clone();
            state(&now);
        }
    });
    client
        .run(shutdown)
        .await
        .map_err(|e| ProviderError::Config(format!("tunnel to {gateway_url}: {e}")))
}
