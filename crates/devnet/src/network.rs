//! [`Devnet`]: a whole local network as one value. anvil with the contracts, MockUSDC in
//! the dev wallets, a content store, N providers registered on-chain (`dev`, `dev2`, …),
//! optionally paid, each with a channel from the dev wallet; started together, stopped
//! together. `khachapuri dev`, the integration tests and the benchmarks all start this one
//! thing, so what a developer tries is what the tests check.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{Address, Chain, Deployment, EscrowClient, RegistryClient, U256};
use khachapuri_provider::{Node, NodeConfig, PriceList};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::anvil::{Anvil, AnvilOptions};
use crate::contracts::dev_network;
use crate::error::{DevnetError, Result};
use crate::keys::{dev_signer, DEV_KEYS};
use crate::provider::{start_provider, ProviderPlan};

/// Most providers one devnet runs: dev accounts 1..=8 operate them (account 0 is the
/// wallet, account 9 is left for tests that need a stranger).
pub const MAX_PROVIDERS: usize = 8;

/// How long [`Devnet::stop`] lets in-flight calls finish before stopping the chain.
const DRAIN: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone)]
pub struct DevnetOptions {
    /// Where the network keeps its state: the store's blocks, each provider's data dir,
    /// keys and config (`HOME/dev` for `khachapuri dev`, a temp dir for tests).
    pub dir: PathBuf,
    /// How many providers: `dev`, then `dev2` … `devN`.
    pub providers: usize,
    /// The providers charge nothing (local function development).
    pub free: bool,
    /// MockUSDC base units minted to each dev account.
    pub mint: U256,
    /// Base units the dev wallet (account 0) funds its channel to each provider with, so a
    /// newcomer can pay for calls at once (paid mode only).
    pub fund: U256,
    /// anvil's port; 0 picks a free one, a taken one falls back to a free one.
    pub chain_port: u16,
    /// The content store's address.
    pub store_listen: SocketAddr,
    /// The first provider's address; `devK` listens on its port + K − 1 (or a free port
    /// when this one is 0).
    pub provider_listen: SocketAddr,
    /// The gateway's address (domain `localhost`, loopback providers allowed); `None`
    /// starts no gateway.
    pub gateway_listen: Option<SocketAddr>,
    /// Fall back to a free port when a non-zero port is taken (recorded in
    /// [`Devnet::notices`]); otherwise a taken port is an error.
    pub fallback_ports: bool,
    /// How the store guards publishing (token off loopback).
    pub store_publish: khachapuri_store::PublishConfig,
    /// `signature_checks_per_client_per_sec` of the paid providers (0: unlimited, the
    /// developer's own machine).
    pub signature_limit: u32,
    /// `process` sandboxes each provider starts ahead of their request per called
    /// program (`process_warm_per_program`); 0 starts each on arrival.
    pub warm_sandboxes: usize,
    /// Applied to every provider's config before it starts (tests tune limits here).
    pub edit_node: Option<fn(&mut NodeConfig)>,
    /// Each provider also runs libp2p on loopback (TCP and QUIC, ephemeral ports), `dev`
    /// being the others' bootstrap peer, and attests with the devnet's test hierarchy.
    pub p2p: bool,
}

impl DevnetOptions {
    /// One paid provider, everything on free ports under `dir`: what tests start from.
    pub fn ephemeral(dir: impl Into<PathBuf>) -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            dir: dir.into(),
            providers: 1,
            free: false,
            mint: U256::from(10_000_000_000u64),
            fund: U256::from(100_000_000u64),
            chain_port: 0,
            store_listen: any,
            provider_listen: any,
            gateway_listen: Some(any),
            fallback_ports: true,
            store_publish: khachapuri_store::PublishConfig::default(),
            signature_limit: 0,
            warm_sandboxes: 0,
            edit_node: None,
            p2p: false,
        }
    }
}

/// One running provider of the network.
#[derive(Clone)]
pub struct DevProvider {
    /// Its registry name (`dev`, `dev2`, …).
    pub name: String,
    /// Where it answers, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Its operator (dev account `key_index`).
    pub operator: Address,
    /// Which dev account operates it (index into [`DEV_KEYS`]).
    pub key_index: usize,
    /// Its data dir (ledger, caches, keys).
    pub data_dir: PathBuf,
    /// Its config file, for `provider settle|status`.
    pub config_file: PathBuf,
    /// The node itself (metrics, cache usage in tests).
    pub node: Arc<Node>,
    /// Its libp2p node, when the devnet runs p2p.
    pub p2p: Option<Arc<khachapuri_p2p::P2pNode>>,
}

impl std::fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProvider")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("operator", &self.operator)
            .finish_non_exhaustive()
    }
}

/// A running local network. Dropping it stops every server and anvil (without draining;
/// [`Devnet::stop`] drains first).
pub struct Devnet {
    /// The chain's JSON-RPC endpoint.
    pub rpc_url: String,
    /// The contracts.
    pub deployment: Deployment,
    /// The content store (trustless gateway + Kubo RPC subset).
    pub store_url: String,
    /// The store's blocks (tests put content directly).
    pub store: khachapuri_store::Blockstore,
    /// The providers, `dev` first.
    pub providers: Vec<DevProvider>,
    /// The prices of the paid providers; `None` when free.
    pub prices: Option<PriceList>,
    /// The gateway, e.g. `http://127.0.0.1:8088` (`http://dev.localhost:8088/{cid}` routes
    /// to `dev`); `None` when not started.
    pub gateway_url: Option<String>,
    /// The gateway itself (tests look at its routing state).
    pub gateway: Option<Arc<khachapuri_gateway::Gateway>>,
    /// Things the caller may want to tell a user (a taken port moved elsewhere).
    pub notices: Vec<String>,
    /// Dev account 0's connection: the wallet that deployed and pays.
    pub wallet: Chain,
    /// The test attestation hierarchy the p2p providers attest with (a publisher's policy
    /// names its root to accept them); `None` without p2p.
    pub attest_authority: Option<Arc<khachapuri_attest::TestAuthority>>,
    /// Where a publisher joins the p2p network (`dev`'s addresses); empty without p2p.
    pub p2p_bootstrap: Vec<khachapuri_p2p::Multiaddr>,
    anvil: Anvil,
    stop: watch::Sender<bool>,
    /// One stop per provider, for [`Devnet::stop_provider`].
    provider_stops: Vec<watch::Sender<bool>>,
    servers: Vec<(String, JoinHandle<std::io::Result<()>>)>,
    background: Vec<JoinHandle<()>>,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("rpc_url", &self.rpc_url)
            .field("store_url", &self.store_url)
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Devnet {
    /// Starts the whole network; nothing is left running if any part fails.
    pub async fn start(options: DevnetOptions) -> Result<Self> {
        if options.providers == 0 || options.providers > MAX_PROVIDERS {
            return Err(DevnetError::Options(format!(
                "{} providers asked; a devnet runs 1 to {MAX_PROVIDERS}",
                options.providers
            )));
        }
        let mut notices = Vec::new();
        let store_listener = bind(options.store_listen, "store", &options, &mut notices).await?;
        let mut provider_listeners = Vec::with_capacity(options.providers);
        for i in 0..options.providers {
            let mut addr = options.provider_listen;
            if addr.port() != 0 {
                let port = u16::try_from(usize::from(addr.port()) + i).map_err(|_| {
                    DevnetError::Options(format!("provider port {} + {i} overflows", addr.port()))
                })?;
                addr.set_port(port);
            }
            let name = provider_name(i);
            let what = format!("provider {name}");
            provider_listeners.push(bind(addr, &what, &options, &mut notices).await?);
        }
        let gateway_listener = match options.gateway_listen {
            Some(addr) => Some(bind(addr, "gateway", &options, &mut notices).await?),
            None => None,
        };
        let store_url = url_of(&store_listener)?;
        let anvil = spawn_anvil(options.chain_port, options.fallback_ports, &mut notices)?;
        let rpc_url = anvil.endpoint();
        let (wallet, deployment) = dev_network(&anvil, options.mint).await?;
        let store = khachapuri_store::Blockstore::open(options.dir.join("store")).map_err(|e| {
            DevnetError::Io {
                what: "cannot open the dev content store".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let mut servers = Vec::new();
        servers.push((
            "store".to_string(),
            tokio::spawn(khachapuri_store::serve_with(
                store_listener,
                store.clone(),
                khachapuri_store::Limits::default(),
                options.store_publish.clone(),
                stopped(stop_rx.clone()),
            )),
        ));
        if !options.free {
            let total = options.fund * U256::from(options.providers);
            EscrowClient::new(&wallet, deployment.escrow)
                .deposit(total)
                .await
                .map_err(DevnetError::chain(
                    "cannot deposit the dev wallet's USDC into the escrow",
                ))?;
        }
        let prices = (!options.free).then(PriceList::default);
        let mut providers = Vec::with_capacity(options.providers);
        let mut background = Vec::new();
        let mut provider_stops = Vec::new();
        let attest_authority = if options.p2p {
            Some(Arc::new(
                khachapuri_attest::TestAuthority::generate().map_err(|e| {
                    DevnetError::Options(format!("cannot create the test attestation root: {e}"))
                })?,
            ))
        } else {
            None
        };
        let mut p2p_bootstrap = Vec::new();
        for (i, listener) in provider_listeners.into_iter().enumerate() {
            let plan = ProviderPlan {
                name: provider_name(i),
                key_index: 1 + i,
                data_dir: provider_dir(&options.dir, i),
                url: url_of(&listener)?,
                listen: listener.local_addr().map_err(DevnetError::io("listener"))?,
                rpc_url: rpc_url.clone(),
                store_url: store_url.clone(),
                deployment,
                prices: prices.clone(),
                options: &options,
                p2p: attest_authority.clone().map(|a| (a, p2p_bootstrap.clone())),
            };
            let started = start_provider(plan, &wallet).await?;
            if let (Some(p2p), true) = (&started.provider.p2p, p2p_bootstrap.is_empty()) {
                p2p_bootstrap = p2p
                    .listen_addrs()
                    .await
                    .map_err(|e| DevnetError::Provider {
                        name: started.provider.name.clone(),
                        reason: format!("p2p: {e}"),
                    })?;
            }
            let (own_stop, own_rx) = watch::channel(false);
            provider_stops.push(own_stop);
            let global = stop_rx.clone();
            servers.push((
                format!("provider {}", started.provider.name),
                tokio::spawn(khachapuri_provider::serve(
                    listener,
                    started.provider.node.clone(),
                    async move {
                        tokio::select! {
                            () = stopped(global) => {}
                            () = stopped(own_rx) => {}
                        }
                    },
                )),
            ));
            if let Some(settlement) = started.settlement {
                background.push(tokio::spawn(settlement.run(stopped(stop_rx.clone()))));
            }
            providers.push(started.provider);
        }
        let (gateway_url, gateway) = match gateway_listener {
            Some(listener) => {
                let url = url_of(&listener)?;
                let launched =
                    crate::gateway::start(listener, &rpc_url, &deployment, stop_rx.clone()).await?;
                servers.push(("gateway".to_string(), launched.server));
                background.push(launched.watcher);
                (Some(url), Some(launched.gateway))
            }
            None => (None, None),
        };
        Ok(Self {
            gateway_url,
            gateway,
            rpc_url,
            deployment,
            store_url,
            store,
            providers,
            prices,
            notices,
            wallet,
            attest_authority,
            p2p_bootstrap,
            anvil,
            stop,
            provider_stops,
            servers,
            background,
        })
    }

    /// The `dev` provider (always there).
    pub fn dev(&self) -> &DevProvider {
        &self.providers[0]
    }

    /// The running anvil (tests move its clock through [`crate::advance_time`]).
    pub fn anvil(&self) -> &Anvil {
        &self.anvil
    }

    /// The key of dev account 0, the wallet that pays (public by design).
    pub fn wallet_key(&self) -> &'static str {
        DEV_KEYS[0]
    }

    /// Stops one provider's server (as if its machine went away) and waits until it has
    /// drained; the rest of the network keeps running. [`Devnet::failed`] ignores it.
    pub async fn stop_provider(&mut self, name: &str) -> Result<()> {
        let index = self
            .providers
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| DevnetError::Options(format!("no provider named {name}")))?;
        let _ = self.provider_stops[index].send(true);
        let label = format!("provider {name}");
        if let Some(at) = self.servers.iter().position(|(what, _)| *what == label) {
            let (_, task) = self.servers.remove(at);
            let _ = tokio::time::timeout(DRAIN, task).await;
        }
        Ok(())
    }

    /// Resolves when one of the servers stops on its own: that is always a failure while
    /// the network is meant to run.
    pub async fn failed(&mut self) -> DevnetError {
        if self.servers.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.servers.iter_mut().map(|(what, task)| {
            Box::pin(async move {
                let why = match task.await {
                    Ok(Ok(())) => "stopped".to_string(),
                    Ok(Err(e)) => format!("stopped: {e}"),
                    Err(e) => format!("panicked: {e}"),
                };
                DevnetError::Provider {
                    name: what.clone(),
                    reason: format!("the server {why}"),
                }
            })
        });
        futures::future::select_all(waits).await.0
    }

    /// Stops the servers, lets in-flight calls finish (at most 10 s), then stops anvil.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let servers = std::mem::take(&mut self.servers);
        let background = std::mem::take(&mut self.background);
        let _ = tokio::time::timeout(DRAIN, async {
            for (_, task) in servers {
                let _ = task.await;
            }
            for task in background {
                let _ = task.await;
            }
        })
        .await;
        // Dropping self drops anvil last.
    }
}

/// `dev`, `dev2`, `dev3`, …
pub fn provider_name(index: usize) -> String {
    if index == 0 {
        "dev".into()
    } else {
        format!("dev{}", index + 1)
    }
}

/// `dev` keeps `DIR/provider` (where earlier versions kept it); the others get
/// `DIR/provider-devK`.
fn provider_dir(dir: &Path, index: usize) -> PathBuf {
    if index == 0 {
        dir.join("provider")
    } else {
        dir.join(format!("provider-{}", provider_name(index)))
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn url_of(listener: &TcpListener) -> Result<String> {
    let addr = listener
        .local_addr()
        .map_err(DevnetError::io("cannot read a listener's address"))?;
    Ok(format!("http://{addr}"))
}

/// Binds `addr`; a taken non-zero port falls back to a free one when allowed.
async fn bind(
    addr: SocketAddr,
    what: &str,
    options: &DevnetOptions,
    notices: &mut Vec<String>,
) -> Result<TcpListener> {
    let err = |source| DevnetError::Bind {
        what: what.to_string(),
        addr,
        source,
    };
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e)
            if e.kind() == std::io::ErrorKind::AddrInUse
                && addr.port() != 0
                && options.fallback_ports =>
        {
            let l = TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .map_err(err)?;
            let actual = l.local_addr().map_err(DevnetError::io("listener"))?;
            notices.push(format!(
                "port {} is in use; the {what} listens on {actual} instead",
                addr.port()
            ));
            Ok(l)
        }
        Err(e) => Err(err(e)),
    }
}

fn spawn_anvil(port: u16, fallback: bool, notices: &mut Vec<String>) -> Result<Anvil> {
    let mut port = port;
    if port != 0 && fallback && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        notices.push(format!(
            "port {port} is in use; the chain listens on a free port instead"
        ));
        port = 0;
    }
    Anvil::spawn_with(AnvilOptions {
        port,
        ..AnvilOptions::default()
    })
}

/// The signer of the provider at `index` (dev account `index + 1`).
pub fn provider_signer(index: usize) -> khachapuri_chain::PrivateKeySigner {
    dev_signer(1 + index)
}

/// Registers `name` for `operator_chain`'s signer at `url`.
pub(crate) async fn register(
    operator_chain: &Chain,
    deployment: &Deployment,
    name: &str,
    url: &str,
    pubkey: [u8; 32],
) -> Result<()> {
    let operator = operator_chain
        .address()
        .ok_or_else(|| DevnetError::Options("the operator connection has no signer".into()))?;
    RegistryClient::new(operator_chain, deployment.registry)
        .register_or_update(&khachapuri_chain::Registration {
            name: name.into(),
            operator,
            url: url.into(),
            pubkey,
            regions: vec!["local".into()],
            contact: String::new(),
        })
        .await
        .map_err(DevnetError::chain(format!(
            "cannot register provider {name}"
        )))?;
    Ok(())
}
