//! Requests/s and throughput through the tunnel against calling the provider directly,
//! and the time to serve again after a gateway restart, all on loopback in one process.
//!
//! ```text
//! cargo run --release -p khachapuri-tunnel --example tunnel_bench -- [SECONDS] [CONNECTIONS]
//! ```
//!
//! "gateway" is a minimal HTTP/1.1 proxy in front of `TunnelHandle::send_request` (the real
//! gateway's proxy adds header handling on top); "tunnel" calls `send_request` directly.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_signer_local::PrivateKeySigner;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use khachapuri_tunnel::{
    run_tunnel, ClientConfig, ServerConfig, StaticOperators, TunnelServer, TUNNEL_PATH,
};
use tokio::net::{TcpListener, TcpStream};

const BIG: usize = 100 << 20;

fn provider() -> Router {
    let chunk = Bytes::from(vec![0x42u8; 64 << 10]);
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route(
            "/big",
            get(move || async move {
                let c = chunk.clone();
                let s = futures_util::stream::iter(
                    (0..BIG / c.len()).map(move |_| Ok::<_, std::io::Error>(c.clone())),
                );
                axum::body::Body::from_stream(s)
            }),
        )
}

async fn gateway(listener: TcpListener, server: TunnelServer) {
    let app = Router::new()
        .route(
            TUNNEL_PATH,
            get(
                |State(s): State<TunnelServer>,
                 ConnectInfo(p): ConnectInfo<SocketAddr>,
                 req: Request| async move { s.upgrade(req, Some(p)) },
            ),
        )
        .fallback(|State(s): State<TunnelServer>, req: Request| async move {
            let Some(h) = s.sender("bench") else {
                return (http::StatusCode::BAD_GATEWAY, "no tunnel").into_response();
            };
            match h.send_request(req).await {
                Ok(r) => r.map(axum::body::Body::new).into_response(),
                Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        })
        .with_state(server);
    let _ = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await;
}

/// `conns` HTTP/1.1 keep-alive connections sending `GET path` for `secs`; requests/s.
async fn load(addr: SocketAddr, path: &'static str, secs: u64, conns: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (mut tx, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                while Instant::now() < end {
                    let req = http::Request::get(path)
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let resp = tx.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

async fn tunnel_load(server: &TunnelServer, secs: u64, conns: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (done, h) = (done.clone(), server.sender("bench").unwrap());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let req = http::Request::get("/hello")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let resp = h.send_request(req).await.unwrap();
                    resp.into_body().collect().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

async fn big(addr: SocketAddr) -> f64 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let start = Instant::now();
    let req = http::Request::get("/big")
        .header("host", "bench")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = tx.send_request(req).await.unwrap().into_body();
    let mut n = 0;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(n, BIG);
    BIG as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

async fn tunnel_big(server: &TunnelServer) -> f64 {
    let h = server.sender("bench").unwrap();
    let start = Instant::now();
    let req = http::Request::get("/big")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = h.send_request(req).await.unwrap().into_body();
    let mut n = 0;
    while let Some(f) = body.frame().await {
        n += f.unwrap().data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(n, BIG);
    BIG as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

async fn start_gateway(
    addr: SocketAddr,
    ops: Arc<StaticOperators>,
) -> (TunnelServer, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let mut cfg = ServerConfig::new("127.0.0.1", 31337);
    cfg.h2 = h2_from_env();
    let server = TunnelServer::new(cfg, ops).unwrap();
    (server.clone(), tokio::spawn(gateway(listener, server)))
}

/// `KT_STREAM_WINDOW` / `KT_CONN_WINDOW` (bytes) override the HTTP/2 windows, to try them.
fn h2_from_env() -> khachapuri_tunnel::H2Config {
    let mut h2 = khachapuri_tunnel::H2Config::default();
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    if let Some(w) = var("KT_STREAM_WINDOW") {
        h2.stream_window = w;
    }
    if let Some(w) = var("KT_CONN_WINDOW") {
        h2.connection_window = w;
    }
    h2
}

async fn wait_tunnel(server: &TunnelServer) {
    while server.sender("bench").is_none() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let conns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let key = PrivateKeySigner::random();
    let ops = Arc::new(StaticOperators(
        [("bench".to_owned(), key.address())].into_iter().collect(),
    ));

    let direct = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let direct_addr = direct.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(direct, provider()).await });

    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw_addr = probe.local_addr().unwrap();
    drop(probe);
    let (server, gw_task) = start_gateway(gw_addr, ops.clone()).await;
    let mut cfg = ClientConfig::new(format!("http://{gw_addr}"), "bench");
    cfg.h2 = h2_from_env();
    tokio::spawn(run_tunnel(
        cfg,
        Arc::new(key),
        provider(),
        std::future::pending(),
    ));
    wait_tunnel(&server).await;

    let d = load(direct_addr, "/hello", secs, conns).await;
    let g = load(gw_addr, "/hello", secs, conns).await;
    let t = tunnel_load(&server, secs, conns).await;
    println!("requests/s, {conns} connections, {secs} s each:");
    println!("  direct            {d:>9.0}");
    println!("  gateway + tunnel  {g:>9.0}  ({:.2} of direct)", g / d);
    println!("  tunnel only       {t:>9.0}  ({:.2} of direct)", t / d);
    let bd = big(direct_addr).await;
    let bg = big(gw_addr).await;
    let bt = tunnel_big(&server).await;
    println!(
        "one 100 MiB response: direct {bd:.0} MiB/s, gateway + tunnel {bg:.0} MiB/s ({:.2}), \
         tunnel only {bt:.0} MiB/s ({:.2})",
        bg / bd,
        bt / bd
    );

    let mut times = Vec::new();
    let (mut server, mut task) = (server, gw_task);
    for _ in 0..5 {
        task.abort();
        let _ = task.await;
        server.shutdown().await;
        let start = Instant::now();
        (server, task) = start_gateway(gw_addr, ops.clone()).await;
        wait_tunnel(&server).await;
        let req = http::Request::get("/hello")
            .body(Empty::<Bytes>::new())
            .unwrap();
        server
            .sender("bench")
            .unwrap()
            .send_request(req)
            .await
            .unwrap();
        times.push(start.elapsed());
    }
    println!("gateway restart -> serving again: {times:?}");
}
