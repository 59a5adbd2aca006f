//! The per-client limit on requests that cost a signature check, on a real paid node
//! (anvil, store, node on 127.0.0.1:0; harness in `common/`): fresh random-key vouchers
//! past the burst get 429 with `Retry-After`, while a prepaid caller from the same address
//! re-sending its known voucher keeps getting 200.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{client, start_with};
use khachapuri_chain::PrivateKeySigner;
use khachapuri_devnet::dev_signer;

const BURST: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_vouchers_past_the_burst_get_429_while_prepaid_calls_go_on() {
    let net = start_with(|p| {
        p.signature_checks_per_client_per_sec = 1;
        p.signature_check_burst = BURST;
    })
    .await;
    let echo = net.deploy_echo(|_| {});
    let payer = dev_signer(1);
    net.fund(&payer, "1").await;

    // The prepaid caller signs once (one signature check) and re-sends that voucher.
    let prepaid = net.voucher(&payer, "0.5");
    let (status, _, body) = net.call(&echo, Some(&prepaid)).await;
    assert_eq!(status, 200, "{body}");

    // A stranger with a fresh key per request, from the same address (127.0.0.1).
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..(2 * BURST) {
        let stranger = PrivateKeySigner::random();
        let voucher = net.voucher(&stranger, "0.01");
        let r = client()
            .post(format!("{}/{echo}/x", net.url))
            .header("Khachapuri-Payment", &voucher)
            .body("hi")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        statuses.push(status);
        if status == 429 && limited.is_none() {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            limited = Some((retry, r.json::<serde_json::Value>().await.unwrap()));
        }
        // Interleaved: the prepaid caller is never limited, however empty the bucket.
        let (status, _, body) = net.call(&echo, Some(&prepaid)).await;
        assert_eq!(status, 200, "prepaid call limited: {body}");
    }
    // The burst minus the prepaid voucher's check were verified (402: nothing funded).
    let verified = statuses.iter().filter(|s| **s == 402).count();
    assert!(
        verified <= BURST as usize,
        "more checks than the burst: {statuses:?}"
    );
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
    let (retry, body) = limited.unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(body["kind"], "too_many_signature_checks", "{body}");
    assert!(body["hint"].as_str().unwrap().contains("re-send"), "{body}");

    // Top-ups count too: the bucket is empty.
    let (status, body) = common::top_up(&net, net.voucher(&payer, "0.6"), None).await;
    assert_eq!(status, 429, "{body}");

    let metrics = client()
        .get(format!("{}/metrics", net.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("khachapuri_signature_checks_limited_total "))
        .expect("counter in /metrics")
        .parse()
        .unwrap();
    assert!(refused >= 2, "{metrics}");

    // The bucket refills: after a second, one more check goes through, and the topped-up
    // voucher is then the known one, re-sent for free.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let higher = net.voucher(&payer, "0.6");
    let (status, body) = common::top_up(&net, higher.clone(), None).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        let (status, _, body) = net.call(&echo, Some(&higher)).await;
        assert_eq!(status, 200, "{body}");
    }
}
