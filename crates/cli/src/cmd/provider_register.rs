//! `khachapuri provider register NAME --endpoint URL [--region R]...`: publishes this node in
//! the registry: operator = the wallet's address, the endpoint, and the node's X25519 key
//! (generated and kept in the home on first use) that deployment specs are sealed to.
//!
//! The registry only lets a record name an operator that consents: this command sends from
//! the operator wallet itself (owner = operator), which is that consent, so no signature is
//! needed. An owner that is not the operator would use
//! `RegistryClient::register_with_consent` with the operator's `sign_consent`.

use std::path::{Path, PathBuf};

use clap::Args;
use khachapuri_chain::{Registration, U256};

use super::chainctx;
use crate::home::{Home, ProviderEntry};
use crate::output::{hint, Printer};

/// Arguments of `provider register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Name to claim (a DNS label: a-z, 0-9, '-').
    pub name: String,
    /// Public URL of the node, e.g. https://node.example or http://127.0.0.1:7070.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// Region the node runs in (repeat for several).
    #[arg(long = "region", value_name = "R")]
    pub regions: Vec<String>,
    /// How to reach the operator.
    #[arg(long, default_value = "")]
    pub contact: String,
    /// Subscribe the name to this pricing table id.
    #[arg(long, value_name = "ID")]
    pub table: Option<u64>,
    /// A libp2p address publishers can dial the node at, ending in `/p2p/<peer id>`
    /// (repeatable; `provider attest` prints the peer id). Published as `text(name, "p2p")`.
    #[arg(long = "p2p", value_name = "MULTIADDR")]
    pub p2p: Vec<String>,
}

/// Path of the node's X25519 secret key in the home.
pub fn x25519_key_path(home: &Home) -> PathBuf {
    home.root().join("keys").join("x25519.key")
}

/// Loads the node's X25519 key pair, generating it on first use. Returns (secret, public).
pub fn load_or_create_x25519(path: &Path) -> anyhow::Result<([u8; 32], [u8; 32])> {
    Ok(khachapuri_seal::load_or_create_key_file(path)?)
}

/// Refuses a p2p address publishers could not use.
fn check_p2p(addrs: &[String]) -> anyhow::Result<()> {
    for a in addrs {
        let addr: khachapuri_p2p::Multiaddr = a.parse().map_err(|e| {
            hint(
                format!("--p2p {a:?}: {e}"),
                "write a multiaddr like /ip4/203.0.113.7/tcp/4001/p2p/<peer id>",
            )
        })?;
        if !matches!(
            addr.iter().last(),
            Some(khachapuri_p2p::multiaddr::Protocol::P2p(_))
        ) {
            return Err(hint(
                format!("--p2p {a} does not end in /p2p/<peer id>"),
                "append /p2p/<peer id>; `khachapuri provider attest` prints the node's peer id",
            ));
        }
    }
    Ok(())
}

/// Registers (or updates) the name.
pub async fn run(args: RegisterArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    check_p2p(&args.p2p)?;
    let (mut profile, net) = chainctx::active(home)?;
    let signer = chainctx::load_signer(home, &profile)?;
    let operator = signer.address();
    let chain = net.connect(Some(signer)).await?;
    let registry = net.registry(&chain)?;
    let key_path = x25519_key_path(home);
    let (_, pubkey) = load_or_create_x25519(&key_path)?;

    if let Some(existing) = registry.resolve(&args.name).await? {
        if existing.owner != operator {
            return Err(hint(
                format!(
                    "{:?} is already registered by {}",
                    args.name, existing.owner
                ),
                "pick another name",
            ));
        }
    }
    let reg = Registration {
        name: args.name.clone(),
        operator,
        url: args.endpoint.clone(),
        pubkey,
        regions: args.regions.clone(),
        contact: args.contact.clone(),
    };
    let node = registry.register_or_update(&reg).await.map_err(|e| {
        hint(
            format!("cannot register {:?}: {e}", args.name),
            "names are DNS labels (a-z, 0-9, '-', at most 63 characters)",
        )
    })?;
    if let Some(id) = args.table {
        registry.subscribe(&args.name, U256::from(id)).await?;
    }
    if !args.p2p.is_empty() {
        registry.set_p2p(&args.name, &args.p2p).await?;
    }
    // Remember the provider in the profile so other commands can target it by name.
    profile.providers.retain(|p| p.name != args.name);
    profile.providers.push(ProviderEntry {
        name: args.name.clone(),
        url: args.endpoint.clone(),
        address: Some(operator.to_string()),
    });
    if let Some(active) = home.config()?.active_profile {
        home.save_profile(&active, &profile)?;
    }
    printer.status(format!(
        "registered {} → {} (operator {operator}, X25519 key in {})",
        args.name,
        args.endpoint,
        key_path.display()
    ));
    printer.data(node);
    Ok(())
}
