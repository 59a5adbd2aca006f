//! The paid side of `khachapuri dev`: the dev provider charges the dev prices (published
//! as a registry pricing table the `dev` name follows), its operator is anvil account 1,
//! and the dev wallet (account 0) pre-funds a channel to it so a newcomer can pay for calls
//! at once. Each run starts a fresh chain, so the previous run's ledger is wiped.

use std::path::Path;

use anyhow::Context;
use khachapuri_chain::{Chain, Deployment, EscrowClient, RegistryClient, U256};
use khachapuri_provider::{connect_payments, NodeConfig, PaidSetup, PaymentsConfig, PriceList};

/// What the paid dev provider is built from.
pub struct DevPaid<'a> {
    /// The dev provider's config; gets its `[payments]` section.
    pub node_config: &'a mut NodeConfig,
    /// Dev account 0 (the profile's wallet), which funds the channel.
    pub deployer: &'a Chain,
    /// Dev account 1, the provider's operator (owns the `dev` name).
    pub operator_chain: &'a Chain,
    /// The contracts.
    pub deployment: &'a Deployment,
    /// The local chain.
    pub rpc_url: &'a str,
    /// Base units the wallet funds the channel with.
    pub fund: U256,
    /// `signature_checks_per_client_per_sec` of the dev provider (0: unlimited).
    pub signature_limit: u32,
}

/// The started pieces.
pub struct DevPaidSetup {
    /// Admission and settlement service.
    pub paid: PaidSetup,
    /// The dev prices (USDC strings).
    pub prices: PriceList,
}

/// Publishes the dev prices, writes the operator key, funds the channel, connects payments.
pub async fn setup(d: DevPaid<'_>) -> anyhow::Result<DevPaidSetup> {
    let prices = PriceList::default();
    let pricing = prices.to_pricing()?;
    let registry = RegistryClient::new(d.operator_chain, d.deployment.registry);
    let table = registry
        .create_table(
            U256::from(pricing.per_request),
            U256::from(pricing.per_ms),
            U256::from(pricing.per_mb_out),
        )
        .await
        .context("cannot create the dev pricing table")?;
    registry
        .subscribe("dev", table)
        .await
        .context("cannot subscribe the dev provider to its pricing table")?;

    let data_dir = d.node_config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    // A fresh chain: the last run's vouchers and event cursor mean nothing any more.
    for stale in [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        "escrow-events.block",
    ] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    let key_file = data_dir.join("operator.key");
    write_private(&key_file, khachapuri_chain::DEV_KEYS[1])?;
    d.node_config.payments = Some(PaymentsConfig {
        rpc_url: d.rpc_url.to_string(),
        chain_id: d.deployment.chain_id,
        escrow: d.deployment.escrow,
        registry: Some(d.deployment.registry),
        pricing: prices.clone(),
        settle_threshold: "10".into(),
        settle_interval_secs: 600,
        event_poll_ms: 1000,
        operator_key_file: Some(key_file),
        signature_checks_per_client_per_sec: d.signature_limit,
        ..PaymentsConfig::default()
    });

    let operator = d
        .operator_chain
        .address()
        .context("the operator connection has no signer")?;
    let wallet = EscrowClient::new(d.deployer, d.deployment.escrow);
    wallet
        .deposit(d.fund)
        .await
        .context("cannot deposit the dev wallet's USDC into the escrow")?;
    wallet
        .fund(operator, d.fund)
        .await
        .context("cannot fund the channel to the dev provider")?;

    let paid = connect_payments(d.node_config, None)
        .await
        .context("cannot start payments on the dev provider")?;
    Ok(DevPaidSetup { paid, prices })
}

/// Writes the node's config where `provider settle|status` find it.
pub fn write_config(path: &Path, config: &NodeConfig) -> anyhow::Result<()> {
    let text = toml::to_string(config).context("cannot encode the provider config")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}
