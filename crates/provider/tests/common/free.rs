//! The free-node harness: a store server and a free provider node on 127.0.0.1:0,
//! deployments stored as owner-signed public specs, called with reqwest.

use std::sync::Arc;

use bytes::Bytes;
use khachapuri_chain::{dev_signer, sign_spec, PrivateKeySigner};
use khachapuri_provider::{Free, Node, NodeConfig};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::client;

pub struct Net {
    pub url: String,
    pub blocks: Blockstore,
    stop: watch::Sender<bool>,
    pub _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub async fn start(tweak: impl FnOnce(&mut NodeConfig)) -> Net {
    let store_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let blocks = Blockstore::open(store_dir.path()).unwrap();
    let (stop, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks.clone(),
        stopped(rx.clone()),
    ));

    let mut config = NodeConfig {
        data_dir: node_dir.path().to_path_buf(),
        gateways: vec![store_url],
        free: true,
        max_instances: 8,
        default_timeout_ms: 2_000,
        fetch_timeout_ms: 5_000,
        ..NodeConfig::default()
    };
    tweak(&mut config);
    let node = Node::new(config, Box::new(Free)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        stopped(rx),
    ));
    Net {
        url,
        blocks,
        stop,
        _dirs: vec![store_dir, node_dir],
    }
}

impl Net {
    /// Imports bytes into the store the provider reads from.
    pub fn put(&self, data: &[u8]) -> Cid {
        let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
        for b in blocks {
            self.blocks.put(&b.cid, &b.data).unwrap();
        }
        imported.cid
    }

    /// Deploys `wasm` as a public spec signed by [`owner`].
    pub fn deploy(
        &self,
        wasm: &Bytes,
        runtime: RuntimeKind,
        edit: impl FnOnce(&mut Spec),
    ) -> String {
        let mut spec = self.spec(wasm, runtime);
        edit(&mut spec);
        sign_spec(&mut spec, &owner()).unwrap();
        self.put(&Envelope::Public { spec }.to_bytes()).to_string()
    }

    /// An unsigned spec for `wasm`, its artifact stored.
    pub fn spec(&self, wasm: &Bytes, runtime: RuntimeKind) -> Spec {
        Spec::new(self.put(wasm).to_string(), runtime, 1)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The deployments' owner in these tests.
pub fn owner() -> PrivateKeySigner {
    dev_signer(1)
}
