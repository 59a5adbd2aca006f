//! Crash safety of paid calls: a paid `khachapuri provider run` process under load with a
//! fresh voucher on every call is killed with SIGKILL, restarted over the same data dir,
//! and settled with `khachapuri provider settle`. Every voucher the node accepted (answered
//! 200 to) must still be in its ledger, settlement must claim what the ledger says the calls
//! cost (rounded up to a base unit), and the chain must never pay more than the highest
//! voucher the payer signed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_chain::{parse_usdc, sign_spec, Chain, EscrowClient, Voucher, U256};
use khachapuri_devnet::{dev_network, dev_signer, Anvil, AnvilOptions, DEV_KEYS};
use khachapuri_payments::{encode_payment, PAYMENT_HEADER};
use khachapuri_provider::{NodeConfig, PaymentsConfig};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const OPERATOR: usize = 5;
const PAYER: usize = 6;

fn put(blocks: &Blockstore, data: &[u8]) -> Cid {
    let (imported, bs) = khachapuri_store::import_bytes(data).unwrap();
    for b in bs {
        blocks.put(&b.cid, &b.data).unwrap();
    }
    imported.cid
}

/// Starts `khachapuri provider run --config FILE` and returns it with its URL (first
/// stdout line).
async fn start_provider(home: &std::path::Path, config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_khachapuri"))
        .arg("--home")
        .arg(home)
        .args(["provider", "run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("provider did not start in 60 s")
        .unwrap()
        .expect("provider printed no URL");
    (child, url.trim().to_string())
}

fn cli(home: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_khachapuri"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "khachapuri {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_accepted_voucher_and_claims_nothing_beyond() {
    let anvil = Anvil::spawn_with(AnvilOptions {
        port: 0,
        ..AnvilOptions::default()
    })
    .expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .unwrap();
    let (operator, payer) = (dev_signer(OPERATOR), dev_signer(PAYER));
    let payer_chain = Chain::connect(&anvil.endpoint(), Some(payer.clone()))
        .await
        .unwrap();
    let escrow = EscrowClient::new(&payer_chain, d.escrow);
    escrow.deposit(parse_usdc("100").unwrap()).await.unwrap();
    escrow
        .fund(operator.address(), parse_usdc("100").unwrap())
        .await
        .unwrap();

    // Content: the hello component and a signed public spec, served by an in-process store.
    let dir = tempfile::tempdir().unwrap();
    let blocks = Blockstore::open(dir.path().join("store")).unwrap();
    let artifact = put(&blocks, &khachapuri_testkit::hello());
    let mut spec = Spec::new(artifact.to_string(), RuntimeKind::WasiHttp, 1);
    sign_spec(&mut spec, &payer).unwrap();
    let cid = put(&blocks, &Envelope::Public { spec }.to_bytes());
    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks,
        std::future::pending(),
    ));

    // The provider's config: paid, settling only when told to (huge threshold and period).
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, DEV_KEYS[OPERATOR]).unwrap();
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: "crash".into(),
        data_dir: dir.path().join("node"),
        gateways: vec![store_url],
        payments: Some(PaymentsConfig {
            rpc_url: anvil.endpoint(),
            chain_id: d.chain_id,
            escrow: d.escrow,
            settle_threshold: "1000".into(),
            settle_interval_secs: 86_400,
            operator_key_file: Some(key_file),
            // One client signing a new voucher per call, on purpose: the per-client limit
            // on signature checks would refuse most of this load.
            signature_checks_per_client_per_sec: 0,
            ..PaymentsConfig::default()
        }),
        ..NodeConfig::default()
    };
    let config_file = dir.path().join("provider.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let home = dir.path().join("home");

    let (mut child, url) = start_provider(&home, &config_file).await;
    let call_url = format!("{url}/{cid}/");

    // Load: every call carries a new, higher voucher. Steps are larger than a call's
    // charge, and the first voucher leaves room for the reservations in flight.
    let step = parse_usdc("0.001").unwrap();
    let headroom = parse_usdc("0.5").unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let accepted_max = Arc::new(AtomicU64::new(0));
    // Calls answered 200 so far (the highest accepted voucher index can run ahead of the
    // count: concurrent vouchers are committed together).
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let answered = answered.clone();
        let (next, accepted_max, stop, http, url, payer) = (
            next.clone(),
            accepted_max.clone(),
            stop.clone(),
            http.clone(),
            call_url.clone(),
            payer.clone(),
        );
        let (chain_id, escrow_addr, provider) = (d.chain_id, d.escrow, operator.address());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::SeqCst) + 1;
                let amount = headroom + step * U256::from(n);
                let v = Voucher {
                    payer: payer.address(),
                    provider,
                    epoch: 0,
                    amount,
                }
                .sign(&payer, chain_id, escrow_addr)
                .unwrap();
                match http
                    .get(&url)
                    .header(PAYMENT_HEADER, encode_payment(&v))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        accepted_max.fetch_max(n, Ordering::SeqCst);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("paid call refused: {} {:?}", r.status(), r.text().await),
                    Err(_) => break, // the node is gone
                }
            }
            ok
        }));
    }
    // Let a few hundred calls through, then SIGKILL the node mid-load. At least 2 s of
    // load: the ledger writes consumption a few times a second (a crash forgets at most
    // the last interval's charges), and on a fast machine 150 calls take less than one
    // interval, which left nothing consumed on disk to settle.
    let started = Instant::now();
    while (answered.load(Ordering::SeqCst) < 150 || started.elapsed() < Duration::from_secs(2))
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap(); // SIGKILL
    let _ = child.wait().await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = 0;
    for t in tasks {
        calls += t.await.unwrap();
    }
    let accepted = headroom + step * U256::from(accepted_max.load(Ordering::SeqCst));
    let signed_max = headroom + step * U256::from(next.load(Ordering::SeqCst));
    assert!(
        calls >= 150,
        "only {calls} calls went through before the kill"
    );

    // Restart over the same data dir: the ledger still holds the best accepted voucher.
    let (mut child, url) = start_provider(&home, &config_file).await;
    let status = cli(
        &home,
        &[
            "provider",
            "status",
            "--config",
            config_file.to_str().unwrap(),
            "--json",
        ],
    );
    let authorized = parse_usdc(status["authorized"].as_str().unwrap()).unwrap();
    assert!(
        authorized >= accepted && authorized <= signed_max,
        "ledger authorizes {authorized}, accepted {accepted}, signed at most {signed_max}"
    );
    // The restarted node still serves paid calls with the recorded voucher.
    let v = Voucher {
        payer: payer.address(),
        provider: operator.address(),
        epoch: 0,
        amount: signed_max + step,
    }
    .sign(&payer, d.chain_id, d.escrow)
    .unwrap();
    let r = http
        .get(format!("{url}/{cid}/"))
        .header(PAYMENT_HEADER, encode_payment(&v))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.start_kill().unwrap();
    let _ = child.wait().await;

    // Settle: the chain pays what the ledger recorded as consumed (rounded up), credited
    // to the operator's escrow balance; never more than anything signed.
    let cfg = config_file.to_str().unwrap();
    let status = cli(&home, &["provider", "status", "--config", cfg, "--json"]);
    let earned = parse_usdc(status["earned"].as_str().unwrap()).unwrap();
    let before = escrow.balance_of(operator.address()).await.unwrap();
    cli(&home, &["provider", "settle", "--config", cfg, "--json"]);
    let paid = escrow.balance_of(operator.address()).await.unwrap() - before;
    let best = signed_max + step;
    assert_eq!(paid, earned, "settlement claims what the calls cost");
    assert!(
        !paid.is_zero() && paid <= best,
        "paid {paid}, best voucher {best}"
    );
    let channel = escrow
        .channel(payer.address(), operator.address())
        .await
        .unwrap();
    assert_eq!(channel.redeemed, earned);
    // A second settlement claims nothing more.
    cli(&home, &["provider", "settle", "--config", cfg, "--json"]);
    assert_eq!(
        escrow.balance_of(operator.address()).await.unwrap() - before,
        earned
    );
}
