//! The paid-call gate against a real anvil: 402 without payment, 4xx for forged, foreign
//! and over-funded vouchers, prepaid calls on one voucher, receipts, and the 402 body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{parse_usdc, Address, Chain, EscrowClient, PrivateKeySigner, Voucher, U256};
use khachapuri_devnet::{dev_channel, dev_network, dev_signer, Anvil};
use khachapuri_payments::{encode_payment, Gate, Ledger, PaymentError, Pricing, Receipt, Usage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_admits_prepaid_calls_and_refuses_bad_vouchers() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let payer_key = dev_signer(1);
    let (payer, provider) = (payer_key.address(), dev_signer(2).address());
    let (deposit, fund) = (parse_usdc("10").unwrap(), parse_usdc("1").unwrap());
    let (_payer_chain, payer_escrow) = dev_channel(&anvil, &d, 1, provider, deposit, fund)
        .await
        .unwrap();

    let reader = Chain::connect(&anvil.endpoint(), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    let pricing = Pricing {
        per_request: 100_000, // 0.1 base unit
        per_ms: 1_000,
        per_mb_out: 1_000_000,
    };
    let gate = Gate::new(
        ledger.clone(),
        EscrowClient::new(&reader, d.escrow),
        provider,
        pricing,
        Duration::from_secs(5),
    );
    let max = pricing.max_cost(100, 1_000_000); // 0.1 + 0.1 + 1 = 1.2 base units
    let sign = |amount: u64,
                epoch: u64,
                to: Address,
                key: &PrivateKeySigner,
                chain: u64,
                escrow: Address| {
        encode_payment(
            &Voucher {
                payer,
                provider: to,
                epoch,
                amount: U256::from(amount),
            }
            .sign(key, chain, escrow)
            .unwrap(),
        )
    };
    // What kind of refusal (the provider maps kinds to HTTP statuses).
    let code = |r: Result<_, PaymentError>| match r.map(|_| ()).unwrap_err() {
        e if e.wants_payment() => "pay",
        PaymentError::MalformedHeader(_) => "malformed",
        PaymentError::BadSignature(_) => "signature",
        PaymentError::WrongProvider { .. } | PaymentError::WrongEpoch { .. } => "never here",
        e => panic!("unexpected {e:?}"),
    };

    assert_eq!(code(gate.admit(None, max).await), "pay");
    assert_eq!(code(gate.admit(Some("garbage!"), max).await), "malformed");
    let forged = sign(
        5,
        0,
        provider,
        &PrivateKeySigner::random(),
        d.chain_id,
        d.escrow,
    );
    assert_eq!(code(gate.admit(Some(&forged), max).await), "signature");
    let other_chain = sign(5, 0, provider, &payer_key, 1, d.escrow);
    assert_eq!(code(gate.admit(Some(&other_chain), max).await), "signature");
    let other_escrow = sign(
        5,
        0,
        provider,
        &payer_key,
        d.chain_id,
        Address::repeat_byte(1),
    );
    assert_eq!(
        code(gate.admit(Some(&other_escrow), max).await),
        "signature"
    );
    let other_provider = sign(
        5,
        0,
        dev_signer(3).address(),
        &payer_key,
        d.chain_id,
        d.escrow,
    );
    assert_eq!(
        code(gate.admit(Some(&other_provider), max).await),
        "never here"
    );
    let other_epoch = sign(5, 1, provider, &payer_key, d.chain_id, d.escrow);
    assert_eq!(
        code(gate.admit(Some(&other_epoch), max).await),
        "never here"
    );
    let too_much = sign(1_000_001, 0, provider, &payer_key, d.chain_id, d.escrow);
    assert_eq!(code(gate.admit(Some(&too_much), max).await), "pay");
    assert!(
        ledger.claims().unwrap().is_empty(),
        "nothing bad was recorded"
    );

    // One voucher of 10 base units prepays several calls of at most 1.2.
    let good = sign(10, 0, provider, &payer_key, d.chain_id, d.escrow);
    let mut last = None;
    for _ in 0..8 {
        let res = gate.admit(Some(&good), max).await.unwrap();
        let receipt = gate
            .charge(
                res,
                Usage {
                    millis: 2,
                    bytes_out: 0,
                },
            )
            .await
            .unwrap();
        // 0.1 + 2 * 0.001 = 0.102 base units = 102_000 micro.
        assert_eq!(receipt.cost, U256::from(102_000));
        assert_eq!(Receipt::parse(&receipt.encode()).unwrap(), receipt);
        last = Some(receipt);
    }
    let last = last.unwrap();
    assert_eq!(last.consumed, U256::from(8 * 102_000));
    assert_eq!(last.authorized, U256::from(10_000_000));
    // 10 - 0.816 = 9.184 left ≥ 1.2; a call of max 9.5 base units does not fit.
    let big = U256::from(9_500_000);
    let err = gate.admit(Some(&good), big).await.unwrap_err();
    assert!(
        matches!(err, PaymentError::InsufficientCredit { .. }),
        "{err:?}"
    );
    assert!(err.wants_payment());
    let body = gate
        .payment_required_body(gate.verified_payer(Some(&good)), big)
        .await;
    assert_eq!(body["price"], "9500000");
    assert_eq!(body["epoch"], 0);
    assert_eq!(body["consumed"], "816000");
    assert_eq!(body["authorized"], "10000000");
    assert_eq!(body["chain_id"], d.chain_id);
    // A voucher that merely names the payer (signed by someone else) shows nothing of it.
    let impostor = sign(
        10,
        0,
        provider,
        &PrivateKeySigner::random(),
        d.chain_id,
        d.escrow,
    );
    assert_eq!(gate.verified_payer(Some(&impostor)), None);
    let body = gate
        .payment_required_body(gate.verified_payer(Some(&impostor)), big)
        .await;
    assert!(body.get("consumed").is_none(), "{body}");
    assert!(body.get("authorized").is_none(), "{body}");

    // Funding more and signing higher is accepted once the cache refreshes from chain.
    payer_escrow
        .fund(provider, parse_usdc("1").unwrap())
        .await
        .unwrap();
    let higher = sign(1_500_000, 0, provider, &payer_key, d.chain_id, d.escrow);
    let res = gate.admit(Some(&higher), max).await.unwrap();
    gate.charge(res, Usage::default()).await.unwrap();
    assert_eq!(
        ledger
            .channel(payer, 0)
            .unwrap()
            .unwrap()
            .best
            .voucher
            .amount,
        U256::from(1_500_000)
    );

    // The node restarts (fresh channel cache, same ledger) after the payer closed the
    // channel: the recorded voucher of the ended epoch pays nothing any more.
    payer_escrow.request_unlock(provider).await.unwrap();
    let delay = payer_escrow.unlock_delay().await.unwrap();
    khachapuri_devnet::advance_time(&_payer_chain, delay)
        .await
        .unwrap();
    payer_escrow.reclaim(provider).await.unwrap();
    drop(gate);
    drop(ledger);
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    let restarted = Gate::new(
        ledger.clone(),
        EscrowClient::new(&reader, d.escrow),
        provider,
        pricing,
        Duration::from_secs(5),
    );
    let err = restarted.admit(Some(&higher), max).await.unwrap_err();
    assert!(matches!(err, PaymentError::WrongEpoch { .. }), "{err:?}");
}
