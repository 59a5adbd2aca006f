//! `khachapuri provider run`: a provider node from the home's `provider.toml`.
//!
//! Configuration resolves once: defaults → `HOME/provider.toml` → `KHACHAPURI_PROVIDER_*`
//! env → flags, then is validated before any port is bound. With a `[payments]` section
//! (and without `--free`) calls are paid by vouchers and a settlement task redeems them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use khachapuri_provider::NodeConfig;

use crate::home::Home;
use crate::output::{hint, Printer};
use crate::signal;

/// Arguments of `provider run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Config file (default: HOME/provider.toml when it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address (overrides the file and KHACHAPURI_PROVIDER_LISTEN).
    #[arg(long, env = "KHACHAPURI_PROVIDER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Trustless gateway to read content from (repeatable; overrides the file).
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// Serve calls free of charge (otherwise calls are paid when the config has [payments]).
    #[arg(long)]
    pub free: bool,
    /// Also serve through the gateway at GATEWAY_URL, over a tunnel the node dials (for a
    /// provider with no public address; register `http(s)://NAME.DOMAIN` as its endpoint).
    /// Needs `[payments]`: the tunnel proves the operator key.
    #[arg(long, value_name = "GATEWAY_URL", env = "KHACHAPURI_PROVIDER_TUNNEL")]
    pub tunnel: Option<String>,
    /// Maximum concurrent instances.
    #[arg(long, env = "KHACHAPURI_PROVIDER_MAX_INSTANCES")]
    pub max_instances: Option<usize>,
}

/// The operator keystore's password when `[payments]` names a keystore (from
/// `KHACHAPURI_PASSWORD`, else the terminal): the CLI reads it, never the library crates.
pub fn operator_password(
    payments: Option<&khachapuri_provider::PaymentsConfig>,
) -> anyhow::Result<Option<String>> {
    let Some(p) = payments.filter(|p| p.needs_password()) else {
        return Ok(None);
    };
    let path = p.operator_keystore.as_deref().unwrap_or(Path::new("?"));
    let prompt = format!("password for the operator keystore {}: ", path.display());
    super::chainctx::password(&prompt, false).map(Some)
}

/// Resolves the configuration, starts the node and serves until Ctrl-C/SIGTERM.
pub async fn run(args: RunArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let mut config = resolve(&args, home)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            hint(
                format!("cannot listen on {}: {e}", config.listen),
                "pick another address with --listen",
            )
        })?;
    let addr = listener.local_addr()?;
    let paid = config.payments.is_some() && !config.free;
    let (trigger, shutdown) = signal::channel();
    let password = operator_password(config.payments.as_ref())?;
    let tunnel = match &args.tunnel {
        Some(url) => Some(tunnel_key(&config, url, password.as_deref())?),
        None => None,
    };
    let mut escrow = None;
    let (admission, settlement): (Box<dyn khachapuri_provider::Admission>, _) = if paid {
        let setup = khachapuri_provider::connect_payments(&mut config, password.clone())
            .await
            .map_err(|e| hint(e.to_string(), "fix [payments] in the provider config"))?;
        printer.status(format!(
            "paid calls on: operator {}, prices from {}",
            config.address.as_deref().unwrap_or("?"),
            setup.pricing_source
        ));
        escrow = Some(setup.escrow.clone());
        let settlement = tokio::spawn(setup.settlement.run(shutdown.clone().wait()));
        (Box::new(setup.admission), Some(settlement))
    } else {
        if config.payments.is_none() {
            printer.status("no [payments] in the config: serving calls free of charge");
        }
        (Box::new(khachapuri_provider::Free), None)
    };
    let node = Arc::new(
        khachapuri_provider::Node::new(config, admission).context("cannot start the provider")?,
    );
    if let Some((url, chain_id, signer)) = tunnel {
        let (node, stop, printer) = (node.clone(), shutdown.clone().wait(), printer.clone());
        printer.status(format!("serving through the gateway at {url} as well"));
        tokio::spawn(async move {
            let report = move |s: &khachapuri_provider::TunnelState| {
                printer.status(format!("tunnel: {s:?}"))
            };
            if let Err(e) =
                khachapuri_provider::serve_tunnel(node, &url, chain_id, signer, report, stop).await
            {
                tracing::error!("{e}");
            }
        });
    }
    let _p2p = start_p2p(node.clone(), escrow, password.as_deref(), printer).await?;
    printer.data(format!("http://{addr}"));
    printer.status(format!(
        "provider listening on http://{addr}; Ctrl-C stops it"
    ));
    let stopping = async move {
        signal::terminated().await;
        trigger.fire();
    };
    khachapuri_provider::serve(listener, node, stopping)
        .await
        .context("the provider server failed")?;
    if let Some(task) = settlement {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    }
    printer.status("provider stopped");
    Ok(())
}

/// The node's libp2p side when the config has `[p2p]`; kept alive by the caller.
async fn start_p2p(
    node: Arc<khachapuri_provider::Node>,
    escrow: Option<khachapuri_chain::EscrowClient>,
    password: Option<&str>,
    printer: &Printer,
) -> anyhow::Result<Option<khachapuri_p2p::P2pNode>> {
    let p2p = khachapuri_provider::start_configured_p2p(node, escrow, password)
        .await
        .map_err(|e| {
            hint(
                e.to_string(),
                "fix [p2p] (or [payments]) in the provider config",
            )
        })?;
    if let Some(p2p) = &p2p {
        for addr in p2p.listen_addrs().await? {
            printer.status(format!("p2p listening on {addr}"));
        }
    }
    Ok(p2p)
}

/// What `--tunnel` needs: the chain id and the operator key of `[payments]`.
fn tunnel_key(
    config: &NodeConfig,
    url: &str,
    password: Option<&str>,
) -> anyhow::Result<(String, u64, khachapuri_chain::PrivateKeySigner)> {
    let payments = config.payments.as_ref().ok_or_else(|| {
        hint(
            "--tunnel needs the operator key, and the config has no [payments]",
            "add [payments] with operator_key_file (or operator_keystore) and chain_id",
        )
    })?;
    let signer = payments.load_operator(password).map_err(|e| {
        hint(
            e.to_string(),
            "fix operator_key_file / operator_keystore in [payments]",
        )
    })?;
    Ok((url.to_string(), payments.chain_id, signer))
}

/// The provider config file: `--config FILE`, else the active profile's
/// `provider_config` (written by `khachapuri dev`), else `HOME/provider.toml` when it exists.
pub fn config_file(flag: Option<&Path>, home: &Home) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    let from_profile = home.active_profile().ok().and_then(|p| {
        p.extra
            .get("provider_config")
            .and_then(|v| v.as_str())
            .map(PathBuf::from)
    });
    if let Some(f) = from_profile.filter(|f| f.is_file()) {
        return Some(f);
    }
    let default_file = home.root().join("provider.toml");
    default_file.is_file().then_some(default_file)
}

/// Reads and parses a provider config file, making `data_dir` absolute (relative to the home).
pub fn load_file(path: &Path, home: &Home) -> anyhow::Result<NodeConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: NodeConfig = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid provider config", path.display()))?;
    if config.data_dir.is_relative() {
        config.data_dir = home.root().join(&config.data_dir);
    }
    Ok(config)
}

/// Defaults → file → env/flags.
fn resolve(args: &RunArgs, home: &Home) -> anyhow::Result<NodeConfig> {
    let file = config_file(args.config.as_deref(), home);
    let mut config = match &file {
        Some(path) => load_file(path, home)?,
        None => NodeConfig {
            data_dir: home.root().join("provider"),
            gateways: home.active_profile()?.gateways,
            ..NodeConfig::default()
        },
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if !args.gateways.is_empty() {
        config.gateways = args.gateways.clone();
    }
    if args.free {
        config.free = true;
    }
    if let Some(n) = args.max_instances {
        config.max_instances = n;
    }
    if config.data_dir.is_relative() {
        config.data_dir = home.root().join(&config.data_dir);
    }
    // Sealed deployments need the operator address and the key `provider register` wrote.
    if config.x25519_key_file.is_none() {
        let default_key = super::provider_register::x25519_key_path(home);
        config.x25519_key_file = default_key.is_file().then_some(default_key);
    }
    if let Some(key) = &config.x25519_key_file {
        if key.is_relative() {
            config.x25519_key_file = Some(home.root().join(key));
        }
    }
    if config.address.is_none() {
        if let Ok(profile) = home.active_profile() {
            config.address = super::chainctx::wallet_address(home, &profile)
                .ok()
                .map(|a| format!("{a:#x}"));
        }
    }
    config
        .validate()
        .map_err(|e| hint(e.to_string(), "fix the provider config and try again"))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            config: None,
            listen: None,
            gateways: Vec::new(),
            free: false,
            tunnel: None,
            max_instances: None,
        }
    }

    #[test]
    fn sealed_specs_use_the_registered_key_and_the_wallet_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::resolve(Some(dir.path())).expect("home");
        // No key, no wallet: nothing to open sealed specs with, and that is not an error.
        let c = resolve(&args(), &home).expect("resolve");
        assert_eq!((c.x25519_key_file, c.address), (None, None));

        let key = super::super::provider_register::x25519_key_path(&home);
        khachapuri_seal::load_or_create_key_file(&key).expect("key");
        let mut profile = crate::home::Profile::default();
        profile.extra.insert(
            "dev_key".into(),
            toml::Value::String(khachapuri_devnet::DEV_KEYS[1].to_string()),
        );
        home.save_profile("p", &profile).expect("profile");
        let mut config = home.config().expect("config");
        config.active_profile = Some("p".into());
        home.save_config(&config).expect("config");
        let c = resolve(&args(), &home).expect("resolve");
        assert_eq!(c.x25519_key_file, Some(key));
        assert_eq!(
            c.address,
            Some(format!("{:#x}", khachapuri_devnet::dev_signer(1).address()))
        );
    }
}
