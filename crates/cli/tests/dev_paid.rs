//! The paid dev network with the real binary: `khachapuri dev` (paid by default) serves a
//! deployment only against a voucher, and `provider status` / `provider settle` show and
//! redeem what the dev provider earned, which the chain then confirms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use khachapuri_chain::{parse_usdc, Address, Chain, EscrowClient, Voucher, U256};
use khachapuri_devnet::dev_signer;
use khachapuri_payments::{encode_payment, Receipt};

mod common;
use common::{root, Dev};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_dev_provider_charges_vouchers_and_settles_on_demand() {
    let dev = Dev::start();
    let info = dev.info();
    let provider_url = info["providers"][0]["url"].as_str().unwrap().to_string();
    let deployed: serde_json::Value =
        serde_json::from_str(&dev.ok(&["deploy", "examples/echo", "--public", "--json"])).unwrap();
    let url = deployed["url"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();

    // Paid by default: no voucher, no call.
    let r = http
        .post(format!("{url}/x"))
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 402);
    let body: serde_json::Value = r.json().await.unwrap();
    let provider: Address = body["provider"].as_str().unwrap().parse().unwrap();
    let escrow: Address = body["escrow"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        provider,
        dev_signer(1).address(),
        "the dev operator is anvil account 1"
    );
    assert_eq!(body["authorized"], "0");

    // The wallet's channel was pre-funded by `dev`: a 1 USDC voucher pays at once.
    let wk: serde_json::Value = http
        .get(format!("{provider_url}/.well-known/khachapuri"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wk["pricing"]["usdc"]["per_request"], "0.0001", "{wk}");
    let wallet = dev_signer(0);
    let voucher = Voucher {
        payer: wallet.address(),
        provider,
        epoch: 0,
        amount: parse_usdc("1").unwrap(),
    }
    .sign(&wallet, 31337, escrow)
    .unwrap();
    let header = encode_payment(&voucher);
    let mut consumed = U256::ZERO;
    for n in 1..=3u64 {
        let r = http
            .post(format!("{url}/x"))
            .header("Khachapuri-Payment", &header)
            .body("hi")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let receipt = Receipt::parse(r.headers()["khachapuri-receipt"].to_str().unwrap()).unwrap();
        assert!(receipt.cost > U256::ZERO, "call {n}");
        assert_eq!(receipt.consumed, consumed + receipt.cost, "call {n}");
        consumed = receipt.consumed;
        assert_eq!(
            receipt.authorized,
            U256::from(1_000_000_000_000u64),
            "1 USDC, call {n}"
        );
    }

    // The node writes its charges behind (every 200 ms): `earned` catches up with all
    // three calls within that (a flush can land between two of them).
    let owed = consumed.div_ceil(U256::from(1_000_000u64));
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        let status: serde_json::Value =
            serde_json::from_str(&dev.ok(&["provider", "status", "--json"])).unwrap();
        let earned = status["earned"].as_str().and_then(|e| parse_usdc(e).ok());
        if earned == Some(owed) || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["authorized"], "1", "{status}");
    assert_eq!(status["redeemed"], "0", "{status}");
    assert_ne!(status["earned"], "0", "{status}");
    // Exact billing: what is pending is what the calls cost (rounded up to a base unit),
    // not the 1 USDC voucher.
    let earned = status["earned"].as_str().unwrap().to_string();
    assert_eq!(status["pending"], earned.as_str(), "{status}");
    let earned_units = parse_usdc(&earned).unwrap();
    assert_eq!(
        earned_units,
        consumed.div_ceil(U256::from(1_000_000u64)),
        "{status}"
    );
    let escrow_before = parse_usdc(status["escrow_balance"].as_str().unwrap()).unwrap();

    let settled: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "settle", "--json"])).unwrap();
    assert_eq!(settled["vouchers"], 1, "{settled}");
    assert_eq!(settled["paid"], earned.as_str(), "{settled}");
    assert_eq!(settled["txs"].as_array().unwrap().len(), 1, "{settled}");

    let status: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "status", "--json"])).unwrap();
    assert_eq!(status["redeemed"], earned.as_str(), "{status}");
    assert_eq!(status["pending"], "0", "{status}");
    // Redeems credit the operator's escrow balance (it withdraws when it likes).
    let escrow_after = parse_usdc(status["escrow_balance"].as_str().unwrap()).unwrap();
    assert_eq!(escrow_after, escrow_before + earned_units, "{status}");

    // The chain agrees, read with a fresh connection.
    let chain = Chain::connect(info["rpc_url"].as_str().unwrap(), None)
        .await
        .unwrap();
    let ch = EscrowClient::new(&chain, escrow)
        .channel(wallet.address(), provider)
        .await
        .unwrap();
    assert_eq!(ch.redeemed, earned_units);
    // A second settle has nothing left to take.
    let again: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "settle", "--json"])).unwrap();
    assert_eq!(again["vouchers"], 0, "{again}");
}

/// The newcomer's path of issue 5 with nothing but the CLI: after `khachapuri dev`, deploy
/// `examples/echo` with a secret (sealed to the dev provider), call it paying by voucher
/// (one signature prepays many calls), settle, and find the redeemed amount on chain equal
/// to what the calls cost (at most the voucher the wallet signed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_deploys_echo_with_a_secret_calls_paying_and_settles() {
    let dev = Dev::start();
    let info = dev.info();
    let work = tempfile::tempdir().unwrap();
    let secrets = work.path().join("echo.env");
    std::fs::write(&secrets, "API_TOKEN=s3cr3t-echo-token\n").unwrap();
    let secrets = secrets.to_str().unwrap();
    let deployed: serde_json::Value = serde_json::from_str(&dev.ok(&[
        "deploy",
        "examples/echo",
        "--env-file",
        secrets,
        "--json",
    ]))
    .unwrap();
    assert_eq!(deployed["sealed"], true, "{deployed}");
    let cid = deployed["cid"].as_str().unwrap();
    let stored = dev.ok(&["store", "get", cid]);
    assert!(!stored.contains("s3cr3t"), "{stored}");

    // curl (no voucher) gets the quote, not the function.
    let r = reqwest::get(deployed["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status(), 402);

    // Three calls from the CLI: the function sees the secret; one signature pays for all.
    let mut signatures = 0;
    for n in 0..3 {
        let out = dev.run(&["call", cid, "/hello"], &root());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "call {n}: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["env"]["API_TOKEN"], "s3cr3t-echo-token", "call {n}: {v}");
        assert_eq!(v["path"], "/hello");
        signatures += stderr.matches("signed a voucher").count();
    }
    assert_eq!(signatures, 1, "one voucher prepays the next calls");
    let head = dev.ok(&["call", cid, "-i"]);
    assert!(
        head.to_ascii_lowercase().contains("\nkhachapuri-receipt: "),
        "{head}"
    );

    // A price ceiling below the quote: refused before anything is paid.
    let out = dev.run(&["call", cid, "--max-price", "0.000001"], &root());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("above --max-price"), "{stderr}");

    // What the wallet signed, from its own state file.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dev.home.path().join("payments/vouchers.json")).unwrap(),
    )
    .unwrap();
    let signed = signed_amounts(&state);
    assert_eq!(signed.len(), 1, "one channel: {state}");
    let signed = signed[0];

    // The node writes its charges behind (every 200 ms); `provider settle` runs in another
    // process and claims what the ledger holds, so let the last call's charge land first.
    std::thread::sleep(Duration::from_millis(600));
    let settled: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "settle", "--json"])).unwrap();
    assert_eq!(settled["vouchers"], 1, "{settled}");
    let status: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "status", "--json"])).unwrap();
    assert_eq!(status["pending"], "0", "{status}");
    let earned = parse_usdc(status["earned"].as_str().unwrap()).unwrap();

    // The chain: the provider redeemed what the calls cost, never the unused prepaid part.
    let chain = Chain::connect(info["rpc_url"].as_str().unwrap(), None)
        .await
        .unwrap();
    let escrow: Address = info["escrow"].as_str().unwrap().parse().unwrap();
    let ch = EscrowClient::new(&chain, escrow)
        .channel(dev_signer(0).address(), dev_signer(1).address())
        .await
        .unwrap();
    assert_eq!(
        ch.redeemed, earned,
        "redeemed on chain = what the calls cost"
    );
    assert!(ch.redeemed > U256::ZERO);
    assert!(ch.redeemed <= signed, "never above the voucher signed");
    // The wallet's side: every call's receipt was signed by the operator, and what the
    // provider redeemed is exactly what it signed for (rounded up to a base unit).
    let escrow_status: serde_json::Value =
        serde_json::from_str(&dev.ok(&["escrow", "status", "--json"])).unwrap();
    let dev_channel = escrow_status["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == "dev")
        .unwrap_or_else(|| panic!("no dev channel: {escrow_status}"))
        .clone();
    assert_eq!(
        parse_usdc(dev_channel["redeemed"].as_str().unwrap()).unwrap(),
        ch.redeemed
    );
    let signed_micro =
        khachapuri_chain::parse_micro_usdc(dev_channel["consumed_signed"].as_str().unwrap())
            .unwrap();
    assert!(signed_micro > U256::ZERO, "{dev_channel}");
    assert_eq!(
        khachapuri_payments::micro_to_base_ceil(signed_micro),
        ch.redeemed,
        "redeemed = consumed as signed: {dev_channel}"
    );
    assert!(
        dev_channel["redeemed_beyond_signed"].is_null(),
        "{dev_channel}"
    );
}

/// Every voucher amount (base units, a decimal string on disk) in the CLI's payment state
/// file.
fn signed_amounts(state: &serde_json::Value) -> Vec<U256> {
    let mut out = Vec::new();
    let mut stack = vec![state];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(amount), Some(_)) = (m.get("amount"), m.get("signature")) {
                    out.push(amount.as_str().unwrap().parse::<U256>().unwrap());
                }
                stack.extend(m.values());
            }
            serde_json::Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}
