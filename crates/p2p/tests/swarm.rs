//! A five-node in-process swarm on loopback: a bootstrap node, three providers and a
//! publisher. The publisher finds providers through the DHT (never told their
//! addresses) and runs attest → capacity → provision against one, every answer checked.
//! The provider side here is a small [`Responder`] built on the crate's own answer
//! helpers; the provider node's real one (chain checks, compile, warm) is tested in
//! `khachapuri-provider`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_signer_local::PrivateKeySigner;
use khachapuri_attest::{Binding, Policy, TeeKind, TestAuthority};
use khachapuri_p2p::messages::*;
use khachapuri_p2p::publisher::{self, Ask};
use khachapuri_p2p::{
    open_order, refusal, sign_offer, sign_result, Keypair, P2pConfig, P2pError, P2pNode, PeerId,
    Responder,
};

const CHAIN: u64 = 31337;
const ESCROW: [u8; 20] = [7u8; 20];

struct TestProvider {
    peer: PeerId,
    operator: PrivateKeySigner,
    x25519: [u8; 32],
    authority: Arc<TestAuthority>,
}

#[async_trait::async_trait]
impl Responder for TestProvider {
    async fn attest(&self, _from: PeerId, request: AttestRequest) -> AttestResponse {
        let nonce: [u8; 32] = request.nonce.as_slice().try_into().unwrap_or([0; 32]);
        let binding = Binding {
            peer_id: self.peer.to_bytes(),
            operator: self.operator.address().into_array(),
            x25519: self.x25519,
            nonce,
            chain_id: CHAIN,
            escrow: ESCROW,
        };
        AttestResponse {
            evidence: self
                .authority
                .attest(&binding, b"test-measurement")
                .to_bytes(),
            operator: self.operator.address().to_vec(),
            x25519: self.x25519.to_vec(),
            chain_id: CHAIN,
            escrow: ESCROW.to_vec(),
        }
    }

    async fn capacity(&self, _from: PeerId, request: CapacityRequest) -> Signed {
        let offer = CapacityOffer {
            available: request.runtimes.iter().all(|r| r == "wasi-http"),
            refusal: String::new(),
            memory_mib: 256,
            instances: 8,
            runtimes: vec!["wasi-http".into()],
            tee: "test".into(),
            regions: vec!["local".into()],
            prices: Some(Prices {
                per_request: "1000".into(),
                per_ms: "0".into(),
                per_mb: "0".into(),
            }),
            payment_address: self.operator.address().to_vec(),
            chain_id: CHAIN,
            escrow: ESCROW.to_vec(),
            valid_until: now() + 600,
            endpoint: "http://127.0.0.1:1".into(),
            cpus: 2,
        };
        sign_offer(&self.operator, &offer).unwrap()
    }

    async fn provision(&self, _from: PeerId, request: ProvisionRequest) -> Signed {
        let result = match open_order(&request, &self.peer, now(), 3600) {
            Ok(order) => ProvisionResult {
                status: "provisioned".into(),
                spec_cid: order.spec_cid.clone(),
                url: format!("http://127.0.0.1:1/{}/", order.spec_cid),
                payer: order.payer.to_vec(),
                ..ProvisionResult::default()
            },
            Err(e) => refusal("bad_order", e.to_string(), ""),
        };
        sign_result(&self.operator, &result).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn provider(
    bootstrap: &[khachapuri_p2p::Multiaddr],
    authority: &Arc<TestAuthority>,
) -> P2pNode {
    let config = P2pConfig {
        bootstrap: bootstrap.to_vec(),
        announce: true,
        ..P2pConfig::loopback()
    };
    provider_with(config, authority).await
}

async fn provider_with(config: P2pConfig, authority: &Arc<TestAuthority>) -> P2pNode {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let responder = TestProvider {
        peer,
        operator: PrivateKeySigner::random(),
        x25519: [9u8; 32],
        authority: authority.clone(),
    };
    P2pNode::start(key, config, Some(Arc::new(responder)))
        .await
        .unwrap()
}

fn policy(authority: &TestAuthority) -> Policy {
    Policy {
        require_tee: true,
        accepted_kinds: vec![TeeKind::Test],
        accepted_measurements: vec![b"test-measurement".to_vec()],
        allow_test_root: Some(authority.root()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_finds_a_provider_through_the_dht_and_provisions() {
    let authority = Arc::new(TestAuthority::generate().unwrap());
    let boot = P2pNode::start(Keypair::generate_ed25519(), P2pConfig::loopback(), None)
        .await
        .unwrap();
    let boot_addrs = boot.listen_addrs().await.unwrap();
    let tcp_boot: Vec<_> = boot_addrs
        .iter()
        .filter(|a| a.to_string().contains("/tcp/"))
        .cloned()
        .collect();
    let mut providers = Vec::new();
    for _ in 0..3 {
        providers.push(provider(&tcp_boot, &authority).await);
    }
    let provider_ids: Vec<_> = providers.iter().map(|p| p.peer_id()).collect();
    // Let the providers' announcements reach the bootstrap node.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let publisher_config = P2pConfig {
        bootstrap: tcp_boot.clone(),
        dht_server: false,
        ..P2pConfig::loopback()
    };
    let publisher = P2pNode::start(Keypair::generate_ed25519(), publisher_config, None)
        .await
        .unwrap();
    let started = Instant::now();
    let found = publisher.find_providers(1).await.unwrap();
    let find = started.elapsed();
    assert!(find < Duration::from_secs(2), "DHT find took {find:?}");
    assert!(
        provider_ids.contains(&found[0]),
        "{found:?} is not a provider"
    );

    let payer = PrivateKeySigner::random();
    let ask = Ask {
        policy: policy(&authority),
        capacity: CapacityRequest {
            runtimes: vec!["wasi-http".into()],
            ..CapacityRequest::default()
        },
        spec_cid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
        order_ttl: Duration::from_secs(60),
    };
    let done = publisher::provision(&publisher, found[0], &payer, &ask)
        .await
        .unwrap();
    assert_eq!(done.result.spec_cid, ask.spec_cid);
    assert_eq!(done.result.payer, payer.address().to_vec());
    assert_eq!(done.provider.verified.kind, TeeKind::Test);
    eprintln!(
        "DHT find {find:?}; attest {:?}, capacity {:?}, provision {:?} (loopback, debug build)",
        done.timings[0], done.timings[1], done.timings[2]
    );

    // A capacity ask the provider cannot serve comes back as a refusal.
    let nope = Ask {
        capacity: CapacityRequest {
            runtimes: vec!["process".into()],
            ..CapacityRequest::default()
        },
        ..ask.clone()
    };
    let err = publisher::provision(&publisher, found[0], &payer, &nope)
        .await
        .unwrap_err();
    assert!(matches!(err, P2pError::Refused { .. }), "{err}");

    // A policy naming another test root refuses the provider's evidence.
    let stranger = TestAuthority::generate().unwrap();
    let strict = Ask {
        policy: policy(&stranger),
        ..ask.clone()
    };
    let err = publisher::provision(&publisher, found[0], &payer, &strict)
        .await
        .unwrap_err();
    assert!(matches!(err, P2pError::Attest(_)), "{err}");

    publisher.shutdown().await;
    for p in providers {
        p.shutdown().await;
    }
    boot.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_quic_alone() {
    let authority = Arc::new(TestAuthority::generate().unwrap());
    let p = provider(&[], &authority).await;
    let quic: Vec<_> = p
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.to_string().contains("/quic-v1"))
        .collect();
    assert!(!quic.is_empty(), "no QUIC listen address");
    let config = P2pConfig {
        listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        ..P2pConfig::loopback()
    };
    let publisher = P2pNode::start(Keypair::generate_ed25519(), config, None)
        .await
        .unwrap();
    publisher.dial(quic[0].clone()).await.unwrap();
    let nonce = publisher::new_nonce().unwrap();
    let answer = publisher
        .attest(
            p.peer_id(),
            AttestRequest {
                nonce: nonce.to_vec(),
            },
        )
        .await
        .unwrap();
    publisher::check_attestation(
        p.peer_id(),
        nonce,
        &answer,
        &policy(&authority),
        SystemTime::now(),
    )
    .unwrap();
    // The same answer does not bind another nonce or another peer.
    let mut other = nonce;
    other[0] ^= 1;
    assert!(publisher::check_attestation(
        p.peer_id(),
        other,
        &answer,
        &policy(&authority),
        SystemTime::now()
    )
    .is_err());
    let someone = Keypair::generate_ed25519().public().to_peer_id();
    assert!(publisher::check_attestation(
        someone,
        nonce,
        &answer,
        &policy(&authority),
        SystemTime::now()
    )
    .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused() {
    let authority = Arc::new(TestAuthority::generate().unwrap());
    let config = P2pConfig {
        max_connections: 1,
        ..P2pConfig::loopback()
    };
    let p = provider_with(config, &authority).await;
    let addr = p
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.to_string().contains("/tcp/"))
        .unwrap();
    let ask = |node: P2pNode| {
        let (addr, peer) = (addr.clone(), p.peer_id());
        async move {
            node.dial(addr).await.unwrap();
            let nonce = publisher::new_nonce().unwrap().to_vec();
            let r = node.attest(peer, AttestRequest { nonce }).await;
            (node, r)
        }
    };
    let first = P2pNode::start(Keypair::generate_ed25519(), P2pConfig::loopback(), None)
        .await
        .unwrap();
    let (first, r) = ask(first).await;
    r.expect("the first connection is admitted");
    let second = P2pNode::start(Keypair::generate_ed25519(), P2pConfig::loopback(), None)
        .await
        .unwrap();
    let (_second, r) = ask(second).await;
    assert!(
        r.is_err(),
        "a second inbound connection is over max_connections = 1"
    );
    drop(first);
}

/// Round trips of each protocol on loopback, many times over (run by `bench/p2p-rtt.sh`,
/// in release; ignored in the test suite because it measures, it does not check).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: bench/p2p-rtt.sh runs it"]
async fn round_trips() {
    let authority = Arc::new(TestAuthority::generate().unwrap());
    for transport in ["/tcp/", "/quic-v1"] {
        let p = provider(&[], &authority).await;
        let addr = p
            .listen_addrs()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.to_string().contains(transport))
            .unwrap();
        let publisher = P2pNode::start(Keypair::generate_ed25519(), P2pConfig::loopback(), None)
            .await
            .unwrap();
        publisher.dial(addr).await.unwrap();
        let payer = PrivateKeySigner::random();
        let ask = Ask {
            policy: policy(&authority),
            capacity: CapacityRequest::default(),
            spec_cid: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
            order_ttl: Duration::from_secs(60),
        };
        let mut times: [Vec<Duration>; 3] = Default::default();
        for i in 0..300 {
            let done = publisher::provision(&publisher, p.peer_id(), &payer, &ask)
                .await
                .unwrap();
            if i >= 20 {
                for (k, t) in done.timings.iter().enumerate() {
                    times[k].push(*t);
                }
            }
        }
        for (name, mut t) in ["attest", "capacity", "provision"].into_iter().zip(times) {
            t.sort();
            let at = |q: f64| t[((t.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
            eprintln!(
                "{transport:>9} {name:<9} p50 {:.3} ms  p99 {:.3} ms  ({} round trips)",
                at(0.5),
                at(0.99),
                t.len()
            );
        }
    }
}
