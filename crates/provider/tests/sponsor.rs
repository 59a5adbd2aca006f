//! Budgets of sponsored deployments on a real paid node (anvil, store, node over HTTP):
//! the callers of a deployment draw its owner-signed budget and the top-ups naming it,
//! never the rest of the owner's channel.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{start, top_up, Net};
use khachapuri_chain::{PrivateKeySigner, U256};
use khachapuri_devnet::dev_signer;
use khachapuri_types::PayerPolicy;
use serde_json::Value;

/// `budget` base units: 0.005 USDC pays two or three echo calls (0.0021 held per call,
/// ~0.001 charged).
const BUDGET: &str = "5000";
/// The same in micro-units, as the node reports budgets.
const BUDGET_MICRO: &str = "5000000000";

/// Deploys the echo guest (as deployment `name`) sponsored by `owner` with `voucher`
/// (cumulative for the channel) and the owner-signed budget `budget` (base units). The
/// budget belongs to the signed spec: the same spec under another CID shares it.
fn sponsored(
    net: &Net,
    name: &str,
    owner: &PrivateKeySigner,
    voucher: &str,
    budget: Option<&str>,
) -> String {
    net.deploy_echo(|s| {
        s.env.insert("NAME".into(), name.into());
        s.payer = PayerPolicy::Sponsored;
        s.sponsor_voucher = Some(voucher.to_string());
        s.sponsor_budget = budget.map(str::to_string);
        s.owner = Some(owner.address().to_string());
    })
}

/// Calls `cid` with no payment until the node says 402; returns how many calls it served
/// and the 402 body.
async fn drain(net: &Net, cid: &str) -> (u32, Value) {
    let mut served = 0;
    loop {
        let (status, _, body) = net.call(cid, None).await;
        if status != 200 {
            assert_eq!(status, 402, "{body}");
            return (served, body);
        }
        served += 1;
        assert!(served < 10, "a 0.005 USDC budget cannot pay {served} calls");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_draws_only_its_budget_and_top_ups_naming_it() {
    let net = start().await;
    let owner = dev_signer(3);
    net.fund(&owner, "1").await;
    // One cumulative voucher of 0.05 USDC covers the owner's own calls and both
    // deployments; each deployment's share is 0.005.
    let channel = net.voucher(&owner, "0.05");
    let a = sponsored(&net, "a", &owner, &channel, Some(BUDGET));
    let b = sponsored(&net, "b", &owner, &channel, Some(BUDGET));

    let (served, body) = drain(&net, &a).await;
    assert!(served >= 2, "served {served}: {body}");
    assert_eq!(body["sponsored"], true, "{body}");
    assert!(
        body["note"].as_str().unwrap().contains("deployment="),
        "{body}"
    );
    assert_eq!(body["budget"]["authorized"], BUDGET_MICRO, "{body}");
    assert_eq!(
        body["authorized"], BUDGET_MICRO,
        "the deployment's figures: {body}"
    );
    assert!(body.get("funds").is_none(), "{body}");

    // The owner's own paid calls on the same channel go on.
    for _ in 0..3 {
        let (status, receipt, body) = net.call(&a, None).await;
        assert_eq!(status, 402, "{body}");
        assert!(receipt.is_none());
        let echo = net.deploy_echo(|_| {});
        let (status, receipt, body) = net.call(&echo, Some(&channel)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            receipt.unwrap().authorized,
            U256::from(50_000_000_000u64),
            "the owner's whole channel"
        );
    }

    // A second deployment of the same owner has its own budget.
    let (served_b, body) = drain(&net, &b).await;
    assert!(served_b >= 2, "served {served_b}: {body}");
    assert_eq!(body["budget"]["authorized"], BUDGET_MICRO, "{body}");

    // A top-up naming `a` raises `a` by its increase over the channel's best (0.05).
    let (status, v) = top_up(&net, net.voucher(&owner, "0.06"), Some(&a)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deployment"]["credited"], "10000", "0.01 USDC: {v}");
    assert_eq!(
        v["deployment"]["budget"]["authorized"], "15000000000",
        "{v}"
    );
    assert_eq!(v["authorized"], "60000000000", "the channel: {v}");
    let (status, _, body) = net.call(&a, None).await;
    assert_eq!(status, 200, "{body}");
    // ... and only `a`.
    let (status, _, body) = net.call(&b, None).await;
    assert_eq!(status, 402, "{body}");

    // Replaying it, or topping up without naming a deployment, credits no deployment.
    let (status, v) = top_up(&net, net.voucher(&owner, "0.06"), Some(&b)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deployment"]["credited"], "0", "{v}");
    let (status, v) = top_up(&net, net.voucher(&owner, "0.08"), None).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["deployment"].is_null(), "{v}");
    let (status, _, body) = net.call(&b, None).await;
    assert_eq!(status, 402, "{body}");

    // Nobody else's voucher can be credited to the owner's deployment.
    let stranger = dev_signer(4);
    net.fund(&stranger, "1").await;
    let (status, v) = top_up(&net, net.voucher(&stranger, "0.5"), Some(&b)).await;
    assert_eq!(status, 403, "{v}");
    let (status, _, body) = net.call(&b, None).await;
    assert_eq!(status, 402, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_and_its_top_ups_survive_a_restart() {
    let mut net = start().await;
    let owner = dev_signer(5);
    net.fund(&owner, "1").await;
    // A spec from before `sponsor_budget`: the carried voucher's amount is the budget.
    let legacy = sponsored(&net, "legacy", &owner, &net.voucher(&owner, "0.005"), None);
    // The owner's own paid call raises the channel to 0.05: only the budget stops callers.
    let echo = net.deploy_echo(|_| {});
    let (status, _, body) = net.call(&echo, Some(&net.voucher(&owner, "0.05"))).await;
    assert_eq!(status, 200, "{body}");
    let (served, body) = drain(&net, &legacy).await;
    assert!(served >= 2, "served {served}: {body}");
    assert_eq!(body["budget"]["authorized"], BUDGET_MICRO, "{body}");
    let consumed = body["budget"]["consumed"].clone();

    net.restart().await;
    let (status, _, body) = net.call(&legacy, None).await;
    assert_eq!(
        status, 402,
        "a fresh node still knows the budget is spent: {body}"
    );
    assert_eq!(body["budget"]["consumed"], consumed, "{body}");

    let (status, v) = top_up(&net, net.voucher(&owner, "0.06"), Some(&legacy)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["deployment"]["credited"], "10000", "{v}");
    net.restart().await;
    let (status, _, body) = net.call(&legacy, None).await;
    assert_eq!(status, 200, "the top-up is durable: {body}");
}
