//! `tunnel`: the Rust half of `bench/gateway.sh`. On a running `khachapuri dev` (its
//! chain, registry, store and gateway) it adds what a shell cannot: a provider node
//! reachable only through its tunnel (`tun`), a plain server answering one 100 MB body
//! registered directly (`big`) and the same server behind a tunnel (`bigtun`). It first
//! measures, on a gateway of its own, how long a tunneled provider takes to serve again
//! after the gateway restarts. Prints one JSON line, then serves until killed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use khachapuri_chain::{Address, Chain, Registration, RegistryClient};
use khachapuri_devnet::dev_signer;
use khachapuri_provider::{Free, Node, NodeConfig, TunnelState};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Arguments of `tunnel`.
#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// The dev network's gateway, e.g. http://127.0.0.1:8088.
    #[arg(long)]
    gateway: String,
    /// Chain JSON-RPC endpoint.
    #[arg(long)]
    rpc_url: String,
    /// Registry contract.
    #[arg(long)]
    registry: Address,
    /// The content store the tunneled node reads from.
    #[arg(long)]
    store_url: String,
    /// Size of the big answer, in MB.
    #[arg(long, default_value_t = 100)]
    big_mb: usize,
    /// Gateway restarts to time.
    #[arg(long, default_value_t = 5)]
    restarts: usize,
}

async fn register(args: &TunnelArgs, key: usize, name: &str, url: &str) -> anyhow::Result<()> {
    let chain = Chain::connect(&args.rpc_url, Some(dev_signer(key))).await?;
    RegistryClient::new(&chain, args.registry)
        .register_or_update(&Registration {
            name: name.into(),
            operator: dev_signer(key).address(),
            url: url.into(),
            pubkey: [1; 32],
            regions: vec!["bench".into()],
            contact: String::new(),
        })
        .await
        .with_context(|| format!("cannot register {name}"))?;
    Ok(())
}

/// Serves `router` through the tunnel to `gateway` as `name`, proving dev account `key`;
/// resolves once connected.
async fn tunnel(
    router: axum::Router,
    gateway: &str,
    name: &str,
    key: usize,
    chain_id: u64,
) -> anyhow::Result<watch::Sender<bool>> {
    let port = gateway.rsplit(':').next().unwrap_or("80");
    let mut config = khachapuri_tunnel::ClientConfig::new(format!("http://localhost:{port}"), name);
    config.chain_id = Some(chain_id);
    let client = khachapuri_tunnel::TunnelClient::new(config, Arc::new(dev_signer(key)), router)?;
    let mut state = client.state();
    let (stop, mut rx) = watch::channel(false);
    tokio::spawn(client.run(async move {
        let _ = rx.wait_for(|v| *v).await;
    }));
    tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| matches!(s, TunnelState::Connected { .. })),
    )
    .await
    .context("the tunnel did not connect")??;
    Ok(stop)
}

/// A node named `name` that reads from `store_url`, as a router for a tunnel.
fn node_router(name: &str, store_url: &str, dir: &std::path::Path) -> anyhow::Result<axum::Router> {
    let config = NodeConfig {
        name: name.into(),
        data_dir: dir.to_path_buf(),
        gateways: vec![store_url.to_string()],
        free: true,
        ..NodeConfig::default()
    };
    let node = Arc::new(Node::new(config, Box::new(Free))?);
    Ok(khachapuri_provider::tunnel_router(node))
}

/// `GET /…` answers `mb` MB, streamed in 1 MiB frames of one shared buffer.
fn big_router(mb: usize) -> axum::Router {
    let chunk = Bytes::from(vec![b'k'; 1 << 20]);
    axum::Router::new().fallback(move || {
        let chunk = chunk.clone();
        async move {
            let frames =
                futures::stream::iter((0..mb).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            axum::body::Body::from_stream(frames)
        }
    })
}

/// Median seconds from a gateway stop to the first 200 through a tunnel after restart.
async fn restart_time(args: &TunnelArgs, chain_id: u64, block: u64) -> anyhow::Result<Value> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let config = |listen| khachapuri_gateway::GatewayConfig {
        listen,
        domain: "localhost".into(),
        dev: true,
        rpc_url: args.rpc_url.clone(),
        registry: args.registry,
        registry_from_block: block,
        ..Default::default()
    };
    register(
        args,
        6,
        "rst",
        &format!("http://rst.localhost:{}", addr.port()),
    )
    .await?;
    let (mut stop, rx) = watch::channel(false);
    let mut launched =
        khachapuri_gateway::launch(config(addr), listener, Default::default(), rx).await?;
    let _tunnel = tunnel(big_router(1), &url, "rst", 6, chain_id).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut times = Vec::new();
    for _ in 0..args.restarts {
        let _ = stop.send(true);
        let _ = launched.server.await;
        let stopped = Instant::now();
        let listener = TcpListener::bind(addr).await?;
        let (s, rx) = watch::channel(false);
        stop = s;
        launched =
            khachapuri_gateway::launch(config(addr), listener, Default::default(), rx).await?;
        loop {
            let ok = client
                .get(format!("{url}/rst/x"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            anyhow::ensure!(
                stopped.elapsed() < Duration::from_secs(30),
                "no reconnect in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(stopped.elapsed().as_secs_f64());
    }
    let _ = stop.send(true);
    times.sort_by(f64::total_cmp);
    Ok(json!({"median_s": times[times.len() / 2], "all_s": times}))
}

/// Sets everything up, prints the JSON line, serves until killed.
pub async fn run(args: TunnelArgs) -> anyhow::Result<Value> {
    let chain = Chain::connect(&args.rpc_url, None).await?;
    let chain_id = chain.chain_id();
    let block = chain.block_number().await?;
    let restart = restart_time(&args, chain_id, block).await?;

    let port = args.gateway.rsplit(':').next().unwrap_or("80").to_string();
    let dir = tempfile::tempdir()?;
    register(&args, 9, "tun", &format!("http://tun.localhost:{port}")).await?;
    let _tun = tunnel(
        node_router("tun", &args.store_url, dir.path())?,
        &args.gateway,
        "tun",
        9,
        chain_id,
    )
    .await?;

    let big = TcpListener::bind("127.0.0.1:0").await?;
    let big_url = format!("http://{}", big.local_addr()?);
    let big_app = big_router(args.big_mb);
    tokio::spawn(async move {
        let _ = axum::serve(big, big_app).await;
    });
    register(&args, 8, "big", &big_url).await?;
    register(
        &args,
        7,
        "bigtun",
        &format!("http://bigtun.localhost:{port}"),
    )
    .await?;
    let _bigtun = tunnel(
        big_router(args.big_mb),
        &args.gateway,
        "bigtun",
        7,
        chain_id,
    )
    .await?;

    let ready = json!({"big_url": big_url, "restart": restart});
    #[allow(clippy::print_stdout)]
    {
        println!("{ready}");
    }
    // Serve until the script kills us.
    std::future::pending::<()>().await;
    Ok(ready)
}
