//! The paid-node harness shared by the provider's paid tests: anvil with the contracts, a
//! store server and a paid provider node on 127.0.0.1:0 (restartable on the same data
//! dir), the echo guest deployed as public specs, called with reqwest carrying real
//! EIP-712 vouchers.

// Each test binary uses a different part of the harness.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{
    parse_usdc, sign_spec, Address, Chain, Deployment, EscrowClient, PrivateKeySigner, Voucher,
};
use khachapuri_devnet::{dev_network, dev_signer, Anvil, AnvilOptions, DEV_KEYS};
use khachapuri_payments::{encode_payment, Receipt};
use khachapuri_provider::{connect_payments, Node, NodeConfig, PaymentsConfig, PriceList};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The operator of the node under test.
pub const OPERATOR: usize = 2;

pub struct Net {
    pub url: String,
    pub blocks: Blockstore,
    pub anvil: Anvil,
    pub d: Deployment,
    pub provider: Address,
    stop: watch::Sender<bool>,
    /// Stops the node (and its settlement) only, for [`Net::restart`].
    node_stop: watch::Sender<bool>,
    store_url: String,
    node_dir: std::path::PathBuf,
    key_file: std::path::PathBuf,
    /// Applied to the node's `[payments]` section at every (re)start.
    payments_edit: fn(&mut PaymentsConfig),
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.node_stop.send(true);
        let _ = self.stop.send(true);
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

pub async fn start() -> Net {
    start_with(|_| {}).await
}

/// [`start`] with the node's `[payments]` section edited by `payments_edit`.
pub async fn start_with(payments_edit: fn(&mut PaymentsConfig)) -> Net {
    let anvil = Anvil::spawn_with(AnvilOptions {
        port: 0,
        ..AnvilOptions::default()
    })
    .expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let store_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("operator.key");
    std::fs::write(&key_file, DEV_KEYS[OPERATOR]).unwrap();
    let blocks = Blockstore::open(store_dir.path()).unwrap();
    let (stop, rx) = watch::channel(false);
    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks.clone(),
        stopped(rx),
    ));
    let (node_stop, _) = watch::channel(true);
    let mut net = Net {
        url: String::new(),
        blocks,
        anvil,
        d,
        provider: dev_signer(OPERATOR).address(),
        stop,
        node_stop,
        store_url,
        node_dir: node_dir.path().to_path_buf(),
        key_file,
        payments_edit,
        _dirs: vec![store_dir, node_dir, key_dir],
    };
    net.spawn_node().await;
    net
}

impl Net {
    /// Starts a paid node on the data dir (its ledger) and serves it on a new port.
    async fn spawn_node(&mut self) {
        let (node_stop, rx) = watch::channel(false);
        let mut config = NodeConfig {
            data_dir: self.node_dir.clone(),
            gateways: vec![self.store_url.clone()],
            max_instances: 8,
            default_timeout_ms: 2_000,
            fetch_timeout_ms: 5_000,
            payments: Some(PaymentsConfig {
                rpc_url: self.anvil.endpoint(),
                chain_id: self.d.chain_id,
                escrow: self.d.escrow,
                registry: Some(self.d.registry),
                pricing: PriceList {
                    per_request: "0.001".into(),
                    per_ms: "0.000001".into(),
                    per_mb_out: "0.001".into(),
                },
                settle_threshold: "1000".into(),
                settle_check_secs: 1,
                event_poll_ms: 100,
                operator_key_file: Some(self.key_file.clone()),
                ..PaymentsConfig::default()
            }),
            ..NodeConfig::default()
        };
        if let Some(p) = config.payments.as_mut() {
            (self.payments_edit)(p);
        }
        let setup = connect_payments(&mut config, None)
            .await
            .expect("paid setup");
        assert_eq!(config.address, Some(self.provider.to_string()));
        assert_eq!(
            setup.pricing_source, "config",
            "not registered: config prices"
        );
        let node = Node::new(config, Box::new(setup.admission)).unwrap();
        tokio::spawn(setup.settlement.run(stopped(rx.clone())));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(khachapuri_provider::serve(
            listener,
            Arc::new(node),
            stopped(rx),
        ));
        self.node_stop = node_stop;
    }

    /// Stops the node and starts a fresh one on the same data dir: nothing it knew in
    /// memory survives, only what its ledger file holds.
    pub async fn restart(&mut self) {
        let _ = self.node_stop.send(true);
        // Let the old server drain and drop its node (the ledger flushes on drop).
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.spawn_node().await;
    }

    pub fn put(&self, data: &[u8]) -> Cid {
        let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
        for b in blocks {
            self.blocks.put(&b.cid, &b.data).unwrap();
        }
        imported.cid
    }

    /// Deploys the echo guest with a 1 s timeout and 100 kB responses: at most
    /// 0.001 + 1000 × 0.000001 + 0.1 × 0.001 = 0.0021 USDC a call.
    pub fn deploy_echo(&self, edit: impl FnOnce(&mut Spec)) -> String {
        self.deploy_wasm(&khachapuri_testkit::echo(), edit)
    }

    /// Deploys `wasm` with the limits of [`Net::deploy_echo`].
    pub fn deploy_wasm(&self, wasm: &[u8], edit: impl FnOnce(&mut Spec)) -> String {
        let artifact = self.put(wasm);
        let mut spec = Spec::new(artifact.to_string(), RuntimeKind::WasiHttp, 1);
        spec.limits.timeout_ms = Some(1_000);
        spec.limits.max_response_bytes = Some(100_000);
        edit(&mut spec);
        // The node requires the owner's signature: sign as the owner the edit named (a dev
        // account), else as dev account 0.
        let signer = (0..DEV_KEYS.len())
            .map(dev_signer)
            .find(|k| {
                spec.owner
                    .as_deref()
                    .is_some_and(|o| o.eq_ignore_ascii_case(&k.address().to_string()))
            })
            .unwrap_or_else(|| dev_signer(0));
        sign_spec(&mut spec, &signer).unwrap();
        self.put(&Envelope::Public { spec }.to_bytes()).to_string()
    }

    /// `payer` deposits and funds a channel to the node's provider.
    pub async fn fund(&self, payer: &PrivateKeySigner, amount: &str) {
        let chain = Chain::connect(&self.anvil.endpoint(), Some(payer.clone()))
            .await
            .unwrap();
        let escrow = EscrowClient::new(&chain, self.d.escrow);
        escrow.deposit(parse_usdc(amount).unwrap()).await.unwrap();
        escrow
            .fund(self.provider, parse_usdc(amount).unwrap())
            .await
            .unwrap();
    }

    pub fn voucher(&self, key: &PrivateKeySigner, amount: &str) -> String {
        self.voucher_with(
            key,
            amount,
            0,
            self.provider,
            self.d.chain_id,
            self.d.escrow,
        )
    }

    pub fn voucher_with(
        &self,
        key: &PrivateKeySigner,
        amount: &str,
        epoch: u64,
        provider: Address,
        chain_id: u64,
        escrow: Address,
    ) -> String {
        let v = Voucher {
            payer: key.address(),
            provider,
            epoch,
            amount: parse_usdc(amount).unwrap(),
        };
        encode_payment(&v.sign(key, chain_id, escrow).unwrap())
    }

    pub async fn call(&self, cid: &str, payment: Option<&str>) -> (u16, Option<Receipt>, Value) {
        let mut req = client().post(format!("{}/{cid}/x", self.url)).body("hi");
        if let Some(p) = payment {
            req = req.header("Khachapuri-Payment", p);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let receipt = r
            .headers()
            .get("khachapuri-receipt")
            .map(|v| Receipt::parse(v.to_str().unwrap()).unwrap());
        let body = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        (status, receipt, body)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs a top-up voucher (`?deployment=CID` when `deployment` names one).
pub async fn top_up(net: &Net, voucher: String, deployment: Option<&str>) -> (u16, Value) {
    let mut url = format!("{}/.well-known/khachapuri/voucher", net.url);
    if let Some(cid) = deployment {
        url = format!("{url}?deployment={cid}");
    }
    let r = client().post(url).body(voucher).send().await.unwrap();
    (r.status().as_u16(), r.json::<Value>().await.unwrap())
}
