//! `khachapuri dev`: a whole local network in one process, for trying things out and for
//! developing functions: a local chain (anvil) with the contracts deployed and MockUSDC
//! minted to the dev wallets, a content store, and providers registered on-chain. Writes
//! and activates the `dev` profile so every other command works against it with no flags.
//!
//! The network itself is `khachapuri_devnet::Devnet`; this command parses flags, starts
//! it, writes the profile and prints the endpoints. Dev accounts: anvil account 0 deploys
//! the contracts and is the profile's wallet (the caller who pays); accounts 1..=N operate
//! the providers `dev`, `dev2`, …. Without `--free` the providers are paid: dev prices in
//! a registry pricing table, a channel pre-funded from the wallet for each, and the `dev`
//! provider's config at `HOME/dev/provider/provider.toml`.

use std::net::SocketAddr;

use clap::Args;
use khachapuri_devnet::{Devnet, DevnetError, DevnetOptions};
use serde_json::json;

use crate::home::{Config, Home, Profile, ProviderEntry};
use crate::output::{hint, Printer};
use crate::signal;

/// Arguments of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The dev providers charge nothing (local function development).
    #[arg(long)]
    pub free: bool,
    /// How many providers to register and run: `dev`, then `dev2` … `devN` (at most 8).
    #[arg(long, default_value_t = 1)]
    pub providers: usize,
    /// Address of the content store (trustless gateway + Kubo RPC subset).
    #[arg(long, default_value = "127.0.0.1:5001")]
    pub store_listen: SocketAddr,
    /// Address of the dev provider; `devK` listens on its port + K - 1.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub provider_listen: SocketAddr,
    /// Address of the gateway (domain `localhost`: `http://dev.localhost:PORT/{cid}/`).
    #[arg(long, default_value = "127.0.0.1:8088")]
    pub gateway_listen: SocketAddr,
    /// Port of the local chain (anvil) on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8545)]
    pub chain_port: u16,
    /// MockUSDC minted to each dev wallet.
    #[arg(long, default_value = "10000")]
    pub mint: String,
    /// USDC the dev wallet pre-funds its channel to each provider with (paid mode), so
    /// calls can be paid at once.
    #[arg(long, default_value = "100")]
    pub fund: String,
    /// Print the endpoints as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// New vouchers (signature checks) per second one client may send a dev provider;
    /// 0 (the default) means unlimited: dev runs on your own machine, where a benchmark
    /// or a test signing a voucher per call is the only client. Set it (20 is
    /// `provider run`'s default) to see what strangers meet.
    #[arg(long, default_value_t = 0)]
    pub signature_limit: u32,
    /// `process` sandboxes each provider starts ahead of their request per called native
    /// program (each still serves one request); 0 starts each on arrival.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub warm_sandboxes: usize,
    /// The providers also run libp2p (TCP and QUIC on loopback, ephemeral ports) and
    /// attest with a dev-only test hierarchy: `deploy --p2p` finds them through the DHT.
    #[arg(long)]
    pub p2p: bool,
}

/// Runs the local network until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let options = options(&args, home)?;
    printer.status("starting the local chain (anvil), the contracts, the store and the providers…");
    let mut net = Devnet::start(options).await.map_err(explain)?;
    for notice in &net.notices {
        printer.status(notice);
    }
    if let Some(prices) = &net.prices {
        printer.status(format!(
            "paid dev providers: {} USDC per call + {} per ms + {} per MB out; a channel from your wallet to each funded with {} USDC",
            prices.per_request, prices.per_ms, prices.per_mb_out, args.fund
        ));
    }
    save_profile(&net, home)?;
    print_endpoints(&net, &args, home, printer);
    printer.status("dev network ready; profile `dev` is active. Try: khachapuri deploy examples/hello && khachapuri call <cid>");
    printer.status("press Ctrl-C to stop");
    tokio::select! {
        () = signal::terminated() => printer.status("stopping…"),
        e = net.failed() => return Err(anyhow::Error::new(e).context("the dev network failed")),
    }
    net.stop().await;
    Ok(())
}

/// The devnet to start, from the flags.
fn options(args: &DevArgs, home: &Home) -> anyhow::Result<DevnetOptions> {
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
    let usdc = |flag: &str, value: &str| {
        khachapuri_chain::parse_usdc(value).map_err(|e| {
            hint(
                format!("--{flag} {value:?}: {e}"),
                "write an amount like 100 or 2.5",
            )
        })
    };
    Ok(DevnetOptions {
        dir: home.root().join("dev"),
        providers: args.providers,
        free: args.free,
        mint: usdc("mint", &args.mint)?,
        fund: usdc("fund", &args.fund)?,
        chain_port: args.chain_port,
        store_listen: args.store_listen,
        provider_listen: args.provider_listen,
        gateway_listen: Some(args.gateway_listen),
        fallback_ports: true,
        store_publish,
        signature_limit: args.signature_limit,
        warm_sandboxes: args.warm_sandboxes,
        edit_node: None,
        p2p: args.p2p,
    })
}

/// Adds what to do next to a devnet failure.
fn explain(e: DevnetError) -> anyhow::Error {
    let next = match &e {
        DevnetError::Anvil(_) => "install the tools with scripts/setup (anvil comes from npm @foundry-rs/anvil), or put anvil on PATH",
        DevnetError::Bind { .. } => {
            "pass another address with --store-listen / --provider-listen / --gateway-listen"
        }
        DevnetError::Options(_) => "run `khachapuri dev --help` for the flags",
        _ => "run with RUST_LOG=debug for details; `khachapuri dev` starts a fresh chain each time",
    };
    hint(e.to_string(), next)
}

/// Writes and activates the `dev` profile, so every other command works with no flags.
fn save_profile(net: &Devnet, home: &Home) -> anyhow::Result<()> {
    let dev = net.dev();
    let mut profile = Profile {
        store_url: Some(net.store_url.clone()),
        gateways: vec![net.store_url.clone()],
        providers: net
            .providers
            .iter()
            .map(|p| ProviderEntry {
                name: p.name.clone(),
                url: p.url.clone(),
                address: Some(p.operator.to_string()),
            })
            .collect(),
        ..home.profile("dev").unwrap_or_default()
    };
    let d = &net.deployment;
    let text = |s: String| toml::Value::String(s);
    let chain_keys = [
        ("rpc_url", text(net.rpc_url.clone())),
        (
            "chain_id",
            toml::Value::Integer(i64::try_from(d.chain_id).unwrap_or(i64::MAX)),
        ),
        ("escrow", text(d.escrow.to_string())),
        ("registry", text(d.registry.to_string())),
        ("token", text(d.token.to_string())),
        // Anvil's well-known account 0: a dev-only key, public by design.
        ("dev_key", text(net.wallet_key().to_string())),
        // The dev provider's config (for `provider settle|status`) and its operator key
        // (a public anvil account).
        (
            "provider_config",
            text(dev.config_file.display().to_string()),
        ),
        (
            "provider_key",
            text(khachapuri_devnet::DEV_KEYS[dev.key_index].to_string()),
        ),
    ];
    for (k, v) in chain_keys {
        profile.extra.insert(k.to_string(), v);
    }
    // `deploy --p2p` joins through dev's addresses and accepts the dev test root.
    if net.p2p_bootstrap.is_empty() {
        profile.extra.remove("p2p_bootstrap");
        profile.extra.remove("attest_root");
    } else {
        let addrs = net
            .p2p_bootstrap
            .iter()
            .map(|a| text(a.to_string()))
            .collect();
        profile
            .extra
            .insert("p2p_bootstrap".into(), toml::Value::Array(addrs));
    }
    if let Some(a) = &net.attest_authority {
        let root = khachapuri_chain::alloy_hex::encode_prefixed(a.root().0);
        profile.extra.insert("attest_root".into(), text(root));
    }
    match &net.gateway_url {
        Some(url) => profile
            .extra
            .insert("gateway_url".into(), text(url.clone())),
        None => profile.extra.remove("gateway_url"),
    };
    home.save_profile("dev", &profile)?;
    home.save_config(&Config {
        active_profile: Some("dev".into()),
    })
}

/// Prints the endpoints: one JSON object with `--json`, aligned lines otherwise (the
/// `provider` line of `dev` comes last: scripts wait for it).
fn print_endpoints(net: &Devnet, args: &DevArgs, home: &Home, printer: &Printer) {
    let d = &net.deployment;
    let dev = net.dev();
    if args.json {
        let providers: Vec<_> = net
            .providers
            .iter()
            .map(|p| json!({"name": p.name, "url": p.url, "operator": p.operator.to_string()}))
            .collect();
        printer.json(&json!({
            "store_url": net.store_url,
            "gateway_url": net.gateway_url,
            "provider_url": dev.url,
            "providers": providers,
            "rpc_url": net.rpc_url,
            "chain_id": d.chain_id,
            "escrow": d.escrow.to_string(),
            "registry": d.registry.to_string(),
            "token": d.token.to_string(),
            "home": home.root().display().to_string(),
        }));
        return;
    }
    printer.data(format!(
        "chain     {}  (chain id {})",
        net.rpc_url, d.chain_id
    ));
    printer.data(format!("escrow    {}", d.escrow));
    printer.data(format!("registry  {}", d.registry));
    printer.data(format!("token     {}  (MockUSDC)", d.token));
    printer.data(format!("store     {}", net.store_url));
    if let Some(url) = &net.gateway_url {
        let port = url.rsplit(':').next().unwrap_or("");
        printer.data(format!(
            "gateway   {url}  (http://dev.localhost:{port}/{{cid}}/ routes to dev)"
        ));
    }
    for p in net.providers.iter().skip(1) {
        printer.data(format!(
            "{:<9} {}  (operator {})",
            p.name, p.url, p.operator
        ));
    }
    printer.data(format!(
        "provider  {}  (name: dev, operator {})",
        dev.url, dev.operator
    ));
}
