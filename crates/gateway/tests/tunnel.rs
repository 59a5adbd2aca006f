//! A real provider node with no listener at all, reachable only through the tunnel it
//! dials to the gateway: calls by path and by Host reach it; a node proving the wrong key
//! for the name is refused (and calls get 502); after a gateway restart the provider
//! reconnects on its own and calls work again within seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_devnet::dev_signer;
use khachapuri_provider::{Free, Node, NodeConfig, TunnelState};
use tokio::sync::watch;

struct Tunneled {
    state: watch::Receiver<Option<TunnelState>>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

/// Starts a free node named `name` that serves only through the tunnel to `gateway`,
/// proving dev account `key`.
fn tunneled(t: &common::Net, name: &str, key: usize, gateway: &str) -> Tunneled {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        name: name.into(),
        data_dir: dir.path().to_path_buf(),
        gateways: vec![t.net.store_url.clone()],
        free: true,
        ..NodeConfig::default()
    };
    let node = Arc::new(Node::new(config, Box::new(Free)).unwrap());
    let (state_tx, state) = watch::channel(None);
    let (stop, mut stop_rx) = watch::channel(false);
    // The provider dials the gateway by the tunnel host it signs for (`localhost`).
    let port = gateway.rsplit(':').next().unwrap();
    let url = format!("http://localhost:{port}");
    let chain_id = t.net.deployment.chain_id;
    tokio::spawn(async move {
        let report = move |s: &TunnelState| {
            let _ = state_tx.send(Some(s.clone()));
        };
        let stopped = async move {
            let _ = stop_rx.wait_for(|v| *v).await;
        };
        let _ = khachapuri_provider::serve_tunnel(
            node,
            &url,
            chain_id,
            dev_signer(key),
            report,
            stopped,
        )
        .await;
    });
    Tunneled {
        state,
        stop,
        _dir: dir,
    }
}

impl Tunneled {
    async fn wait_for(&mut self, what: &str, f: impl Fn(&TunnelState) -> bool) {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(
            Duration::from_secs(20),
            state.wait_for(|s| s.as_ref().is_some_and(&f)),
        )
        .await
        .map(|r| r.is_ok());
        assert!(
            waited.unwrap_or(false),
            "tunnel never {what}: {:?}",
            *self.state.borrow()
        );
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = common::client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_behind_its_tunnel_answers_and_an_impostor_is_refused() {
    let t = common::start(1, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let port = t.gateway.rsplit(':').next().unwrap().to_string();
    t.register(9, "tun", &format!("http://tun.localhost:{port}"))
        .await;
    let mut tun = tunneled(&t, "tun", 9, &t.gateway);
    tun.wait_for("connected", |s| matches!(s, TunnelState::Connected { .. }))
        .await;
    assert_eq!(
        get(&format!("{}/tun/{hello}/", t.gateway)).await,
        (200, "Hello from Khachapuri!\n".into())
    );
    let r = common::client()
        .get(format!("{}/{hello}/", t.gateway))
        .header("host", format!("tun.localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Someone else's key for a registered name, and a name nobody registered.
    t.register(7, "victim", &format!("http://victim.localhost:{port}"))
        .await;
    let mut impostor = tunneled(&t, "victim", 8, &t.gateway);
    impostor
        .wait_for("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    let (status, body) = get(&format!("{}/victim/{hello}/", t.gateway)).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("tunnel"), "{body}");
    let mut unregistered = tunneled(&t, "nobody", 6, &t.gateway);
    unregistered
        .wait_for("refused", |s| matches!(s, TunnelState::Refused { .. }))
        .await;
    let _ = tun.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_gateway_restart_the_provider_reconnects() {
    let t = common::start(1, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    // A gateway of our own on a fixed port, so it can come back on the same one.
    let (url, launched, stop) = t.launch_gateway(|_| {}).await;
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    t.register(9, "tun", &format!("http://tun.localhost:{}", addr.port()))
        .await;
    let mut tun = tunneled(&t, "tun", 9, &url);
    tun.wait_for("connected", |s| matches!(s, TunnelState::Connected { .. }))
        .await;
    assert_eq!(get(&format!("{url}/tun/{hello}/")).await.0, 200);

    let _ = stop.send(true);
    launched.server.await.unwrap().unwrap();
    let stopped = Instant::now();
    let (url2, _launched, _stop) = t.launch_gateway(|c| c.listen = addr).await;
    assert_eq!(url2, url);
    let deadline = stopped + Duration::from_secs(10);
    loop {
        if common::client()
            .get(format!("{url}/tun/{hello}/"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the provider did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let back = stopped.elapsed();
    eprintln!("serving again {back:?} after the gateway restart");
    assert!(back < Duration::from_secs(5), "{back:?}");
    let _ = tun.stop.send(true);
}
