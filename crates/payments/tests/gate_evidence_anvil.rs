//! Evidence both ways, against a real anvil. Whatever the gate accepts, settlement collects:
//! a correctly signed voucher sent with its recovery byte as 0/1, or as the high-`s` twin of
//! the signature, pays for a call only in the form the real escrow (OpenZeppelin `ECDSA`)
//! redeems. And a receipt the caller asks to be signed carries the operator's signature,
//! which the payer's record checks and keeps; forged or altered ones change nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use khachapuri_chain::{parse_usdc, Chain, EscrowClient, SignedVoucher, Voucher, U256};
use khachapuri_devnet::{dev_channel, dev_network, dev_signer, Anvil};
use khachapuri_payments::{
    ChannelKey, ChannelRecord, Gate, Ledger, PaymentError, Pricing, Receipt, Settler, Usage,
};

/// secp256k1's group order n.
const N: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

/// The header a hostile caller would send: the voucher's JSON with `signature` as given.
fn header_of(sv: &SignedVoucher) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(sv).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malleated_vouchers_that_the_gate_accepts_are_collected_on_chain() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let provider_key = dev_signer(2);
    let provider = provider_key.address();
    let provider_chain = Chain::connect(&anvil.endpoint(), Some(provider_key))
        .await
        .unwrap();
    let escrow = EscrowClient::new(&provider_chain, d.escrow);

    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    let pricing = Pricing {
        per_request: 1_000_000, // 1 base unit a call
        per_ms: 0,
        per_mb_out: 0,
    };
    let gate = Gate::new(
        ledger.clone(),
        escrow.clone(),
        provider,
        pricing,
        Duration::from_secs(5),
    );

    // Payer 1 sends v as 0/1, payer 3 the high-s twin; both sign 5 base units ahead.
    let n = U256::from_str_radix(N, 16).unwrap();
    let mut payers = Vec::new();
    for (index, form) in [(1usize, "low-v"), (3, "high-s")] {
        let key = dev_signer(index);
        dev_channel(
            &anvil,
            &d,
            index,
            provider,
            parse_usdc("1").unwrap(),
            parse_usdc("1").unwrap(),
        )
        .await
        .unwrap();
        let mut sv = Voucher {
            payer: key.address(),
            provider,
            epoch: 0,
            amount: U256::from(5u64),
        }
        .sign(&key, d.chain_id, d.escrow)
        .unwrap();
        if form == "low-v" {
            sv.signature[64] -= 27;
        } else {
            let s = U256::from_be_slice(&sv.signature[32..64]);
            sv.signature[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
            sv.signature[64] = if sv.signature[64] == 27 { 28 } else { 27 };
        }
        // The malleated form still recovers the payer: a node that checked only recovery
        // would serve it.
        sv.verify(d.chain_id, d.escrow).unwrap();
        let header = header_of(&sv);
        for _ in 0..3 {
            let res = gate.admit(Some(&header), U256::from(1_000_000u64)).await;
            let res = res.unwrap_or_else(|e| panic!("{form}: {e}"));
            gate.charge(res, Usage::default()).await.unwrap();
        }
        payers.push((key.address(), form));
    }

    // What the ledger holds is in the escrow's form, and settlement collects it.
    for c in ledger.claims().unwrap() {
        assert!(c.voucher.is_canonical(), "stored as sent: {:?}", c.voucher);
    }
    let settler = Settler::new(ledger.clone(), escrow.clone());
    let report = settler.settle_once().await.unwrap();
    assert_eq!(report.skipped, 0, "{report:?}");
    for (payer, form) in payers {
        let ch = escrow.channel(payer, provider).await.unwrap();
        assert_eq!(
            ch.redeemed,
            U256::from(3u64),
            "{form}: three calls of one base unit are collected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_receipts_are_the_operators_and_altered_ones_are_refused() {
    let anvil = Anvil::spawn().expect("anvil (run scripts/setup and . scripts/env.sh)");
    let (_deployer, d) = dev_network(&anvil, parse_usdc("1000").unwrap())
        .await
        .expect("dev network");
    let provider_key = dev_signer(2);
    let provider = provider_key.address();
    let payer_key = dev_signer(1);
    let provider_chain = Chain::connect(&anvil.endpoint(), Some(provider_key))
        .await
        .unwrap();
    let reader = Chain::connect(&anvil.endpoint(), None).await.unwrap();
    dev_channel(
        &anvil,
        &d,
        1,
        provider,
        parse_usdc("1").unwrap(),
        parse_usdc("1").unwrap(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("ledger.db")).unwrap());
    let pricing = Pricing {
        per_request: 1_000_000,
        per_ms: 0,
        per_mb_out: 0,
    };
    let gate = |chain: &Chain| {
        Gate::new(
            ledger.clone(),
            EscrowClient::new(chain, d.escrow),
            provider,
            pricing,
            Duration::from_secs(5),
        )
    };
    let (gate, unsigned_gate) = (gate(&provider_chain), gate(&reader));
    let header = khachapuri_payments::encode_payment(
        &Voucher {
            payer: payer_key.address(),
            provider,
            epoch: 0,
            amount: U256::from(10u64),
        }
        .sign(&payer_key, d.chain_id, d.escrow)
        .unwrap(),
    );
    let key = ChannelKey {
        chain_id: d.chain_id,
        escrow: d.escrow,
        provider,
        payer: payer_key.address(),
    };
    let mut record = ChannelRecord::new(0);
    for n in 1..=3u64 {
        let res = gate
            .admit(Some(&header), U256::from(1_000_000u64))
            .await
            .unwrap();
        let receipt = gate
            .charge_signed(res, Usage::default(), &format!("call-{n}"))
            .await
            .unwrap();
        // What travels in the header is what the payer checks.
        let receipt = Receipt::parse(&receipt.encode()).unwrap();
        assert_eq!(receipt.consumed, U256::from(n * 1_000_000));
        record
            .take_signed_receipt(&receipt, &format!("call-{n}"), &key)
            .unwrap();
        assert_eq!(record.signed_consumed, receipt.consumed);

        // An altered copy (a lower consumed figure, the receipt of another call, another
        // provider's key) is refused and leaves the record as it was.
        let before = record.clone();
        let mut altered = receipt;
        altered.consumed = U256::from(1u64);
        let refused = |r: Result<(), PaymentError>| matches!(r, Err(PaymentError::BadReceipt(_)));
        assert!(refused(record.take_signed_receipt(
            &altered,
            &format!("call-{n}"),
            &key
        )));
        assert!(refused(record.take_signed_receipt(
            &receipt,
            "another-call",
            &key
        )));
        let mut elsewhere = key;
        elsewhere.provider = dev_signer(3).address();
        assert!(refused(record.take_signed_receipt(
            &receipt,
            &format!("call-{n}"),
            &elsewhere
        )));
        assert_eq!(record, before);
    }
    // A node without the operator key cannot sign (and says so).
    let res = unsigned_gate
        .admit(Some(&header), U256::from(1_000_000u64))
        .await
        .unwrap();
    assert!(matches!(
        unsigned_gate
            .charge_signed(res, Usage::default(), "x")
            .await,
        Err(PaymentError::CannotSign)
    ));
}
