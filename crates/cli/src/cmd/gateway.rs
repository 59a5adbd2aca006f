//! `khachapuri gateway run`: the public entry point. `{name}.{domain}/{cid}` and
//! `/{name}/{cid}` go to the provider the registry names; `/{cid}` of a public deployment
//! goes to a provider picked by load, latency, price and reputation. The config resolves
//! defaults → `--config` file → environment → flags; the chain and registry default to the
//! active profile's.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use khachapuri_gateway::{launch, Extras, GatewayConfig};

use crate::home::Home;
use crate::output::{hint, Printer};
use crate::signal;

/// Arguments of `gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: GatewayCommand,
}

/// `gateway` subcommands.
#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Serve the gateway until Ctrl-C.
    Run(RunArgs),
}

/// Arguments of `gateway run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML file with any `GatewayConfig` keys (limits, timeouts, routing filters).
    #[arg(long, env = "KHACHAPURI_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// `{name}.{domain}` in the Host header routes to `name`.
    #[arg(long, env = "KHACHAPURI_GATEWAY_DOMAIN")]
    pub domain: Option<String>,
    /// Where to listen (default 127.0.0.1:8088).
    #[arg(long, env = "KHACHAPURI_GATEWAY_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Allow providers on loopback (a local network on one machine). Never in production.
    #[arg(long)]
    pub dev: bool,
    /// PEM certificate chain (a wildcard for `*.{domain}`); serves HTTPS (HTTP/2 and 1.1).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Chain JSON-RPC endpoint (default: the active profile's).
    #[arg(long, env = "KHACHAPURI_RPC_URL")]
    pub rpc_url: Option<String>,
    /// Registry contract (default: the active profile's).
    #[arg(long)]
    pub registry: Option<String>,
}

/// Runs `gateway`.
pub async fn run(args: GatewayArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    match args.command {
        GatewayCommand::Run(run) => serve(run, home, printer).await,
    }
}

async fn serve(args: RunArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let config = resolve(&args, home)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            hint(
                format!("cannot listen on {}: {e}", config.listen),
                "pass another address with --listen",
            )
        })?;
    let local = listener.local_addr()?;
    let (trigger, shutdown) = signal::channel();
    let scheme = if config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let domain = config.domain.clone();
    let launched = launch(config, listener, Extras::default(), shutdown.receiver())
        .await
        .map_err(|e| hint(e.to_string(), e.hint()))?;
    printer.data(format!("gateway   {scheme}://{local}"));
    printer.status(format!(
        "routing {scheme}://{{name}}.{domain}/{{cid}}/, /{{name}}/{{cid}}/ and public /{{cid}}/; Ctrl-C stops"
    ));
    let mut server = launched.server;
    tokio::select! {
        () = signal::terminated() => printer.status("stopping…"),
        r = &mut server => {
            r.context("the gateway panicked")?.context("the gateway stopped")?;
            anyhow::bail!("the gateway stopped unexpectedly");
        }
    }
    trigger.fire();
    let _ = server.await;
    Ok(())
}

/// defaults → file → env/flags (clap reads the env), with the profile's chain as the
/// fallback for the chain settings.
fn resolve(args: &RunArgs, home: &Home) -> anyhow::Result<GatewayConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).map_err(|e| {
                hint(
                    format!("{}: {e}", path.display()),
                    "see the GatewayConfig keys in crates/gateway/src/config.rs",
                )
            })?
        }
        None => GatewayConfig::default(),
    };
    if let Some(d) = &args.domain {
        config.domain = d.to_ascii_lowercase();
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    config.dev |= args.dev;
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert.clone();
        config.tls_key = args.tls_key.clone();
    }
    let profile_net = home
        .active_profile()
        .ok()
        .and_then(|p| super::chainctx::Network::from_profile(&p).ok());
    match (&args.rpc_url, &profile_net) {
        (Some(url), _) => config.rpc_url = url.clone(),
        (None, Some(net)) => config.rpc_url = net.rpc_url.clone(),
        (None, None) => {}
    }
    let registry = match (&args.registry, profile_net.and_then(|n| n.registry)) {
        (Some(r), _) => r
            .parse()
            .map_err(|_| hint(format!("--registry {r:?} is not an address"), "give 0x…"))?,
        (None, Some(r)) => r,
        (None, None) if !config.registry.is_zero() => config.registry,
        (None, None) => return Err(hint(
            "no registry to resolve names with",
            "pass --rpc-url and --registry, or run it with a profile (`khachapuri dev` writes one)",
        )),
    };
    config.registry = registry;
    Ok(config)
}
