//! A real axum "gateway" serving the tunnel endpoint and a small axum "provider" behind
//! `TunnelClient`, shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use axum::extract::{ConnectInfo, Request, State};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use khachapuri_tunnel::{
    ClientConfig, ServerConfig, StaticOperators, TunnelClient, TunnelHandle, TunnelServer,
    TunnelState, ViaTunnel, TUNNEL_PATH,
};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

pub const CHAIN: u64 = 31337;

pub struct Gateway {
    pub server: TunnelServer,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Gateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Stops listening and closes every tunnel, as a gateway restart does.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        self.server.shutdown().await;
    }
}

pub fn operators(pairs: &[(&str, Address)]) -> Arc<StaticOperators> {
    Arc::new(StaticOperators(
        pairs
            .iter()
            .map(|(n, a)| ((*n).to_owned(), *a))
            .collect::<HashMap<_, _>>(),
    ))
}

pub fn test_server_config(addr: SocketAddr) -> ServerConfig {
    let mut c = ServerConfig::new(addr.ip().to_string(), CHAIN);
    c.drain_timeout = Duration::from_secs(5);
    c
}

pub async fn start_gateway(
    listen: SocketAddr,
    config: impl FnOnce(&mut ServerConfig),
    ops: Arc<StaticOperators>,
) -> Gateway {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = test_server_config(addr);
    config(&mut cfg);
    let server = TunnelServer::new(cfg, ops).unwrap();
    let app = Router::new()
        .route(
            TUNNEL_PATH,
            get(
                |State(s): State<TunnelServer>,
                 ConnectInfo(peer): ConnectInfo<SocketAddr>,
                 req: Request| async move { s.upgrade(req, Some(peer)) },
            ),
        )
        .with_state(server.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Gateway { server, addr, task }
}

/// The provider's routes: `/hello` (says whether it came through the tunnel), `/count`
/// (streams the body in, answers its length), `/sse` (one event, then waits for `gate`),
/// `/slow` (answers after `gate`).
pub fn provider_router(tag: &'static str, gate: Arc<Notify>) -> Router {
    let g1 = gate.clone();
    Router::new()
        .route(
            "/hello",
            axum::routing::get(move |req: Request| async move {
                match req.extensions().get::<ViaTunnel>() {
                    Some(v) => format!("{tag} via {}", v.gateway),
                    None => format!("{tag} direct"),
                }
            }),
        )
        .route(
            "/count",
            any(|req: Request| async move {
                let mut body = req.into_body();
                let mut n = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(e) => return format!("error after {n}: {e}"),
                    }
                }
                n.to_string()
            }),
        )
        .route(
            "/sse",
            axum::routing::get(move || async move {
                let stream = futures_util::stream::unfold(0u8, move |i| {
                    let gate = g1.clone();
                    async move {
                        match i {
                            0 => Some((
                                Ok::<_, std::io::Error>(Bytes::from_static(b"data: one\n\n")),
                                1,
                            )),
                            1 => {
                                gate.notified().await;
                                Some((Ok(Bytes::from_static(b"data: two\n\n")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                (
                    [("content-type", "text/event-stream")],
                    axum::body::Body::from_stream(stream),
                )
            }),
        )
        .route(
            "/slow",
            axum::routing::get(move || async move {
                gate.notified().await;
                "slow done"
            }),
        )
}

pub struct Provider {
    pub state: watch::Receiver<TunnelState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Provider {
    /// Starts graceful shutdown and waits (bounded) for `run` to return.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("provider stops")
            .unwrap();
    }
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
    pub async fn wait_state(
        &mut self,
        what: &str,
        f: impl Fn(&TunnelState) -> bool,
    ) -> TunnelState {
        let mut rx = self.state.clone();
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            rx.wait_for(|s| f(s)).await.map(|s| s.clone())
        })
        .await;
        match got {
            Ok(r) => r.unwrap(),
            Err(_) => panic!(
                "provider never reached {what}; last state {:?}",
                *self.state.borrow()
            ),
        }
    }
}

pub fn test_client_config(url: &str, name: &str) -> ClientConfig {
    let mut c = ClientConfig::new(url, name);
    c.chain_id = Some(CHAIN);
    c.backoff_initial = Duration::from_millis(100);
    c.backoff_max = Duration::from_secs(1);
    c.refused_backoff = Duration::from_secs(60);
    c.drain_timeout = Duration::from_secs(5);
    c
}

pub fn start_provider(config: ClientConfig, signer: PrivateKeySigner, router: Router) -> Provider {
    let client = TunnelClient::new(config, Arc::new(signer), router).unwrap();
    let state = client.state();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        client
            .run(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Provider {
        state,
        stop: Some(tx),
        task,
    }
}

/// Waits until the gateway has a live tunnel for `name`.
pub async fn wait_tunnel(server: &TunnelServer, name: &str, within: Duration) -> TunnelHandle {
    let start = Instant::now();
    loop {
        if let Some(h) = server.sender(name) {
            return h;
        }
        assert!(
            start.elapsed() < within,
            "no tunnel for {name} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits (bounded) until the tunnel has a request in flight.
pub async fn wait_in_flight(h: &TunnelHandle) {
    let start = Instant::now();
    while h.in_flight() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no request in flight after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn get_req(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "dev.localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

pub async fn text(resp: http::Response<khachapuri_tunnel::TunnelBody>) -> String {
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
