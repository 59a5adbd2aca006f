//! What the gateway tests share: a devnet (anvil, registry, store, providers and the dev
//! gateway), public deployments put straight into its store, names registered by a
//! stranger's dev account, and a second gateway launched with production rules.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use khachapuri_chain::{sign_spec, Chain, Registration, RegistryClient};
use khachapuri_devnet::{dev_gateway_config, dev_signer, Devnet, DevnetOptions};
use khachapuri_gateway::{launch, Extras, GatewayConfig, Launched};
use khachapuri_types::{Envelope, RuntimeKind, Spec};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Net {
    pub net: Devnet,
    pub gateway: String,
    _dir: tempfile::TempDir,
}

pub async fn start(providers: usize, free: bool) -> Net {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevnetOptions::ephemeral(dir.path());
    options.providers = providers;
    options.free = free;
    let net = Devnet::start(options)
        .await
        .expect("devnet (run scripts/setup and . scripts/env.sh)");
    let gateway = net.gateway_url.clone().expect("the devnet runs a gateway");
    Net {
        net,
        gateway,
        _dir: dir,
    }
}

impl Net {
    /// Puts `wasm` and a signed public spec for it into the store; returns the spec CID.
    pub fn deploy(&self, wasm: &[u8]) -> String {
        let put = |data: &[u8]| {
            let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
            for b in blocks {
                self.net.store.put(&b.cid, &b.data).unwrap();
            }
            imported.cid
        };
        let artifact = put(wasm);
        let mut spec = Spec::new(artifact.to_string(), RuntimeKind::WasiHttp, 1);
        spec.limits.timeout_ms = Some(10_000);
        sign_spec(&mut spec, &dev_signer(0)).unwrap();
        put(&Envelope::Public { spec }.to_bytes()).to_string()
    }

    /// Registers `name` at `url`, operated by dev account `key` (a stranger to the
    /// devnet's providers).
    pub async fn register(&self, key: usize, name: &str, url: &str) {
        let chain = Chain::connect(&self.net.rpc_url, Some(dev_signer(key)))
            .await
            .unwrap();
        RegistryClient::new(&chain, self.net.deployment.registry)
            .register_or_update(&Registration {
                name: name.into(),
                operator: dev_signer(key).address(),
                url: url.into(),
                pubkey: [7; 32],
                regions: vec!["test".into()],
                contact: String::new(),
            })
            .await
            .unwrap();
    }

    /// A second gateway over the same registry, with `edit` applied (e.g. `dev = false`:
    /// production address rules).
    pub async fn launch_gateway(
        &self,
        edit: impl FnOnce(&mut GatewayConfig),
    ) -> (String, Launched, watch::Sender<bool>) {
        let mut config = dev_gateway_config(&self.net.rpc_url, &self.net.deployment);
        config.listen = ([127, 0, 0, 1], 0).into();
        edit(&mut config);
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = watch::channel(false);
        let launched = launch(config, listener, Extras::default(), rx)
            .await
            .unwrap();
        (url, launched, stop)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The resident set of this process, in bytes.
pub fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}
