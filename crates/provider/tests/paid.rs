//! The paid path over real HTTP: anvil with the contracts, a store server and a paid
//! provider node on 127.0.0.1:0, the echo guest deployed as public specs, called with
//! reqwest carrying real EIP-712 vouchers (harness in `common/`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{client, start, OPERATOR};
use khachapuri_chain::{parse_usdc, Address, Chain, EscrowClient, PrivateKeySigner, Voucher, U256};
use khachapuri_devnet::{dev_network, dev_signer, Anvil, AnvilOptions, DEV_KEYS};
use khachapuri_payments::encode_payment;
use khachapuri_provider::{connect_payments, NodeConfig, PaymentsConfig};
use khachapuri_types::PayerPolicy;
use serde_json::Value;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpaid_and_bad_vouchers_are_refused_and_one_voucher_prepays_calls() {
    let net = start().await;
    let echo = net.deploy_echo(|_| {});
    let payer = dev_signer(1);
    net.fund(&payer, "1").await;

    let wk: Value = client()
        .get(format!("{}/.well-known/khachapuri", net.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wk["free"], false);
    assert_eq!(wk["chain_id"], net.d.chain_id);
    assert_eq!(
        wk["escrow"].as_str().unwrap().to_lowercase(),
        net.d.escrow.to_string().to_lowercase()
    );
    assert_eq!(wk["pricing"]["usdc"]["per_request"], "0.001");
    assert_eq!(wk["pricing"]["per_request"], "1000000000");

    // No payment: 402 with where and how much to pay.
    let (status, receipt, body) = net.call(&echo, None).await;
    assert_eq!(status, 402, "{body}");
    assert!(receipt.is_none());
    assert_eq!(body["price"], "2100000000", "{body}");
    assert_eq!(body["price_usdc"], "0.0021");
    assert_eq!(body["chain_id"], net.d.chain_id);
    assert_eq!(
        body["provider"].as_str().unwrap().to_lowercase(),
        net.provider.to_string().to_lowercase()
    );
    assert_eq!(
        body["escrow"].as_str().unwrap().to_lowercase(),
        net.d.escrow.to_string().to_lowercase()
    );
    assert_eq!(body["kind"], "payment_required");
    assert!(body["hint"].as_str().unwrap().contains("voucher"));

    // Too small a voucher: 402 that also says where the channel stands.
    let tiny = net.voucher(&payer, "0.001");
    let (status, _, body) = net.call(&echo, Some(&tiny)).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["kind"], "insufficient_credit");
    assert_eq!(body["epoch"], 0);
    assert_eq!(body["consumed"], "0");
    assert_eq!(
        body["authorized"], "1000000000",
        "0.001 USDC in micro units"
    );

    // Vouchers that can never pay here.
    let stranger = PrivateKeySigner::random();
    let forged = {
        let v = Voucher {
            payer: payer.address(),
            provider: net.provider,
            epoch: 0,
            amount: parse_usdc("0.5").unwrap(),
        };
        encode_payment(&v.sign(&stranger, net.d.chain_id, net.d.escrow).unwrap())
    };
    let cases = [
        ("forged", forged, 401, "bad_signature"),
        (
            "other chain",
            net.voucher_with(&payer, "0.5", 0, net.provider, 1, net.d.escrow),
            401,
            "bad_signature",
        ),
        (
            "other escrow",
            net.voucher_with(
                &payer,
                "0.5",
                0,
                net.provider,
                net.d.chain_id,
                Address::repeat_byte(9),
            ),
            401,
            "bad_signature",
        ),
        (
            "other provider",
            net.voucher_with(
                &payer,
                "0.5",
                0,
                dev_signer(5).address(),
                net.d.chain_id,
                net.d.escrow,
            ),
            403,
            "wrong_provider",
        ),
        (
            "wrong epoch",
            net.voucher_with(&payer, "0.5", 3, net.provider, net.d.chain_id, net.d.escrow),
            403,
            "wrong_epoch",
        ),
        ("above funds", net.voucher(&payer, "2"), 402, "above_funds"),
        (
            "garbage",
            "not-base64!".to_string(),
            400,
            "malformed_payment",
        ),
    ];
    for (what, header, code, kind) in cases {
        let (status, receipt, body) = net.call(&echo, Some(&header)).await;
        assert_eq!(status, code, "{what}: {body}");
        assert_eq!(body["kind"], kind, "{what}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty(), "{what}");
        assert!(!body["hint"].as_str().unwrap().is_empty(), "{what}");
        assert!(receipt.is_none(), "{what}");
    }

    // One voucher of 0.01 USDC prepays several calls; receipts show consumption grow.
    let prepaid = net.voucher(&payer, "0.01");
    let mut last = U256::ZERO;
    let mut paid_calls = 0;
    loop {
        let (status, receipt, body) = net.call(&echo, Some(&prepaid)).await;
        if status == 402 {
            assert_eq!(body["kind"], "insufficient_credit", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["body"], "hi");
        let seen = body["headers"].to_string().to_ascii_lowercase();
        assert!(
            !seen.contains("khachapuri-payment"),
            "the guest must not see the voucher: {seen}"
        );
        let r = receipt.expect("a paid answer carries a receipt");
        assert_eq!(r.authorized, U256::from(10_000_000_000u64), "0.01 USDC");
        assert!(
            r.cost >= U256::from(1_000_000_000u64),
            "at least per_request"
        );
        assert_eq!(r.consumed, last + r.cost, "consumed grows by the cost");
        last = r.consumed;
        paid_calls += 1;
        assert!(paid_calls < 20, "0.01 USDC cannot pay 20 calls");
    }
    assert!(paid_calls >= 3, "one voucher paid {paid_calls} calls");
    // A bigger voucher resumes at once, keeping what was consumed.
    let (status, receipt, _) = net.call(&echo, Some(&net.voucher(&payer, "0.02"))).await;
    assert_eq!(status, 200);
    let r = receipt.unwrap();
    assert_eq!(r.consumed, last + r.cost);
    assert_eq!(r.authorized, U256::from(20_000_000_000u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sponsored_calls_need_nothing_from_callers_and_take_top_ups() {
    let net = start().await;
    let sponsor = dev_signer(3);
    net.fund(&sponsor, "1").await;
    let budget = net.voucher(&sponsor, "0.005");
    let echo = net.deploy_echo(|s| {
        s.payer = PayerPolicy::Sponsored;
        s.sponsor_voucher = Some(budget.clone());
        s.owner = Some(sponsor.address().to_string());
    });
    // 0.005 USDC with 0.0021 reserved per call and ~0.001 charged: a few calls, then 402.
    let mut served = 0;
    let body = loop {
        let (status, receipt, body) = net.call(&echo, None).await;
        if status != 200 {
            assert_eq!(status, 402, "{body}");
            break body;
        }
        assert_eq!(receipt.unwrap().authorized, U256::from(5_000_000_000u64));
        served += 1;
        assert!(served < 10);
    };
    assert!(served >= 2, "served {served}");
    assert_eq!(body["sponsored"], true, "{body}");
    assert!(body["note"].as_str().unwrap().contains("top it up"));

    // Top-up naming the deployment: the base64url form, then the JSON form.
    let top = |b: String| common::top_up(&net, b, Some(&echo));
    let (status, v) = top(net.voucher(&sponsor, "0.02")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["authorized"], "20000000000");
    assert_eq!(v["epoch"], 0);
    let consumed: u64 = v["consumed"].as_str().unwrap().parse().unwrap();
    assert!(consumed >= served * 1_000_000_000);
    let (status, receipt, body) = net.call(&echo, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(receipt.unwrap().authorized, U256::from(20_000_000_000u64));

    use base64::Engine as _;
    let json = String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(net.voucher(&sponsor, "0.03"))
            .unwrap(),
    )
    .unwrap();
    let (status, v) = top(json).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["authorized"], "30000000000");
    // A forged top-up is refused and changes nothing.
    let forged = {
        let v = Voucher {
            payer: sponsor.address(),
            provider: net.provider,
            epoch: 0,
            amount: parse_usdc("0.5").unwrap(),
        };
        let stranger = PrivateKeySigner::random();
        encode_payment(&v.sign(&stranger, net.d.chain_id, net.d.escrow).unwrap())
    };
    let (status, v) = top(forged).await;
    assert_eq!(status, 401, "{v}");
    let (status, receipt, _) = net.call(&echo, None).await;
    assert_eq!(status, 200);
    assert_eq!(receipt.unwrap().authorized, U256::from(30_000_000_000u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_redeems_when_the_payer_asks_to_unlock() {
    let net = start().await;
    let echo = net.deploy_echo(|_| {});
    let payer = dev_signer(4);
    net.fund(&payer, "1").await;
    let v = net.voucher(&payer, "0.01");
    let (status, receipt, body) = net.call(&echo, Some(&v)).await;
    assert_eq!(status, 200, "{body}");
    // Exact billing: settlement claims what the call cost (rounded up to a base unit).
    let owed = khachapuri_payments::micro_to_base_ceil(receipt.expect("receipt").consumed);
    assert!(!owed.is_zero() && owed < parse_usdc("0.01").unwrap());

    let payer_chain = Chain::connect(&net.anvil.endpoint(), Some(payer.clone()))
        .await
        .unwrap();
    let escrow = EscrowClient::new(&payer_chain, net.d.escrow);
    let before = escrow.channel(payer.address(), net.provider).await.unwrap();
    assert!(before.redeemed.is_zero());
    escrow.request_unlock(net.provider).await.unwrap();
    // Threshold (1000 USDC) and timer (1 h) are far away: only the unlock event settles.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ch = escrow.channel(payer.address(), net.provider).await.unwrap();
        if !ch.redeemed.is_zero() {
            assert_eq!(
                ch.redeemed, owed,
                "what the call cost, not the voucher's amount"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after an unlock request"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_call_gives_its_reservation_back() {
    let net = start().await;
    let echo = net.deploy_echo(|_| {});
    let faults = net.deploy_wasm(&khachapuri_testkit::faults(), |_| {});
    let payer = dev_signer(6);
    net.fund(&payer, "1").await;
    // 0.003 USDC covers one call's maximum cost (0.0021) but not two at once.
    let v = net.voucher(&payer, "0.003");
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = quick
        .get(format!("{}/{faults}/loop", net.url))
        .header("Khachapuri-Payment", &v)
        .send()
        .await;
    assert!(
        r.is_err(),
        "the client gives up before the guest's 1 s deadline"
    );
    // The dropped call releases its 0.0021 hold; a leak would leave 0.0009 available.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, receipt, body) = net.call(&echo, Some(&v)).await;
    assert_eq!(status, 200, "{body}");
    let r = receipt.unwrap();
    assert_eq!(r.consumed, r.cost, "the abandoned call was not charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_pricing_table_wins_over_the_config() {
    let anvil = Anvil::spawn_with(AnvilOptions::default()).expect("anvil");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("10").unwrap())
        .await
        .unwrap();
    let operator = dev_signer(OPERATOR);
    let chain = Chain::connect(&anvil.endpoint(), Some(operator.clone()))
        .await
        .unwrap();
    let registry = khachapuri_chain::RegistryClient::new(&chain, d.registry);
    registry
        .register(&khachapuri_chain::Registration {
            name: "priced".into(),
            operator: operator.address(),
            url: "http://127.0.0.1:1".into(),
            pubkey: [7; 32],
            regions: vec![],
            contact: String::new(),
        })
        .await
        .unwrap();
    let table = registry
        .create_table(U256::from(5u64), U256::from(6u64), U256::from(7u64))
        .await
        .unwrap();
    registry.subscribe("priced", table).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, DEV_KEYS[OPERATOR]).unwrap();
    let mut config = NodeConfig {
        name: "priced".into(),
        data_dir: dir.path().join("data"),
        payments: Some(PaymentsConfig {
            rpc_url: anvil.endpoint(),
            chain_id: d.chain_id,
            escrow: d.escrow,
            registry: Some(d.registry),
            operator_key_file: Some(key_file.clone()),
            ..PaymentsConfig::default()
        }),
        ..NodeConfig::default()
    };
    let setup = connect_payments(&mut config, None).await.unwrap();
    assert_eq!(setup.pricing_source, format!("registry table {table}"));
    use khachapuri_provider::Admission as _;
    let terms = setup.admission.describe().unwrap();
    assert_eq!(terms["pricing"]["per_request"], "5");
    assert_eq!(terms["pricing"]["per_ms"], "6");
    assert_eq!(terms["pricing"]["per_mb_out"], "7");
    assert!(dir.path().join("data/ledger.sqlite").is_file());

    // A config whose address is not the operator key's, or another chain id, is refused.
    let mut wrong = NodeConfig {
        address: Some(dev_signer(7).address().to_string()),
        ..config.clone()
    };
    assert!(connect_payments(&mut wrong, None).await.is_err());
    let mut other_chain = config.clone();
    other_chain.payments.as_mut().unwrap().chain_id = 1;
    let err = connect_payments(&mut other_chain, None).await.unwrap_err();
    assert!(err.to_string().contains("chain"), "{err}");

    // A node calling itself "priced" with another operator key: that name's table is not
    // its to charge; the config's prices apply.
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, DEV_KEYS[3]).unwrap();
    let mut impostor = NodeConfig {
        address: None,
        data_dir: dir.path().join("other-data"),
        ..config.clone()
    };
    impostor.payments.as_mut().unwrap().operator_key_file = Some(other_key);
    let setup = connect_payments(&mut impostor, None).await.unwrap();
    assert_eq!(setup.pricing_source, "config");
}
