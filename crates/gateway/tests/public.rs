//! `/{cid}` of a public deployment at the gateway: spread over the providers by power of
//! two choices, and still answering every call while one of three providers goes away
//! (calls that met the dead one are retried elsewhere: they never reached a function).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use khachapuri_gateway::PROVIDER_HEADER;

async fn call(url: &str) -> (u16, String) {
    let r = common::client().get(url).send().await.unwrap();
    let by = r
        .headers()
        .get(PROVIDER_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_deployment_keeps_answering_while_a_provider_dies() {
    let mut t = common::start(3, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let url = format!("{}/{hello}/", t.gateway);

    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        let (status, by) = call(&url).await;
        assert_eq!(status, 200);
        *seen.entry(by).or_insert(0) += 1;
    }
    assert!(
        seen.len() >= 2,
        "power of two choices spreads calls: {seen:?}"
    );

    let log = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, log, done) = (url.clone(), log.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    // The instant a call *started*: one answered by dev2 just before the
                    // stop may be logged after it, once this task is scheduled again.
                    let started = Instant::now();
                    let answer = call(&url).await;
                    log.lock().unwrap().push((started, answer));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    t.net.stop_provider("dev2").await.unwrap();
    let stopped = Instant::now();
    // Calls go on for two more seconds however long the drain took (a loaded CI machine).
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let log = log.lock().unwrap();
    let failed: Vec<_> = log.iter().filter(|(_, (s, _))| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:?}",
        failed.len(),
        log.len()
    );
    let after: Vec<_> = log.iter().filter(|(at, _)| *at > stopped).collect();
    assert!(
        after.len() > 20,
        "calls started after the stop: {}",
        after.len()
    );
    assert!(
        after.iter().all(|(_, (_, by))| by != "dev2"),
        "nothing started after the stop is answered by the stopped provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_public_call_goes_only_to_the_provider_its_voucher_pays() {
    let t = common::start(2, false).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let url = format!("{}/{hello}/", t.gateway);
    // Unpaid: some provider's 402 comes back, saying who asked.
    let (status, by) = call(&url).await;
    assert_eq!(status, 402);
    assert!(by == "dev" || by == "dev2", "{by}");

    // A voucher for dev2 (the devnet funded the wallet's channel to it).
    let wallet = khachapuri_devnet::dev_signer(0);
    let dev2 = t.net.providers[1].operator;
    let d = &t.net.deployment;
    let voucher = khachapuri_chain::Voucher {
        payer: wallet.address(),
        provider: dev2,
        epoch: 0,
        amount: khachapuri_chain::parse_usdc("0.05").unwrap(),
    }
    .sign(&wallet, d.chain_id, d.escrow)
    .unwrap();
    let payment = khachapuri_payments::encode_payment(&voucher);
    for _ in 0..20 {
        let r = common::client()
            .get(&url)
            .header(khachapuri_payments::PAYMENT_HEADER, &payment)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[PROVIDER_HEADER], "dev2");
        assert!(r.headers().contains_key("khachapuri-receipt"));
    }
    // dev never ran a call paid to dev2.
    let metrics = common::client()
        .get(format!("{}/metrics", t.net.providers[0].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ran: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("khachapuri_runtime_calls_total "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0);
    assert_eq!(ran, 0.0, "dev ran calls paid to dev2:\n{metrics}");
}
