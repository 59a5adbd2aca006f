//! `khachapuri dev`: a whole local network in one process, for trying things out and for
//! developing functions: a local chain (anvil) with the contracts deployed and MockUSDC
//! minted to the dev wallets, a content store, and a provider named `dev` registered
//! on-chain. Writes and activates the `dev` profile so every other command works against
//! it with no flags.
//!
//! Dev accounts: anvil account 0 deploys the contracts and is the profile's wallet (the
//! caller who pays); account 1 operates the `dev` provider. Without `--free` the dev
//! provider is paid (see `dev_paid.rs`): dev prices in a registry pricing table, a channel
//! pre-funded from the wallet, and its config at `HOME/dev/provider/provider.toml`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use tokio::net::TcpListener;

use crate::home::{Config, Home, Profile, ProviderEntry};
use crate::output::{hint, Printer};
use crate::signal;

/// Arguments of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The dev provider charges nothing (local function development).
    #[arg(long)]
    pub free: bool,
    /// Address of the content store (trustless gateway + Kubo RPC subset).
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub store_listen: SocketAddr,
    /// Address of the dev provider.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub provider_listen: SocketAddr,
    /// Port of the local chain (anvil) on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8545)]
    pub chain_port: u16,
    /// MockUSDC minted to each dev wallet.
    #[arg(long, default_value = "10000")]
    pub mint: String,
    /// USDC the dev wallet pre-funds its channel to the dev provider with (paid mode), so
    /// calls can be paid at once.
    #[arg(long, default_value = "100")]
    pub fund: String,
    /// Print the endpoints as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// New vouchers (signature checks) per second one client may send the dev provider;
    /// 0 (the default) means unlimited: dev runs on your own machine, where a benchmark
    /// or a test signing a voucher per call is the only client. Set it (20 is
    /// `provider run`'s default) to see what strangers meet.
    #[arg(long, default_value_t = 0)]
    pub signature_limit: u32,
}

/// Runs the local network until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let base = home.root().join("dev");
    // Off loopback the dev store asks publishers for KHACHAPURI_STORE_TOKEN (the CLI
    // sends the same variable); refuse early rather than expose uploads.
    let store_publish = khachapuri_store::PublishConfig {
        token: super::store::server_token(None)?,
        max_upload_bytes: None,
    };
    store_publish.check_exposure(args.store_listen).map_err(|e| {
        hint(
            e.to_string(),
            "set KHACHAPURI_STORE_TOKEN for both `khachapuri dev` and the publishing commands, or keep --store-listen on 127.0.0.1",
        )
    })?;
    let store_listener = bind(args.store_listen, "store", printer).await?;
    let provider_listener = bind(args.provider_listen, "provider", printer).await?;
    let store_url = format!("http://{}", store_listener.local_addr()?);
    let provider_url = format!("http://{}", provider_listener.local_addr()?);

    let mint = khachapuri_chain::parse_usdc(&args.mint).map_err(|e| {
        hint(
            format!("--mint {:?}: {e}", args.mint),
            "write an amount like 10000 or 2.5",
        )
    })?;
    printer.status("starting the local chain (anvil) and deploying the contracts…");
    let anvil = spawn_anvil(args.chain_port, printer)?;
    let rpc_url = anvil.endpoint();
    let (deployer, deployment) = khachapuri_chain::dev_network(&anvil, mint)
        .await
        .context("cannot deploy the contracts to the local chain")?;
    let operator = khachapuri_chain::dev_signer(1);
    let operator_address = operator.address();
    let x25519_key_file = base.join("provider").join("x25519.key");
    let (_, x25519_public) = super::provider_register::load_or_create_x25519(&x25519_key_file)?;
    let operator_chain = khachapuri_chain::Chain::connect(&rpc_url, Some(operator))
        .await
        .context("cannot connect to the local chain")?;
    khachapuri_chain::RegistryClient::new(&operator_chain, deployment.registry)
        .register_or_update(&khachapuri_chain::Registration {
            name: "dev".into(),
            operator: operator_address,
            url: provider_url.clone(),
            pubkey: x25519_public,
            regions: vec!["local".into()],
            contact: String::new(),
        })
        .await
        .context("cannot register the dev provider")?;

    let store = khachapuri_store::Blockstore::open(base.join("store"))
        .context("cannot open the dev content store")?;
    let mut node_config = khachapuri_provider::NodeConfig {
        listen: provider_listener.local_addr()?,
        name: "dev".into(),
        address: Some(operator_address.to_string()),
        x25519_key_file: Some(x25519_key_file),
        data_dir: base.join("provider"),
        gateways: vec![store_url.clone()],
        free: args.free,
        runtimes: khachapuri_provider::NodeConfig::local_runtimes(),
        ..Default::default()
    };
    let (trigger, shutdown) = signal::channel();
    let mut settlement_task = None;
    let admission: Box<dyn khachapuri_provider::Admission> = if args.free {
        Box::new(khachapuri_provider::Free)
    } else {
        let fund = khachapuri_chain::parse_usdc(&args.fund).map_err(|e| {
            hint(
                format!("--fund {:?}: {e}", args.fund),
                "write an amount like 100 or 2.5",
            )
        })?;
        let setup = super::dev_paid::setup(super::dev_paid::DevPaid {
            node_config: &mut node_config,
            deployer: &deployer,
            operator_chain: &operator_chain,
            deployment: &deployment,
            rpc_url: &rpc_url,
            fund,
            signature_limit: args.signature_limit,
        })
        .await?;
        printer.status(format!(
            "paid dev provider: prices {} USDC per call + {} per ms + {} per MB out; channel from your wallet funded with {} USDC",
            setup.prices.per_request, setup.prices.per_ms, setup.prices.per_mb_out, args.fund
        ));
        settlement_task = Some(tokio::spawn(
            setup.paid.settlement.run(shutdown.clone().wait()),
        ));
        Box::new(setup.paid.admission)
    };
    let provider_config = base.join("provider").join("provider.toml");
    super::dev_paid::write_config(&provider_config, &node_config)?;
    let node = khachapuri_provider::Node::new(node_config, admission)
        .context("cannot start the dev provider")?;

    let mut profile = Profile {
        store_url: Some(store_url.clone()),
        gateways: vec![store_url.clone()],
        providers: vec![ProviderEntry {
            name: "dev".into(),
            url: provider_url.clone(),
            address: Some(operator_address.to_string()),
        }],
        ..home.profile("dev").unwrap_or_default()
    };
    let chain_keys = [
        ("rpc_url", toml::Value::String(rpc_url.clone())),
        (
            "chain_id",
            toml::Value::Integer(i64::try_from(deployment.chain_id).unwrap_or(i64::MAX)),
        ),
        ("escrow", toml::Value::String(deployment.escrow.to_string())),
        (
            "registry",
            toml::Value::String(deployment.registry.to_string()),
        ),
        ("token", toml::Value::String(deployment.token.to_string())),
        // Anvil's well-known account 0: a dev-only key, public by design.
        (
            "dev_key",
            toml::Value::String(khachapuri_chain::DEV_KEYS[0].to_string()),
        ),
        // The dev provider's config (for `provider settle|status`) and its operator key
        // (anvil's account 1, public by design).
        (
            "provider_config",
            toml::Value::String(provider_config.display().to_string()),
        ),
        (
            "provider_key",
            toml::Value::String(khachapuri_chain::DEV_KEYS[1].to_string()),
        ),
    ];
    for (k, v) in chain_keys {
        profile.extra.insert(k.to_string(), v);
    }
    home.save_profile("dev", &profile)?;
    home.save_config(&Config {
        active_profile: Some("dev".into()),
    })?;

    let store_task = tokio::spawn(khachapuri_store::serve_with(
        store_listener,
        store,
        khachapuri_store::Limits::default(),
        store_publish,
        shutdown.clone().wait(),
    ));
    let provider_task = tokio::spawn(khachapuri_provider::serve(
        provider_listener,
        Arc::new(node),
        shutdown.clone().wait(),
    ));

    if args.json {
        printer.json(&json!({
            "store_url": store_url,
            "provider_url": provider_url,
            "rpc_url": rpc_url,
            "chain_id": deployment.chain_id,
            "escrow": deployment.escrow.to_string(),
            "registry": deployment.registry.to_string(),
            "token": deployment.token.to_string(),
            "home": home.root().display().to_string(),
        }));
    } else {
        printer.data(format!(
            "chain     {rpc_url}  (chain id {})",
            deployment.chain_id
        ));
        printer.data(format!("escrow    {}", deployment.escrow));
        printer.data(format!("registry  {}", deployment.registry));
        printer.data(format!("token     {}  (MockUSDC)", deployment.token));
        printer.data(format!("store     {store_url}"));
        printer.data(format!(
            "provider  {provider_url}  (name: dev, operator {operator_address})"
        ));
    }
    printer.status("dev network ready; profile `dev` is active. Try: khachapuri deploy examples/hello && khachapuri call <cid>");
    printer.status("press Ctrl-C to stop");

    let mut store_task = store_task;
    let mut provider_task = provider_task;
    tokio::select! {
        () = signal::terminated() => printer.status("stopping…"),
        r = wait_server(&mut store_task, "store") => r?,
        r = wait_server(&mut provider_task, "provider") => r?,
    }
    trigger.fire();
    // Let in-flight requests finish, then stop anvil (dropping it kills the child).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let _ = store_task.await;
        let _ = provider_task.await;
        if let Some(t) = settlement_task {
            let _ = t.await;
        }
    })
    .await;
    drop(anvil);
    Ok(())
}

/// Starts anvil on `port`, or on a free port when that one is taken.
fn spawn_anvil(port: u16, printer: &Printer) -> anyhow::Result<khachapuri_chain::Anvil> {
    let options = |port| khachapuri_chain::AnvilOptions {
        port,
        ..Default::default()
    };
    if port != 0 && std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        printer.status(format!(
            "port {port} is in use; the chain listens on a free port instead"
        ));
        return spawn_anvil(0, printer);
    }
    khachapuri_chain::Anvil::spawn_with(options(port)).map_err(|e| {
        hint(
            format!("cannot start anvil: {e}"),
            "install the tools with scripts/setup (anvil comes from npm @foundry-rs/anvil), or put anvil on PATH",
        )
    })
}

async fn wait_server(
    task: &mut tokio::task::JoinHandle<std::io::Result<()>>,
    what: &str,
) -> anyhow::Result<()> {
    task.await
        .with_context(|| format!("the {what} server panicked"))?
        .with_context(|| format!("the {what} server stopped"))?;
    anyhow::bail!("the {what} server stopped unexpectedly")
}

/// Binds `addr`; if a default port is taken, falls back to an ephemeral one.
async fn bind(addr: SocketAddr, what: &str, printer: &Printer) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 => {
            let l = TcpListener::bind(SocketAddr::new(addr.ip(), 0))
                .await
                .with_context(|| format!("cannot bind the {what}"))?;
            printer.status(format!(
                "port {} is in use; the {what} listens on {} instead",
                addr.port(),
                l.local_addr()?
            ));
            Ok(l)
        }
        Err(e) => Err(hint(
            format!("cannot listen on {addr} for the {what}: {e}"),
            format!("pass another address with --{what}-listen"),
        )),
    }
}
