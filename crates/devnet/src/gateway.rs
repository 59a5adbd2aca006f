//! The devnet's gateway: domain `localhost` (so `http://dev.localhost:PORT/{cid}/` works
//! with curl as is: `*.localhost` resolves to loopback), loopback providers allowed since
//! everything runs on one machine, registry events watched with a short poll.

use khachapuri_chain::Deployment;
use khachapuri_gateway::{launch, Extras, GatewayConfig, Launched};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::{DevnetError, Result};

/// The gateway config a devnet runs with.
pub fn dev_gateway_config(rpc_url: &str, deployment: &Deployment) -> GatewayConfig {
    GatewayConfig {
        domain: "localhost".into(),
        dev: true,
        rpc_url: rpc_url.to_string(),
        registry: deployment.registry,
        registry_from_block: deployment.block.max(1),
        event_poll_ms: 500,
        providers_refresh_secs: 2,
        ..GatewayConfig::default()
    }
}

/// Starts the devnet's gateway on `listener`.
pub(crate) async fn start(
    listener: TcpListener,
    rpc_url: &str,
    deployment: &Deployment,
    stop: watch::Receiver<bool>,
) -> Result<Launched> {
    launch(
        dev_gateway_config(rpc_url, deployment),
        listener,
        Extras::default(),
        stop,
    )
    .await
    .map_err(|e| DevnetError::Provider {
        name: "gateway".into(),
        reason: e.to_string(),
    })
}
