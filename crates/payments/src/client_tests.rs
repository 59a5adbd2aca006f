#![allow(clippy::unwrap_used, clippy::expect_used)]

use khachapuri_devnet::dev_signer;
use proptest::prelude::*;

use super::*;
use crate::payer_store::{ChannelKey, PayerStore};
use crate::payment::decode_payment;
use crate::pricing::MICRO_PER_BASE;

const CHAIN: u64 = 31337;
const ESCROW: Address = Address::repeat_byte(0xEE);
const PROVIDER: Address = Address::repeat_byte(0x22);

fn u(n: u64) -> U256 {
    U256::from(n)
}

fn payer(prepay: u64, max_price: Option<u64>) -> Payer {
    Payer::new(
        dev_signer(1),
        CHAIN,
        ESCROW,
        PayPolicy {
            prepay: u(prepay),
            max_price: max_price.map(u),
        },
    )
}

fn channel(epoch: u64, funds: u64) -> ChannelState {
    ChannelState {
        funds: u(funds),
        redeemed: U256::ZERO,
        epoch,
        unlock_at: 0,
    }
}

fn body(price: u64) -> PaymentRequired {
    PaymentRequired {
        price: u(price),
        provider: PROVIDER,
        escrow: ESCROW,
        chain_id: CHAIN,
        epoch: None,
        consumed: None,
        authorized: None,
        funds: None,
    }
}

#[test]
fn parses_the_gate_402_body() {
    let json = serde_json::json!({
        "error": "payment required",
        "price": "1200000",
        "price_unit": "micro base units (1e-6 of a token base unit)",
        "pricing": {"per_request": "100000", "per_ms": "1000", "per_mb_out": "1000000"},
        "provider": PROVIDER.to_string(),
        "escrow": ESCROW.to_string(),
        "chain_id": CHAIN,
        "epoch": 2,
        "funds": "1000000",
        "consumed": "816000",
        "authorized": "10000000",
    });
    let b = PaymentRequired::parse(json.to_string().as_bytes()).unwrap();
    assert_eq!(b.price, u(1_200_000));
    assert_eq!(
        (b.provider, b.escrow, b.chain_id),
        (PROVIDER, ESCROW, CHAIN)
    );
    assert_eq!(b.epoch, Some(2));
    assert_eq!(b.consumed, Some(u(816_000)));
    assert_eq!(b.authorized, Some(u(10_000_000)));
    assert_eq!(b.funds, Some(u(1_000_000)));
    // Without a known payer the channel fields are absent.
    let mut short = json.clone();
    for k in ["epoch", "funds", "consumed", "authorized"] {
        short.as_object_mut().unwrap().remove(k);
    }
    let b = PaymentRequired::parse(short.to_string().as_bytes()).unwrap();
    assert_eq!((b.epoch, b.consumed), (None, None));
    for bad in [
        "not json".to_string(),
        "{}".to_string(),
        serde_json::json!({"price": "-1", "provider": PROVIDER.to_string(), "escrow": ESCROW.to_string(), "chain_id": 1}).to_string(),
        serde_json::json!({"price": "1", "provider": "nope", "escrow": ESCROW.to_string(), "chain_id": 1}).to_string(),
    ] {
        assert!(
            matches!(
                PaymentRequired::parse(bad.as_bytes()),
                Err(PaymentError::MalformedPaymentRequired(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn refuses_foreign_networks_providers_and_prices() {
    let p = payer(100_000, Some(5_000_000));
    let ch = channel(0, 1_000_000);
    let mut b = body(1_000);
    b.chain_id = 1;
    assert!(matches!(
        p.pay(&b, &ch, None, "c", None),
        Err(PaymentError::UnknownEscrow { chain_id: 1, .. })
    ));
    let mut b = body(1_000);
    b.escrow = Address::repeat_byte(1);
    assert!(matches!(
        p.pay(&b, &ch, None, "c", None),
        Err(PaymentError::UnknownEscrow { .. })
    ));
    assert!(matches!(
        p.pay(&body(1_000), &ch, None, "c", Some(Address::repeat_byte(3))),
        Err(PaymentError::WrongProvider { .. })
    ));
    assert!(matches!(
        p.pay(&body(5_000_001), &ch, None, "c", None),
        Err(PaymentError::PriceTooHigh { .. })
    ));
    let mut unlocking = ch;
    unlocking.unlock_at = 99;
    assert!(matches!(
        p.pay(&body(1_000), &unlocking, None, "c", None),
        Err(PaymentError::ChannelUnlocking { unlock_at: 99 })
    ));
    assert_eq!(p.signatures(), 0, "nothing was signed");
    // Exactly the max price is fine.
    assert!(p.pay(&body(5_000_000), &ch, None, "c", None).is_ok());
}

#[test]
fn signs_ahead_for_the_prepaid_amount_and_caps_at_funds() {
    let p = payer(100_000, None); // 0.1 USDC
    let pay = p
        .pay(&body(2_000_000), &channel(3, 1_000_000), None, "c", None)
        .unwrap();
    assert!(pay.signed);
    let v = decode_payment(&pay.header).unwrap();
    v.verify(CHAIN, ESCROW).unwrap();
    assert_eq!(v.voucher.amount, u(100_000));
    assert_eq!((v.voucher.epoch, v.voucher.provider), (3, PROVIDER));
    assert_eq!(pay.record.epoch, 3);
    assert_eq!(pay.record.quotes.get("c"), Some(&u(2_000_000)));
    // A channel holding less than the prepaid amount caps the voucher.
    let pay = p
        .pay(&body(2_000_000), &channel(3, 40_000), None, "c", None)
        .unwrap();
    assert_eq!(pay.record.signed(), u(40_000));
    // One that cannot even cover the call is a typed error saying how much is needed.
    let err = p
        .pay(
            &body(50_000 * MICRO_PER_BASE),
            &channel(3, 40_000),
            None,
            "c",
            None,
        )
        .unwrap_err();
    match err {
        PaymentError::ChannelShort {
            provider,
            needed,
            funds,
        } => {
            assert_eq!(provider, PROVIDER);
            assert_eq!(needed, u(100_000));
            assert_eq!(funds, u(40_000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn provider_claims_are_bounded_and_new_epochs_reset() {
    let p = payer(100_000, None);
    let first = p
        .pay(&body(1_000), &channel(0, 10_000_000), None, "c", None)
        .unwrap();
    assert_eq!(first.record.signed(), u(100_000));
    // The provider holds our voucher and claims it consumed far more than we ever signed.
    let mut lie = body(1_000);
    lie.epoch = Some(0);
    lie.consumed = Some(u(9_000_000 * MICRO_PER_BASE));
    lie.authorized = Some(u(100_000 * MICRO_PER_BASE));
    let second = p
        .pay(
            &lie,
            &channel(0, 10_000_000),
            Some(first.record.clone()),
            "c",
            None,
        )
        .unwrap();
    // Consumption is capped at what we signed: the new voucher is one prepay higher.
    assert_eq!(second.record.consumed, u(100_000 * MICRO_PER_BASE));
    assert_eq!(second.record.signed(), u(200_000));
    // A reclaim bumped the epoch: a fresh record, amounts restart.
    let third = p
        .pay(
            &body(1_000),
            &channel(1, 10_000_000),
            Some(second.record),
            "c",
            None,
        )
        .unwrap();
    assert_eq!(third.record.epoch, 1);
    assert_eq!(third.record.consumed, U256::ZERO);
    assert_eq!(third.record.signed(), u(100_000));
    assert_eq!(
        decode_payment(&third.header).unwrap().voucher.epoch,
        1,
        "the voucher is for the new epoch"
    );
}

#[test]
fn stored_voucher_is_reused_when_it_covers_the_call() {
    let p = payer(100_000, Some(2_000));
    assert!(p.ahead(None, "c").is_none());
    let first = p
        .pay(&body(1_000), &channel(0, 1_000_000), None, "c", None)
        .unwrap();
    assert_eq!(p.signatures(), 1);
    // With a max price, a voucher goes ahead only to targets with a known quote within it.
    assert!(p.ahead(Some(&first.record), "c").is_some());
    assert!(p.ahead(Some(&first.record), "other").is_none());
    let mut pricier = first.record.clone();
    pricier.quotes.insert("c".into(), u(3_000));
    assert!(p.ahead(Some(&pricier), "c").is_none());
    // A 402 for "other" (sent unpaid to learn its price) reuses the stored voucher.
    let again = p
        .pay(
            &body(1_500),
            &channel(0, 1_000_000),
            Some(first.record.clone()),
            "other",
            None,
        )
        .unwrap();
    assert!(!again.signed);
    assert_eq!(again.header, first.header);
    assert_eq!(p.signatures(), 1);
    // Without a max price the stored voucher always goes ahead.
    assert_eq!(
        payer(100_000, None).ahead(Some(&first.record), "x"),
        Some(first.header)
    );
}

#[test]
fn receipts_trigger_resigning_at_the_low_water_mark() {
    let p = payer(100_000, Some(10_000_000)); // prepay 0.1 USDC = 1e11 micro
    let mut rec = p
        .pay(&body(1_000_000), &channel(0, 10_000_000), None, "c", None)
        .unwrap()
        .record;
    let prepay = base_to_micro(u(100_000));
    let receipt = |consumed: U256| Receipt {
        cost: u(1_000_000),
        consumed,
        authorized: prepay,
        proof: None,
        sponsored: false,
    };
    // Half the prepaid part left: still fine.
    assert!(!p
        .on_receipt(&receipt(prepay / u(2)), &mut rec, PROVIDER)
        .unwrap());
    assert_eq!(rec.signed(), u(100_000));
    // Below half: a new voucher for consumed + prepay, signed ahead.
    let consumed = prepay / u(2) + u(1);
    assert!(p
        .on_receipt(&receipt(consumed), &mut rec, PROVIDER)
        .unwrap());
    assert_eq!(rec.signed(), micro_to_base_ceil(consumed + prepay));
    assert_eq!(rec.consumed, consumed);
    // A cost above the max price is reported after the fact, the record still updated.
    let mut dear = receipt(consumed + u(20_000_000));
    dear.cost = u(20_000_000);
    assert!(matches!(
        p.on_receipt(&dear, &mut rec, PROVIDER),
        Err(PaymentError::PriceTooHigh { .. })
    ));
    assert_eq!(rec.consumed, consumed + u(20_000_000));
}

#[test]
fn store_round_trips_and_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = PayerStore::new(dir.path().join("sub").join("vouchers.json"));
    let p = payer(100_000, None);
    let key = ChannelKey {
        chain_id: CHAIN,
        escrow: ESCROW,
        provider: PROVIDER,
        payer: p.address(),
    };
    assert_eq!(store.load(&key).unwrap(), None);
    let rec = p
        .pay(&body(1_000), &channel(4, 1_000_000), None, "bafy", None)
        .unwrap()
        .record;
    store.save(&key, &rec).unwrap();
    assert_eq!(store.load(&key).unwrap(), Some(rec.clone()));
    #[cfg(unix)]
    {
        // Signed vouchers are money: owner-only from creation.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Other chains, escrows and providers are other channels.
    for other in [
        ChannelKey { chain_id: 1, ..key },
        ChannelKey {
            escrow: Address::repeat_byte(1),
            ..key
        },
        ChannelKey {
            provider: Address::repeat_byte(1),
            ..key
        },
    ] {
        assert_eq!(store.load(&other).unwrap(), None);
    }
    store
        .remember_endpoint("http://127.0.0.1:1", PROVIDER)
        .unwrap();
    assert_eq!(
        store.provider_at("http://127.0.0.1:1").unwrap(),
        Some(PROVIDER)
    );
    assert_eq!(store.load(&key).unwrap(), Some(rec), "other data survives");
    // Only the state file is left (no temp files), and it is readable JSON.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vouchers.json")]);
    let text = std::fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\"consumed\": \"0\""), "{text}");
    // A corrupt or newer file is an error, never silently reset.
    std::fs::write(store.path(), "{").unwrap();
    assert!(matches!(store.load(&key), Err(PaymentError::State { .. })));
    std::fs::write(store.path(), r#"{"version": 9}"#).unwrap();
    assert!(matches!(store.load(&key), Err(PaymentError::State { .. })));
}

/// A provider reduced to the ledger rule: admit when `authorized - consumed >= price`.
struct ModelProvider {
    best: U256,
    consumed: U256,
}

proptest! {
    #[test]
    fn decide_invariants(
        prepay in 0u64..10_000_000,
        consumed in 0u64..(u64::MAX / 4),
        price in 0u64..(u64::MAX / 4),
        current in 0u64..20_000_000,
        funds in 0u64..20_000_000,
    ) {
        let policy = PayPolicy { prepay: u(prepay), max_price: None };
        let (consumed, price, current, funds) = (u(consumed), u(price), u(current), u(funds));
        let credit = base_to_micro(current).saturating_sub(consumed);
        match policy.decide(consumed, price, current, funds) {
            Decision::Keep => prop_assert!(credit >= price),
            Decision::Sign(amount) => {
                prop_assert!(amount > current);
                prop_assert!(amount <= funds);
                prop_assert!(base_to_micro(amount) - consumed >= price);
                // Never more than one prepaid amount (or one price) ahead, plus rounding.
                prop_assert!(base_to_micro(amount) <= policy.target(consumed, price) + u(MICRO_PER_BASE));
            }
            Decision::Short { needed } => {
                prop_assert!(credit < price);
                prop_assert!(needed > funds || base_to_micro(funds).saturating_sub(consumed) < price);
            }
        }
    }

    #[test]
    fn few_signatures_for_many_calls(
        prepay in 1_000u64..1_000_000,
        costs in proptest::collection::vec(0u64..1_000, 1..200),
        price_frac in 1u64..4,
    ) {
        // Price (max cost) at most a quarter of the prepaid part; actual costs below it.
        let prepay_micro = prepay * MICRO_PER_BASE;
        let price = prepay_micro / 4 / price_frac;
        let p = payer(prepay, None);
        let ch = channel(0, u64::MAX);
        let mut model = ModelProvider { best: U256::ZERO, consumed: U256::ZERO };
        let mut record: Option<ChannelRecord> = None;
        let mut total = U256::ZERO;
        for c in &costs {
            let cost = u(price * c / 1_000);
            if let Some(header) = p.ahead(record.as_ref(), "c") {
                let v = decode_payment(&header).unwrap();
                model.best = model.best.max(base_to_micro(v.voucher.amount));
            }
            if model.best - model.consumed < u(price) {
                let mut b = body(price);
                b.epoch = Some(0);
                b.consumed = Some(model.consumed);
                b.authorized = Some(model.best);
                let pay = p.pay(&b, &ch, record.take(), "c", None).unwrap();
                model.best = model.best.max(base_to_micro(decode_payment(&pay.header).unwrap().voucher.amount));
                record = Some(pay.record);
                prop_assert!(model.best - model.consumed >= u(price), "a paid retry is admitted");
            }
            model.consumed += cost;
            total += cost;
            let rec = record.as_mut().unwrap();
            p.on_receipt(&Receipt { cost, consumed: model.consumed, authorized: model.best, proof: None, sponsored: false }, rec, PROVIDER).unwrap();
            prop_assert!(model.consumed <= base_to_micro(rec.signed()));
        }
        // One signature per half prepaid amount consumed, plus the first.
        let bound = total / u(prepay_micro / 2) + u(2);
        prop_assert!(u(p.signatures()) <= bound, "{} signatures for {} micro (bound {})", p.signatures(), total, bound);
    }

    #[test]
    fn record_round_trips(epoch in any::<u64>(), consumed in any::<u128>(), funds in any::<u128>(), price in any::<u128>(), amount in any::<u64>(), quotes in proptest::collection::btree_map("[a-z0-9]{1,12}", any::<u128>(), 0..5)) {
        let p = payer(1, None);
        let mut rec = ChannelRecord::new(epoch);
        rec.consumed = U256::from(consumed);
        rec.funds = U256::from(funds);
        rec.price = U256::from(price);
        rec.quotes = quotes.into_iter().map(|(k, v)| (k, U256::from(v))).collect();
        rec.voucher = Some(p.sign(PROVIDER, epoch, u(amount)).unwrap());
        let json = serde_json::to_string(&rec).unwrap();
        let back: ChannelRecord = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, rec);
    }
}

#[test]
fn the_store_lock_serialises_read_modify_write_across_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vouchers.json");
    let key = ChannelKey {
        chain_id: CHAIN,
        escrow: ESCROW,
        provider: PROVIDER,
        payer: Address::repeat_byte(9),
    };
    PayerStore::new(&path)
        .save(&key, &ChannelRecord::new(0))
        .unwrap();
    // Four "processes" (separate handles and file descriptors) each add 1 to `consumed`
    // 25 times; every increment survives only if load..save is exclusive.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = PayerStore::new(&path);
                for _ in 0..25 {
                    let _held = store.lock().unwrap();
                    let mut rec = store.load(&key).unwrap().unwrap();
                    rec.consumed += U256::from(1);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    store.save(&key, &rec).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let rec = PayerStore::new(&path).load(&key).unwrap().unwrap();
    assert_eq!(rec.consumed, U256::from(100));
}
