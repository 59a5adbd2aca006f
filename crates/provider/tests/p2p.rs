//! Seed 003 end to end: a devnet of three paid providers running libp2p, a fourth node
//! that only routes the DHT, and a publisher that knows nothing but that fourth node's
//! address. The publisher finds a provider through the DHT, attests it (the devnet's
//! test hierarchy), takes its signed offer, orders the deployment (the provider checks
//! the payer's channel on anvil, fetches and compiles it), then pays an HTTP call of it.
//! Five libp2p nodes in all, in this one process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use khachapuri_attest::{Policy, TeeKind};
use khachapuri_chain::sign_spec;
use khachapuri_devnet::{dev_signer, Devnet, DevnetOptions};
use khachapuri_p2p::messages::CapacityRequest;
use khachapuri_p2p::publisher::{self, Ask};
use khachapuri_p2p::{Keypair, P2pConfig, P2pError, P2pNode};
use khachapuri_types::{Envelope, RuntimeKind, Spec};

fn publish(net: &Devnet, wasm: &[u8]) -> String {
    let put = |data: &[u8]| {
        let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
        for b in blocks {
            net.store.put(&b.cid, &b.data).unwrap();
        }
        imported.cid
    };
    let artifact = put(wasm);
    let mut spec = Spec::new(artifact.to_string(), RuntimeKind::WasiHttp, 1);
    sign_spec(&mut spec, &dev_signer(0)).unwrap();
    put(&Envelope::Public { spec }.to_bytes()).to_string()
}

fn tcp_only(addrs: Vec<khachapuri_p2p::Multiaddr>) -> Vec<khachapuri_p2p::Multiaddr> {
    addrs
        .into_iter()
        .filter(|a| a.to_string().contains("/tcp/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_finds_attests_provisions_and_pays_over_p2p() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = DevnetOptions::ephemeral(dir.path());
    options.providers = 3;
    options.p2p = true;
    options.gateway_listen = None;
    options.edit_node = Some(|c| {
        if let Some(p2p) = c.p2p.as_mut() {
            p2p.provisions_per_payer_per_min = 2;
        }
    });
    let net = Devnet::start(options).await.unwrap();

    let router = P2pNode::start(
        Keypair::generate_ed25519(),
        P2pConfig {
            bootstrap: tcp_only(net.p2p_bootstrap.clone()),
            ..P2pConfig::loopback()
        },
        None,
    )
    .await
    .unwrap();
    let router_addrs = tcp_only(router.listen_addrs().await.unwrap());
    // Let the router's bootstrap query finish before the publisher leans on it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = P2pNode::start(
        Keypair::generate_ed25519(),
        P2pConfig {
            bootstrap: router_addrs,
            dht_server: false,
            ..P2pConfig::loopback()
        },
        None,
    )
    .await
    .unwrap();

    let started = Instant::now();
    let found = publisher.find_providers(1).await.unwrap();
    let find = started.elapsed();
    assert!(find < Duration::from_secs(2), "DHT find took {find:?}");
    let provider_peers: Vec<_> = net
        .providers
        .iter()
        .map(|p| p.p2p.as_ref().unwrap().peer_id())
        .collect();
    let peer = found[0];
    let index = provider_peers
        .iter()
        .position(|p| *p == peer)
        .expect("a devnet provider");
    let provider = &net.providers[index];

    let cid = publish(&net, &khachapuri_testkit::hello());
    let authority = net.attest_authority.clone().unwrap();
    let ask = Ask {
        policy: Policy {
            require_tee: true,
            accepted_kinds: vec![TeeKind::Test],
            accepted_measurements: vec![b"khachapuri-dev".to_vec()],
            allow_test_root: Some(authority.root()),
        },
        capacity: CapacityRequest {
            runtimes: vec!["wasi-http".into()],
            memory_mib: 128,
            cpus: 1,
            region: "local".into(),
            ..CapacityRequest::default()
        },
        spec_cid: cid.clone(),
        order_ttl: Duration::from_secs(300),
    };
    let wallet = dev_signer(0);
    let done = publisher::provision(&publisher, peer, &wallet, &ask)
        .await
        .unwrap();
    eprintln!(
        "DHT find {find:?}; attest {:?}, capacity {:?}, provision {:?} (loopback, debug build, provision includes fetch + compile)",
        done.timings[0], done.timings[1], done.timings[2]
    );
    assert_eq!(done.provider.operator, provider.operator);
    assert_eq!(done.result.url, format!("{}/{cid}/", provider.url));
    assert!(done.offer.cpus >= 1 && done.offer.runtimes.contains(&"wasi-http".to_string()));
    // Compiled ahead of the first call.
    assert!(provider.node.cache_usage().prepared.entries >= 1);

    // A paid call of the provisioned deployment, with a voucher to the attested operator.
    let d = &net.deployment;
    let voucher = khachapuri_chain::Voucher {
        payer: wallet.address(),
        provider: done.provider.operator,
        epoch: 0,
        amount: khachapuri_chain::parse_usdc("0.05").unwrap(),
    }
    .sign(&wallet, d.chain_id, d.escrow)
    .unwrap();
    let response = reqwest::Client::new()
        .get(&done.result.url)
        .header(
            khachapuri_payments::PAYMENT_HEADER,
            khachapuri_payments::encode_payment(&voucher),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("khachapuri-receipt"));
    assert_eq!(response.text().await.unwrap(), "Hello from Khachapuri!\n");

    // A payer without a channel to this provider gets a signed refusal, and no compile.
    let stranger = dev_signer(9);
    let other = publish(&net, &khachapuri_testkit::echo());
    let before = provider.node.cache_usage().prepared.entries;
    let err = publisher::provision(
        &publisher,
        peer,
        &stranger,
        &Ask {
            spec_cid: other,
            ..ask.clone()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, P2pError::Refused { ref code, .. } if code == "channel_empty"),
        "{err}"
    );
    assert_eq!(provider.node.cache_usage().prepared.entries, before);

    // Asking for more cores than the node has is refused in the (signed) offer.
    let greedy = Ask {
        capacity: CapacityRequest {
            cpus: 100_000,
            ..ask.capacity.clone()
        },
        ..ask.clone()
    };
    let err = publisher::provision(&publisher, peer, &wallet, &greedy)
        .await
        .unwrap_err();
    assert!(
        matches!(err, P2pError::Refused { ref message, .. } if message.contains("CPU")),
        "{err}"
    );

    // One payer's orders are limited (provisions_per_payer_per_min = 2 here): the second
    // passes, the third is refused before the chain is read or anything compiled.
    publisher::provision(&publisher, peer, &wallet, &ask)
        .await
        .unwrap();
    let err = publisher::provision(&publisher, peer, &wallet, &ask)
        .await
        .unwrap_err();
    assert!(
        matches!(err, P2pError::Refused { ref code, .. } if code == "rate_limited"),
        "{err}"
    );
}

/// `provider run`'s path: a node whose config has `[p2p]` and `[payments]` starts libp2p
/// with the operator key of `[payments]`, and answers that it has no TEE. A free node
/// (no escrow to read) still signs its offers with that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_node_answers_with_its_operator_key_and_no_tee() {
    use khachapuri_provider::{
        start_configured_p2p, Free, Node, NodeConfig, P2pSection, PaymentsConfig,
    };

    let dir = tempfile::tempdir().unwrap();
    let operator = dev_signer(3);
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, khachapuri_devnet::DEV_KEYS[3]).unwrap();
    let x25519_key_file = dir.path().join("x25519.key");
    khachapuri_seal::load_or_create_key_file(&x25519_key_file).unwrap();
    let config = NodeConfig {
        data_dir: dir.path().join("data"),
        x25519_key_file: Some(x25519_key_file),
        free: true,
        payments: Some(PaymentsConfig {
            operator_key_file: Some(key_file),
            ..PaymentsConfig::default()
        }),
        p2p: Some(P2pSection {
            listen: vec!["/ip4/127.0.0.1/tcp/0".into()],
            ..P2pSection::default()
        }),
        ..NodeConfig::default()
    };
    let node = std::sync::Arc::new(Node::new(config, Box::new(Free)).unwrap());
    let p2p = start_configured_p2p(node, None, None)
        .await
        .unwrap()
        .expect("[p2p] is set");
    let addr = p2p.listen_addrs().await.unwrap()[0].clone();

    let publisher = P2pNode::start(Keypair::generate_ed25519(), P2pConfig::loopback(), None)
        .await
        .unwrap();
    publisher.dial(addr).await.unwrap();
    let lax = Policy {
        require_tee: false,
        ..Policy::default()
    };
    let (attested, _) = publisher::attest(&publisher, p2p.peer_id(), &lax)
        .await
        .unwrap();
    assert_eq!(attested.operator, operator.address());
    assert_eq!(attested.verified.kind, TeeKind::None);
    let offer = publisher
        .capacity(p2p.peer_id(), CapacityRequest::default())
        .await
        .unwrap();
    let offer = publisher::open_offer(&offer, &attested, std::time::SystemTime::now()).unwrap();
    assert_eq!(offer.tee, "none");
    // A publisher that requires a TEE refuses it.
    let strict = Policy::default();
    assert!(publisher::attest(&publisher, p2p.peer_id(), &strict)
        .await
        .is_err());
}
