//! Settlement end to end on a real anvil: a payer funds a channel and signs a voucher, the
//! provider verifies and records it, consumes part of it, survives an unclean restart, and
//! `settle_once` redeems exactly what the calls cost (rounded up to a base unit), not the
//! voucher; a second round submits nothing. And N paid calls on the write-behind hot path
//! settle to the ledger's consumed total rounded up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use khachapuri_chain::{parse_usdc, Chain, EscrowClient, Voucher, U256};
use khachapuri_devnet::{dev_channel, dev_network, dev_signer, Anvil};
use khachapuri_payments::{
    decode_payment, encode_payment, micro_to_base_ceil, Ledger, PaymentError, Pricing,
    SettlePolicy, Settler, Usage, VoucherVerifier,
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
    assert_eq!(ledger.status().unwrap().pending, U256::from(4));
    let report = settler.settle_once().await.unwrap();
    // 3 calls of 1.00005 base units: 3.00015 claimed as 4 base units, not the 2 USDC voucher.
    let owed = U256::from(4);
    assert_eq!(report.submitted, 1);
    assert_eq!(report.paid, owed);
    assert_eq!(report.txs.len(), 1);
    let ch = escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.redeemed, owed, "the chain shows what the calls cost");
    assert_eq!(escrow.balance_of(provider).await.unwrap(), owed);
    let status = ledger.status().unwrap();
    assert_eq!((status.redeemed, status.pending), (owed, U256::ZERO));

    // Nothing owed: nothing submitted.
    let again = settler.settle_once().await.unwrap();
    assert_eq!((again.submitted, again.txs.len()), (0, 0));
    assert_eq!(
        escrow.channel(payer, provider).await.unwrap().redeemed,
        owed
    );

    // A better voucher alone is not a bill: nothing more is claimed.
    let more = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("3.5").unwrap(),
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    assert!(ledger.record_voucher(&more).unwrap());
    assert_eq!(settler.settle_once().await.unwrap().submitted, 0);
    // Two more calls: 5.00025 consumed, claimed as 6; the difference (2) is paid.
    for _ in 0..2 {
        let res = ledger
            .try_consume(payer, 0, pricing.max_cost(1000, 1 << 20))
            .unwrap();
        ledger
            .settle_reservation(
                res,
                pricing.cost(Usage {
                    millis: 5,
                    bytes_out: 10,
                }),
            )
            .unwrap();
    }
    let report = settler.settle_once().await.unwrap();
    assert_eq!(report.paid, U256::from(2));
    assert_eq!(
        escrow.channel(payer, provider).await.unwrap().redeemed,
        U256::from(6)
    );
    assert_eq!(escrow.balance_of(provider).await.unwrap(), U256::from(6));
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
    // One more call (6.0003 consumed → 7), then an unlock-like wake-up settles it at once.
    let res = ledger
        .try_consume(payer, 0, pricing.max_cost(1000, 1 << 20))
        .unwrap();
    ledger
        .settle_reservation(
            res,
            pricing.cost(Usage {
                millis: 5,
                bytes_out: 10,
            }),
        )
        .unwrap();
    wake.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while escrow.channel(payer, provider).await.unwrap().redeemed != U256::from(7) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "woken settlement did not happen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
}

/// N paid calls admitted and charged on the hot path (in memory, written behind by the
/// 200 ms flush), then one settlement: the channel's `redeemed` is the ledger's consumed
/// total rounded up to a base unit — not the prepaid voucher, and not short of the charges
/// still in memory (settlement flushes first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_n_paid_calls_to_the_consumed_total_rounded_up() {
    const N: u64 = 250;
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let payer_key = dev_signer(3);
    let provider_key = dev_signer(4);
    let (payer, provider) = (payer_key.address(), provider_key.address());
    let provider_chain = Chain::connect(&anvil.endpoint(), Some(provider_key))
        .await
        .unwrap();
    dev_channel(
        &anvil,
        &d,
        3,
        provider,
        parse_usdc("10").unwrap(),
        parse_usdc("10").unwrap(),
    )
    .await
    .unwrap();
    // A 5 USDC prepaid voucher; each call costs 100 base units + 7 ms at 3333 micro-units/ms.
    let voucher = Voucher {
        payer,
        provider,
        epoch: 0,
        amount: parse_usdc("5").unwrap(),
    }
    .sign(&payer_key, d.chain_id, d.escrow)
    .unwrap();
    let pricing = Pricing {
        per_request: 100_000_000,
        per_ms: 3_333,
        per_mb_out: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    assert!(ledger.record_voucher(&voucher).unwrap());
    let max = pricing.max_cost(50, 0);
    let usage = Usage {
        millis: 7,
        bytes_out: 0,
    };
    // The first call loads the row; the rest take the in-memory path like the gate does.
    let first = ledger.try_consume(payer, 0, max).unwrap();
    ledger
        .settle_reservation(first, pricing.cost(usage))
        .unwrap();
    for _ in 1..N {
        let res = ledger
            .try_consume_cached(payer, 0, max)
            .expect("row cached")
            .unwrap();
        ledger
            .settle_reservation_cached(&res, pricing.cost(usage))
            .expect("row cached");
    }
    let consumed = pricing.cost(usage) * U256::from(N);
    assert_eq!(
        ledger.channel(payer, 0).unwrap().unwrap().consumed,
        consumed
    );
    let expected = micro_to_base_ceil(consumed);
    assert!(
        expected * U256::from(1_000_000u64) > consumed,
        "the total has a fraction, so rounding up is visible"
    );
    assert!(expected < voucher.voucher.amount);

    let escrow = EscrowClient::new(&provider_chain, d.escrow);
    let report = Settler::new(ledger.clone(), escrow.clone())
        .settle_once()
        .await
        .unwrap();
    assert_eq!(report.paid, expected);
    let ch = escrow.channel(payer, provider).await.unwrap();
    assert_eq!(ch.redeemed, expected, "redeemed = consumed rounded up");
    assert_eq!(escrow.balance_of(provider).await.unwrap(), expected);
    let status = ledger.status().unwrap();
    assert_eq!((status.redeemed, status.pending), (expected, U256::ZERO));
}
