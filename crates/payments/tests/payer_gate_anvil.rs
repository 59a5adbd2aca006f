//! The caller's `Payer` against the provider's real `Gate` and a real anvil: many calls
//! paid with few prepaid vouchers, nothing rejected after paying, the gate never consumes
//! beyond what the payer signed, state survives a "new CLI run", and an underfunded
//! channel is a typed error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{parse_usdc, Chain, EscrowClient};
use khachapuri_devnet::{dev_channel, dev_network, dev_signer, Anvil};
use khachapuri_payments::{
    base_to_micro, ChannelKey, Gate, Ledger, PayPolicy, Payer, PayerStore, PaymentError,
    PaymentRequired, Pricing, Receipt, Usage,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payer_prepays_many_calls_through_the_real_gate() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let payer_key = dev_signer(1);
    let provider = dev_signer(2).address();
    let (deposit, fund) = (parse_usdc("10").unwrap(), parse_usdc("1").unwrap());
    let (_payer_chain, escrow) = dev_channel(&anvil, &d, 1, provider, deposit, fund)
        .await
        .unwrap();

    let reader = Chain::connect(&anvil.endpoint(), None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    // 0.001 USDC per call + 0.00001 per ms; max cost of a 100 ms call = 0.002 USDC.
    let pricing = Pricing {
        per_request: 1_000 * 1_000_000,
        per_ms: 10 * 1_000_000,
        per_mb_out: 0,
    };
    let gate = Gate::new(
        ledger.clone(),
        EscrowClient::new(&reader, d.escrow),
        provider,
        pricing,
        Duration::from_secs(5),
    );
    let max = pricing.max_cost(100, 0);
    let policy = PayPolicy {
        prepay: parse_usdc("0.02").unwrap(),
        max_price: Some(base_to_micro(parse_usdc("0.01").unwrap())),
    };
    let store = PayerStore::new(dir.path().join("payer").join("vouchers.json"));
    let key = ChannelKey {
        chain_id: d.chain_id,
        escrow: d.escrow,
        provider,
        payer: payer_key.address(),
    };

    // Each "CLI run" is a fresh Payer reading the state file, as `khachapuri call` does.
    let mut total_signatures = 0;
    let mut rejected_after_paying = 0;
    const CALLS: usize = 60;
    for i in 0..CALLS {
        let payer = Payer::new(payer_key.clone(), d.chain_id, d.escrow, policy);
        let record = store.load(&key).unwrap();
        let mut header = payer.ahead(record.as_ref(), "bafyfn");
        let reservation = match gate.admit(header.as_deref(), max).await {
            Ok(r) => r,
            Err(e) => {
                assert!(e.wants_payment(), "call {i}: {e}");
                let body = gate
                    .payment_required_body(gate.verified_payer(header.as_deref()), max)
                    .await;
                let body = PaymentRequired::parse(body.to_string().as_bytes()).unwrap();
                let channel = escrow
                    .channel(payer.address(), body.provider)
                    .await
                    .unwrap();
                let paid = payer
                    .pay(&body, &channel, record, "bafyfn", Some(provider))
                    .unwrap();
                store.save(&key, &paid.record).unwrap();
                header = Some(paid.header);
                match gate.admit(header.as_deref(), max).await {
                    Ok(r) => r,
                    Err(e) => {
                        rejected_after_paying += 1;
                        eprintln!("call {i} rejected after paying: {e}");
                        continue;
                    }
                }
            }
        };
        let millis = (i % 7) as u64 * 10;
        let receipt = gate
            .charge(
                reservation,
                Usage {
                    millis,
                    bytes_out: 0,
                },
            )
            .await
            .unwrap();
        // What travels in the Khachapuri-Receipt header.
        let receipt = Receipt::parse(&receipt.encode()).unwrap();
        let mut record = store.load(&key).unwrap().expect("a record after paying");
        payer.on_receipt(&receipt, &mut record, provider).unwrap();
        store.save(&key, &record).unwrap();
        total_signatures += payer.signatures();

        // The gate never consumes beyond the payer's best voucher.
        let row = ledger.channel(payer.address(), 0).unwrap().unwrap();
        assert!(row.consumed <= base_to_micro(record.signed()));
        assert!(row.consumed <= row.authorized_micro());
        assert!(record.signed() <= parse_usdc("1").unwrap(), "within funds");
    }
    assert_eq!(rejected_after_paying, 0);
    // 60 calls of ~0.0013 USDC = ~0.08 USDC; prepaid 0.02 with re-sign at 0.01 left:
    // about one signature per 0.01 USDC consumed.
    let row = ledger.channel(payer_key.address(), 0).unwrap().unwrap();
    let consumed_usdc_micro = row.consumed;
    assert!(
        total_signatures <= 12,
        "{total_signatures} signatures for {CALLS} calls"
    );
    assert!(total_signatures >= 2, "prepay ran out at least once");
    eprintln!(
        "{CALLS} paid calls, {total_signatures} signatures, consumed {consumed_usdc_micro} micro, best voucher {}",
        row.best.voucher.amount
    );

    // A call above --max-price is refused before anything is signed.
    let payer = Payer::new(payer_key.clone(), d.chain_id, d.escrow, policy);
    let dear = gate
        .payment_required_body(None, base_to_micro(parse_usdc("0.05").unwrap()))
        .await;
    let dear = PaymentRequired::parse(dear.to_string().as_bytes()).unwrap();
    let channel = escrow.channel(payer.address(), provider).await.unwrap();
    assert!(matches!(
        payer.pay(&dear, &channel, store.load(&key).unwrap(), "big", None),
        Err(PaymentError::PriceTooHigh { .. })
    ));

    // A channel that cannot cover the call: a typed error naming what is needed.
    let payer = Payer::new(
        payer_key.clone(),
        d.chain_id,
        d.escrow,
        PayPolicy {
            prepay: parse_usdc("5").unwrap(),
            max_price: None,
        },
    );
    let mut body = gate
        .payment_required_body(
            Some(payer.address()),
            base_to_micro(parse_usdc("2").unwrap()),
        )
        .await;
    body["authorized"] = row.authorized_micro().to_string().into();
    let body = PaymentRequired::parse(body.to_string().as_bytes()).unwrap();
    let err = payer
        .pay(&body, &channel, store.load(&key).unwrap(), "bafyfn", None)
        .unwrap_err();
    match err {
        PaymentError::ChannelShort { needed, funds, .. } => {
            assert_eq!(funds, parse_usdc("1").unwrap());
            assert!(needed > funds);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        ledger
            .channel(payer.address(), 0)
            .unwrap()
            .unwrap()
            .consumed,
        consumed_usdc_micro
    );
}
