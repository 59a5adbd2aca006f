//! Starting a gateway from its config: the registry client, the address policy (with the
//! gateway's own address), the resolver, the registry watcher and the server, as one call
//! shared by `gateway run` and the devnet.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::addr::AddressPolicy;
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Tunnels};
use crate::resolve::{watch_registry, ChainRegistry, Resolver};
use crate::server::{serve, tls_acceptor, Hook};

/// A started gateway.
pub struct Launched {
    /// The gateway (routing state, resolver).
    pub gateway: Arc<Gateway>,
    /// The server; resolves when it has drained after shutdown.
    pub server: JoinHandle<std::io::Result<()>>,
    /// The registry watcher; ends with the shutdown.
    pub watcher: JoinHandle<()>,
}

/// What else a gateway carries besides proxying: tunnels to providers behind NAT, and a
/// hook that answers some requests itself (the tunnel endpoint).
#[derive(Default, Clone)]
pub struct Extras {
    /// Carries requests to tunneled providers.
    pub tunnels: Option<Arc<dyn Tunnels>>,
    /// Sees each request before routing.
    pub hook: Option<Hook>,
}

/// Starts a gateway on `listener` with `config`; it stops when `stop` turns `true`.
pub async fn launch(
    mut config: GatewayConfig,
    listener: TcpListener,
    extras: Extras,
    stop: watch::Receiver<bool>,
) -> Result<Launched, GatewayError> {
    let local = listener
        .local_addr()
        .map_err(|e| GatewayError::Registry(format!("listener: {e}")))?;
    config.listen = local;
    config.domain = config.domain.to_ascii_lowercase();
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key).map_err(GatewayError::Tls)?),
        (None, None) => None,
        _ => {
            return Err(GatewayError::Tls(
                "give both a certificate and its key (or neither)".into(),
            ))
        }
    };
    let chain = khachapuri_chain::Chain::connect(&config.rpc_url, None)
        .await
        .map_err(|e| {
            GatewayError::Registry(format!("cannot connect to {}: {e}", config.rpc_url))
        })?;
    let from_block = if config.registry_from_block == 0 {
        chain
            .block_number()
            .await
            .map_err(|e| GatewayError::Registry(e.to_string()))?
    } else {
        config.registry_from_block
    };
    let registry = Arc::new(ChainRegistry::new(&chain, config.registry));
    let policy = AddressPolicy {
        allow_loopback: config.dev,
        own: vec![local],
    };
    let registry: Arc<dyn crate::resolve::Registry> = registry;
    let resolver = Arc::new(Resolver::new(registry.clone(), policy, &config));
    let mut extras = extras;
    let mut tunnel_server = None;
    if config.tunnels && extras.tunnels.is_none() {
        let host = config
            .tunnel_host
            .clone()
            .unwrap_or_else(|| config.domain.clone());
        let server = khachapuri_tunnel::TunnelServer::new(
            khachapuri_tunnel::ServerConfig::new(host, chain.chain_id()),
            Arc::new(crate::tunnels::RegistryOperators(registry)),
        )
        .map_err(|e| GatewayError::Registry(format!("tunnel server: {e}")))?;
        extras.tunnels = Some(Arc::new(crate::tunnels::TunnelSet(server.clone())));
        extras.hook = Some(crate::tunnels::tunnel_hook(server.clone()));
        tunnel_server = Some(server);
    }
    let gateway = Arc::new(Gateway::new(
        config.clone(),
        resolver.clone(),
        extras.tunnels,
    ));
    let on_change = {
        let gateway = gateway.clone();
        move || gateway.public().invalidate()
    };
    let watcher = tokio::spawn(watch_registry(
        chain,
        config.registry,
        from_block,
        Duration::from_millis(config.event_poll_ms.max(100)),
        resolver,
        on_change,
        stopped(stop.clone()),
    ));
    let serving = serve(
        listener,
        gateway.clone(),
        tls,
        extras.hook,
        stopped(stop.clone()),
    );
    let server = tokio::spawn(async move {
        let drain_tunnels = async {
            stopped(stop).await;
            // GOAWAY to every tunnel; their providers reconnect to the next gateway.
            if let Some(t) = &tunnel_server {
                t.shutdown().await;
            }
        };
        let (served, ()) = tokio::join!(serving, drain_tunnels);
        served
    });
    Ok(Launched {
        gateway,
        server,
        watcher,
    })
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|v| *v).await;
}
