//! `khachapuri dev`: a whole local network in one process, for trying things out and for
//! developing functions: a content store, a provider named `dev`, and (once the chain
//! layer is wired) a local chain. Writes and activates the `dev` profile so every other
//! command works against it with no flags.

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
    /// Print the endpoints as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the local network until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let base = home.root().join("dev");
    let store_listener = bind(args.store_listen, "store", printer).await?;
    let provider_listener = bind(args.provider_listen, "provider", printer).await?;
    let store_url = format!("http://{}", store_listener.local_addr()?);
    let provider_url = format!("http://{}", provider_listener.local_addr()?);

    let store = khachapuri_store::Blockstore::open(base.join("store"))
        .context("cannot open the dev content store")?;
    let node_config = khachapuri_provider::NodeConfig {
        listen: provider_listener.local_addr()?,
        name: "dev".into(),
        data_dir: base.join("provider"),
        gateways: vec![store_url.clone()],
        free: true,
        ..Default::default()
    };
    if !args.free {
        printer.status("note: paid calls are not wired yet; the dev provider serves calls free of charge");
    }
    let node = khachapuri_provider::Node::new(node_config, Box::new(khachapuri_provider::Free))
        .context("cannot start the dev provider")?;

    let profile = Profile {
        store_url: Some(store_url.clone()),
        gateways: vec![store_url.clone()],
        providers: vec![ProviderEntry {
            name: "dev".into(),
            url: provider_url.clone(),
            address: None,
        }],
        ..home.profile("dev").unwrap_or_default()
    };
    home.save_profile("dev", &profile)?;
    home.save_config(&Config {
        active_profile: Some("dev".into()),
    })?;

    let (trigger, shutdown) = signal::channel();
    let store_task = tokio::spawn(khachapuri_store::serve(
        store_listener,
        store,
        shutdown.clone().wait(),
    ));
    let provider_task = tokio::spawn(khachapuri_provider::serve(
        provider_listener,
        Arc::new(node),
        shutdown.clone().wait(),
    ));

    if args.json {
        printer.json(&json!({"store_url": store_url, "provider_url": provider_url, "home": home.root().display().to_string()}));
    } else {
        printer.data(format!("store     {store_url}"));
        printer.data(format!("provider  {provider_url}  (name: dev)"));
    }
    printer.status("dev network ready; profile `dev` is active. Try: khachapuri deploy examples/hello && khachapuri call <cid>");
    printer.status("press Ctrl-C to stop");

    tokio::select! {
        () = signal::terminated() => printer.status("stopping…"),
        r = wait_server(store_task, "store") => r?,
        r = wait_server(provider_task, "provider") => r?,
    }
    trigger.fire();
    Ok(())
}

async fn wait_server(
    task: tokio::task::JoinHandle<std::io::Result<()>>,
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
