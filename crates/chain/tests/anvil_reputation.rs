//! Reputation end to end on a real anvil with the dev parameters (`DeployOptions::dev`:
//! 60 s service period, 1000 base units of value): an operator registers itself, a payer
//! funds a channel, and the operator's record shows value, distinct payers and a point only
//! once both minimums are met.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use alloy::providers::Provider;
use khachapuri_chain::{
    parse_usdc, Chain, Claim, EscrowClient, Registration, RegistryClient, Voucher, U256,
};
use khachapuri_devnet::{dev_channel, dev_network, dev_signer, Anvil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_shows_value_payers_and_points_with_the_dev_minimums() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (deployer, d) = dev_network(&anvil, parse_usdc("100").unwrap())
        .await
        .expect("dev network");
    let operator_key = dev_signer(5);
    let operator = operator_key.address();
    let operator_chain = Chain::connect(&anvil.endpoint(), Some(operator_key))
        .await
        .unwrap();
    let registry = RegistryClient::new(&operator_chain, d.registry);
    registry
        .register(&Registration {
            name: "rep".into(),
            operator,
            url: "http://127.0.0.1:1".into(),
            pubkey: [1; 32],
            regions: vec![],
            contact: String::new(),
        })
        .await
        .expect("the operator registers itself");

    let payer_key = dev_signer(6);
    let deposit = parse_usdc("1").unwrap();
    dev_channel(&anvil, &d, 6, operator, deposit, deposit)
        .await
        .unwrap();
    let voucher = Voucher {
        payer: payer_key.address(),
        provider: operator,
        epoch: 0,
        amount: deposit,
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    let escrow = EscrowClient::new(&operator_chain, d.escrow);
    let record = || async { registry.resolve("rep").await.unwrap().expect("record") };

    // 999 base units right away: value and a payer, but no point (period and value short).
    escrow
        .redeem(&Claim::new(voucher.clone(), U256::from(999)))
        .await
        .unwrap();
    let r = record().await;
    assert_eq!(
        (r.reputation, r.payers, r.value_redeemed),
        (U256::ZERO, U256::from(1), U256::from(999))
    );

    // A minute later, 1 more base unit: 1000 redeemed in a 60 s period earns the point.
    let p = deployer.provider();
    let _: serde_json::Value = p
        .raw_request("evm_increaseTime".into(), (60u64,))
        .await
        .unwrap();
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    escrow
        .redeem(&Claim::new(voucher.clone(), U256::from(1000)))
        .await
        .unwrap();
    let r = record().await;
    assert_eq!(
        (r.reputation, r.payers, r.value_redeemed),
        (U256::from(1), U256::from(1), U256::from(1000))
    );
    assert_eq!(
        escrow
            .period_value(payer_key.address(), operator)
            .await
            .unwrap(),
        U256::ZERO,
        "the period restarts empty"
    );
    assert_eq!(registry.reputation(operator).await.unwrap(), U256::from(1));
    assert_eq!(escrow.balance_of(operator).await.unwrap(), U256::from(1000));
}
