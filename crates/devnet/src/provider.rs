//! One provider of a [`crate::Devnet`]: registered on-chain under its dev name, with an
//! X25519 key for sealed specs and, when paid, the dev prices as a registry pricing table,
//! its operator key on disk, a channel from the dev wallet and payments connected.

use std::path::Path;
use std::sync::Arc;

use khachapuri_chain::{Chain, Deployment, EscrowClient, RegistryClient, U256};
use khachapuri_provider::{connect_payments, Node, NodeConfig, PaymentsConfig, PriceList};

use khachapuri_attest::TestAuthority;
use khachapuri_p2p::Multiaddr;
use khachapuri_provider::{Attester, P2pFacts, P2pSection};

use crate::error::{DevnetError, Result};
use crate::keys::{dev_signer, DEV_KEYS};
use crate::network::{register, DevProvider, DevnetOptions};

/// Everything one provider is built from.
pub(crate) struct ProviderPlan<'a> {
    pub name: String,
    pub key_index: usize,
    pub data_dir: std::path::PathBuf,
    pub url: String,
    pub listen: std::net::SocketAddr,
    pub rpc_url: String,
    pub store_url: String,
    pub deployment: Deployment,
    pub prices: Option<PriceList>,
    pub options: &'a DevnetOptions,
    /// With p2p: the attestation authority and the peers to bootstrap from.
    pub p2p: Option<(Arc<TestAuthority>, Vec<Multiaddr>)>,
}

/// A configured node, not yet serving.
pub(crate) struct Started {
    pub provider: DevProvider,
    pub settlement: Option<khachapuri_provider::Settlement>,
}

/// Registers, configures and builds the node of `plan`; `wallet` funds its channel.
pub(crate) async fn start_provider(plan: ProviderPlan<'_>, wallet: &Chain) -> Result<Started> {
    let name = plan.name.clone();
    let fail = |reason: String| DevnetError::Provider {
        name: name.clone(),
        reason,
    };
    std::fs::create_dir_all(&plan.data_dir).map_err(DevnetError::io(format!(
        "cannot create {}",
        plan.data_dir.display()
    )))?;
    let operator = dev_signer(plan.key_index);
    let operator_address = operator.address();
    let operator_chain = Chain::connect(&plan.rpc_url, Some(operator))
        .await
        .map_err(DevnetError::chain("cannot connect to the local chain"))?;
    let x25519_key_file = plan.data_dir.join("x25519.key");
    let (_, x25519_public) = khachapuri_seal::load_or_create_key_file(&x25519_key_file)
        .map_err(|e| fail(format!("cannot create its X25519 key: {e}")))?;
    register(
        &operator_chain,
        &plan.deployment,
        &plan.name,
        &plan.url,
        x25519_public,
    )
    .await?;
    let mut config = NodeConfig {
        listen: plan.listen,
        name: plan.name.clone(),
        address: Some(operator_address.to_string()),
        x25519_key_file: Some(x25519_key_file),
        data_dir: plan.data_dir.clone(),
        gateways: vec![plan.store_url.clone()],
        free: plan.prices.is_none(),
        // The developer's own machine: native programs run too (`provider run` opts in).
        runtimes: NodeConfig::local_runtimes(),
        process_warm_per_program: plan.options.warm_sandboxes,
        ..NodeConfig::default()
    };
    if let Some((_, bootstrap)) = &plan.p2p {
        config.p2p = Some(P2pSection {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".into(),
                "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            ],
            bootstrap: bootstrap.iter().map(|a| a.to_string()).collect(),
            announce_listen_addrs: true,
            endpoint: Some(plan.url.clone()),
            regions: vec!["local".into()],
            ..P2pSection::default()
        });
    }
    if let Some(edit) = plan.options.edit_node {
        edit(&mut config);
    }
    let mut settlement = None;
    let admission: Box<dyn khachapuri_provider::Admission> = match &plan.prices {
        None => Box::new(khachapuri_provider::Free),
        Some(prices) => {
            paid_config(&plan, &mut config, &operator_chain, prices).await?;
            EscrowClient::new(wallet, plan.deployment.escrow)
                .fund(operator_address, plan.options.fund)
                .await
                .map_err(DevnetError::chain(format!(
                    "cannot fund the channel to {}",
                    plan.name
                )))?;
            let paid = connect_payments(&mut config, None)
                .await
                .map_err(|e| fail(format!("cannot start payments: {e}")))?;
            settlement = Some(paid.settlement);
            Box::new(paid.admission)
        }
    };
    let config_file = plan.data_dir.join("provider.toml");
    write_config(&config_file, &config)?;
    let p2p_section = config.p2p.clone();
    let node = Arc::new(Node::new(config, admission).map_err(|e| fail(e.to_string()))?);
    let p2p = match (&plan.p2p, p2p_section) {
        (Some((authority, _)), Some(section)) => {
            let prices = plan.prices.clone().unwrap_or_default();
            let min_channel = khachapuri_chain::parse_usdc(&prices.per_request)
                .map_err(|e| fail(format!("dev prices: {e}")))?;
            let facts = P2pFacts {
                operator: dev_signer(plan.key_index),
                chain_id: plan.deployment.chain_id,
                escrow_address: plan.deployment.escrow,
                escrow: plan
                    .prices
                    .is_some()
                    .then(|| EscrowClient::new(&operator_chain, plan.deployment.escrow)),
                prices,
                min_channel,
                attester: Attester::Test(authority.clone()),
            };
            let started = khachapuri_provider::start_p2p(node.clone(), facts, &section)
                .await
                .map_err(|e| fail(format!("p2p: {e}")))?;
            // The record says where the node listens: publishers may dial it directly.
            let addrs: Vec<String> = started
                .listen_addrs()
                .await
                .map_err(|e| fail(format!("p2p: {e}")))?
                .iter()
                .map(|a| a.to_string())
                .collect();
            RegistryClient::new(&operator_chain, plan.deployment.registry)
                .set_p2p(&plan.name, &addrs)
                .await
                .map_err(DevnetError::chain("cannot publish the p2p addresses"))?;
            Some(Arc::new(started))
        }
        _ => None,
    };
    Ok(Started {
        provider: DevProvider {
            name: plan.name,
            url: plan.url,
            operator: operator_address,
            key_index: plan.key_index,
            data_dir: plan.data_dir,
            config_file,
            node,
            p2p,
        },
        settlement,
    })
}

/// Publishes the dev prices as the provider's pricing table, writes its operator key and
/// fills the `[payments]` section. Each devnet starts a fresh chain, so the previous run's
/// vouchers and event cursor are wiped first.
async fn paid_config(
    plan: &ProviderPlan<'_>,
    config: &mut NodeConfig,
    operator_chain: &Chain,
    prices: &PriceList,
) -> Result<()> {
    let pricing = prices.to_pricing().map_err(|e| DevnetError::Provider {
        name: plan.name.clone(),
        reason: format!("dev prices: {e}"),
    })?;
    let registry = RegistryClient::new(operator_chain, plan.deployment.registry);
    let table = registry
        .create_table(
            U256::from(pricing.per_request),
            U256::from(pricing.per_ms),
            U256::from(pricing.per_mb_out),
        )
        .await
        .map_err(DevnetError::chain("cannot create the dev pricing table"))?;
    registry
        .subscribe(&plan.name, table)
        .await
        .map_err(DevnetError::chain(
            "cannot subscribe to the dev pricing table",
        ))?;
    for stale in [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        "escrow-events.block",
    ] {
        let _ = std::fs::remove_file(plan.data_dir.join(stale));
    }
    let key_file = plan.data_dir.join("operator.key");
    write_private(&key_file, DEV_KEYS[plan.key_index])?;
    config.payments = Some(PaymentsConfig {
        rpc_url: plan.rpc_url.clone(),
        chain_id: plan.deployment.chain_id,
        escrow: plan.deployment.escrow,
        registry: Some(plan.deployment.registry),
        pricing: prices.clone(),
        settle_threshold: "10".into(),
        settle_interval_secs: 600,
        event_poll_ms: 1000,
        operator_key_file: Some(key_file),
        signature_checks_per_client_per_sec: plan.options.signature_limit,
        ..PaymentsConfig::default()
    });
    Ok(())
}

/// Writes the node's config where `provider settle|status` find it.
fn write_config(path: &Path, config: &NodeConfig) -> Result<()> {
    let text = toml::to_string(config).map_err(|e| DevnetError::Io {
        what: "cannot encode the provider config".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::fs::write(path, text).map_err(DevnetError::io(format!("cannot write {}", path.display())))
}

/// Writes a secret readable by its owner only (created 0600, never widened).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let err = || DevnetError::io(format!("cannot write {}", path.display()));
    let mut f = options.open(path).map_err(err())?;
    f.write_all(text.as_bytes()).map_err(err())
}
