//! Payment before work: on a paid node (anvil, contracts, a store server, all on
//! 127.0.0.1:0), a call that is not paid for (no voucher, a malformed one, one that does
//! not cover the price, one from a payer without a channel, a spec sealed to another
//! provider) is refused without fetching the artifact or compiling it; the first paid
//! call does both.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{
    parse_usdc, sign_spec, Address, Chain, Deployment, EscrowClient, PrivateKeySigner, Voucher,
};
use khachapuri_devnet::{dev_network, dev_signer, Anvil, AnvilOptions, DEV_KEYS};
use khachapuri_payments::encode_payment;
use khachapuri_provider::{connect_payments, Node, NodeConfig, PaymentsConfig, PriceList};
use khachapuri_store::Blockstore;
use khachapuri_types::{Envelope, RuntimeKind, Spec};
use tokio::net::TcpListener;

const OPERATOR: usize = 2;

struct Net {
    url: String,
    blocks: Blockstore,
    anvil: Anvil,
    d: Deployment,
    provider: Address,
    _dirs: Vec<tempfile::TempDir>,
}

async fn start() -> Net {
    let anvil = Anvil::spawn_with(AnvilOptions {
        port: 0,
        ..AnvilOptions::default()
    })
    .expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let key_file = dirs[2].path().join("operator.key");
    std::fs::write(&key_file, DEV_KEYS[OPERATOR]).unwrap();
    let blocks = Blockstore::open(dirs[0].path()).unwrap().without_fsync();
    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks.clone(),
        std::future::pending::<()>(),
    ));
    let mut config = NodeConfig {
        data_dir: dirs[1].path().to_path_buf(),
        gateways: vec![store_url],
        default_timeout_ms: 2_000,
        fetch_timeout_ms: 5_000,
        payments: Some(PaymentsConfig {
            rpc_url: anvil.endpoint(),
            chain_id: d.chain_id,
            escrow: d.escrow,
            registry: Some(d.registry),
            pricing: PriceList {
                per_request: "0.001".into(),
                per_ms: "0.000001".into(),
                per_mb_out: "0.001".into(),
            },
            settle_threshold: "1000".into(),
            settle_check_secs: 1,
            event_poll_ms: 100,
            operator_key_file: Some(key_file),
            ..PaymentsConfig::default()
        }),
        ..NodeConfig::default()
    };
    let setup = connect_payments(&mut config, None)
        .await
        .expect("paid setup");
    let node = Node::new(config, Box::new(setup.admission)).unwrap();
    tokio::spawn(setup.settlement.run(std::future::pending::<()>()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        std::future::pending::<()>(),
    ));
    Net {
        url,
        blocks,
        anvil,
        d,
        provider: dev_signer(OPERATOR).address(),
        _dirs: dirs,
    }
}

impl Net {
    fn put(&self, data: &[u8]) -> String {
        let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
        for b in blocks {
            self.blocks.put(&b.cid, &b.data).unwrap();
        }
        imported.cid.to_string()
    }

    /// The echo guest with a 1 s timeout and 100 kB responses (0.0021 USDC a call).
    fn echo_spec(&self) -> Spec {
        let artifact = self.put(&khachapuri_testkit::echo());
        let mut spec = Spec::new(artifact, RuntimeKind::WasiHttp, 1);
        spec.limits.timeout_ms = Some(1_000);
        spec.limits.max_response_bytes = Some(100_000);
        sign_spec(&mut spec, &dev_signer(0)).unwrap();
        spec
    }

    fn voucher(&self, key: &PrivateKeySigner, amount: &str) -> String {
        let v = Voucher {
            payer: key.address(),
            provider: self.provider,
            epoch: 0,
            amount: parse_usdc(amount).unwrap(),
        };
        encode_payment(&v.sign(key, self.d.chain_id, self.d.escrow).unwrap())
    }

    async fn call(&self, cid: &str, payment: Option<&str>) -> u16 {
        let mut req = client().post(format!("{}/{cid}/x", self.url)).body("hi");
        if let Some(p) = payment {
            req = req.header("Khachapuri-Payment", p);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// (artifact fetches, compiles) from `/metrics`.
    async fn work_done(&self) -> (u64, u64) {
        let text = client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
                .parse::<u64>()
                .unwrap()
        };
        (
            value("khachapuri_artifact_fetches_total"),
            value("khachapuri_runtime_compiles_total"),
        )
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_calls_never_fetch_or_compile_the_artifact() {
    let net = start().await;
    let spec = net.echo_spec();
    let echo = net.put(&Envelope::Public { spec: spec.clone() }.to_bytes());
    let payer = dev_signer(1);
    let chain = Chain::connect(&net.anvil.endpoint(), Some(payer.clone()))
        .await
        .unwrap();
    let escrow = EscrowClient::new(&chain, net.d.escrow);
    escrow.deposit(parse_usdc("1").unwrap()).await.unwrap();
    escrow
        .fund(net.provider, parse_usdc("1").unwrap())
        .await
        .unwrap();

    assert_eq!(net.call(&echo, None).await, 402, "no voucher");
    let status = net.call(&echo, Some("not-a-voucher")).await;
    assert!((400..500).contains(&status), "malformed voucher: {status}");
    let status = net
        .call(&echo, Some(&net.voucher(&payer, "0.000001")))
        .await;
    assert_eq!(status, 402, "a voucher below the price");
    let stranger = dev_signer(5);
    let status = net.call(&echo, Some(&net.voucher(&stranger, "1"))).await;
    assert!((400..500).contains(&status), "no channel: {status}");
    // Sealed to some other provider: refused at the envelope.
    let other = khachapuri_seal::public_key(&[7u8; 32]);
    let sealed =
        khachapuri_seal::seal(&spec, &dev_signer(4).address().to_string(), &other).unwrap();
    let sealed = net.put(&sealed.to_bytes());
    let status = net.call(&sealed, Some(&net.voucher(&payer, "0.01"))).await;
    assert_eq!(status, 403, "sealed to another provider");
    assert_eq!(net.work_done().await, (0, 0), "nothing fetched or compiled");

    // Paid: now the artifact is fetched and compiled, once.
    assert_eq!(
        net.call(&echo, Some(&net.voucher(&payer, "0.01"))).await,
        200
    );
    assert_eq!(net.work_done().await, (1, 1));
}
