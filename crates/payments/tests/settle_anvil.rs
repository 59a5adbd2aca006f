//! Settlement end to end on a real anvil: a payer funds a channel and signs a voucher, the
//! provider verifies and records it, consumes part of it, survives an unclean restart, and
//! `settle_once` redeems exactly the voucher on chain; a second round submits nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use khachapuri_chain::{
    dev_channel, dev_network, dev_signer, parse_usdc, Anvil, Chain, EscrowClient, Voucher, U256,
};
use khachapuri_payments::{
    decode_payment, encode_payment, Ledger, PaymentError, Pricing, SettlePolicy, Settler, Usage,
    VoucherVerifier,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_recorded_vouchers_once_and_exactly() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let payer_key = dev_signer(1);
    let provider_key = dev_signer(2);
    let (payer, provider) = (payer_key.address(), provider_key.address());
    let provider_chain = Chain::connect(&anvil.endpoint(), Some(provider_key))
        .await
        .unwrap();

    let (deposit, fund) = (parse_usdc("10").unwrap(), parse_usdc("5").unwrap());
    let (_payer_chain, _payer_escrow) = dev_channel(&anvil, &d, 1, provider, deposit, fund)
        .await
        .unwrap();

    // The caller signs 2 USDC ahead and sends it as a header.
    let amount = parse_usdc("2").unwrap();
    let header = encode_payment(
        &Voucher {
            payer,
            provider,
            epoch: 0,
            amount,
        }
        .sign(&payer_key, d.chain_id, d.escrow)
        .unwrap(),
    );

    // Provider side: decode, verify against the chain, record durably, run paid calls.
    let escrow = EscrowClient::new(&provider_chain, d.escrow);
    let verifier = VoucherVerifier {
        chain_id: d.chain_id,
        escrow: d.escrow,
        provider,
    };
    let voucher = decode_payment(&header).unwrap();
    let channel = escrow.channel(payer, provider).await.unwrap();
    verifier.verify(&voucher, &channel).unwrap();
    // More than the channel holds is refused.
    let greedy = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("6").unwrap(),
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    assert!(matches!(
        verifier.verify(&greedy, &channel),
        Err(PaymentError::AboveFunds { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let pricing = Pricing {
        per_request: 1_000_000, // 1 base unit
        per_ms: 10,
        per_mb_out: 0,
    };
    {
        let ledger = Ledger::open(&path).unwrap();
        assert!(ledger.record_voucher(&voucher).unwrap());
        for _ in 0..3 {
            let res = ledger
                .try_consume(payer, 0, pricing.max_cost(1000, 1 << 20))
                .unwrap();
            let cost = pricing.cost(Usage {
                millis: 5,
                bytes_out: 10,
            });
            ledger.settle_reservation(res, cost).unwrap();
        }
        // Crash without a clean shutdown.
        std::mem::forget(ledger);
    }
    let ledger = Arc::new(Ledger::open(&path).unwrap());
    assert_eq!(
        ledger.channel(payer, 0).unwrap().unwrap().consumed,
        U256::from(3 * 1_000_050)
    );

    let settler = Settler::new(ledger.clone(), escrow.clone());
    let report = settler.settle_once().await.unwrap();
    assert_eq!(report.submitted, 1);
    assert_eq!(report.paid, amount);
    assert_eq!(report.txs.len(), 1);
    let ch = escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.redeemed, amount, "the chain shows exactly the voucher");
    assert_eq!(escrow.balance_of(provider).await.unwrap(), amount);
    let status = ledger.status().unwrap();
    assert_eq!((status.redeemed, status.pending), (amount, U256::ZERO));

    // Nothing owed: nothing submitted.
    let again = settler.settle_once().await.unwrap();
    assert_eq!((again.submitted, again.txs.len()), (0, 0));
    assert_eq!(
        escrow.channel(payer, provider).await.unwrap().redeemed,
        amount
    );

    // A better voucher is redeemed for the difference only.
    let more = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("3.5").unwrap(),
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    assert!(ledger.record_voucher(&more).unwrap());
    let report = settler.settle_once().await.unwrap();
    assert_eq!(report.paid, parse_usdc("1.5").unwrap());
    assert_eq!(
        escrow.channel(payer, provider).await.unwrap().redeemed,
        parse_usdc("3.5").unwrap()
    );
    assert_eq!(
        escrow.balance_of(provider).await.unwrap(),
        parse_usdc("3.5").unwrap()
    );
    assert_eq!(settler.settle_once().await.unwrap().submitted, 0);

    // The background loop settles at once when woken (an unlock was seen).
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let settler = settler.clone();
        let wake = wake.clone();
        tokio::spawn(async move {
            let policy = SettlePolicy {
                interval: Duration::from_secs(3600),
                threshold: U256::MAX,
                check_every: Duration::from_secs(3600),
            };
            settler
                .run(policy, wake, async {
                    let _ = stop_rx.await;
                })
                .await;
        })
    };
    let four = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("4").unwrap(),
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    assert!(ledger.record_voucher(&four).unwrap());
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while escrow.channel(payer, provider).await.unwrap().redeemed != parse_usdc("4").unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "woken settlement did not happen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
}
