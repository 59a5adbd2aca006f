#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use khachapuri_chain::Voucher;
use khachapuri_devnet::dev_signer;

use super::*;
use crate::pricing::base_to_micro;

const ESCROW: Address = Address::repeat_byte(0xEE);

fn provider() -> Address {
    Address::repeat_byte(0x22)
}

fn voucher(payer_index: usize, epoch: u64, amount: u64) -> SignedVoucher {
    let s = dev_signer(payer_index);
    Voucher {
        payer: s.address(),
        provider: provider(),
        epoch,
        amount: U256::from(amount),
    }
    .sign(&s, 31337, ESCROW)
    .unwrap()
}

fn micro(base: u64) -> U256 {
    base_to_micro(U256::from(base))
}

#[test]
fn survives_an_unclean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let v = voucher(1, 0, 500);
    {
        let ledger = Ledger::open(&path).unwrap();
        assert!(ledger.record_voucher(&v).unwrap());
        let res = ledger
            .try_consume(v.voucher.payer, 0, U256::from(1234))
            .unwrap();
        ledger.settle_reservation(res, U256::from(1000)).unwrap();
        // No clean close: the connection is leaked, WAL never checkpointed.
        std::mem::forget(ledger);
    }
    let ledger = Ledger::open(&path).unwrap();
    let row = ledger.channel(v.voucher.payer, 0).unwrap().expect("row");
    assert_eq!(row.best, v);
    assert_eq!(row.consumed, U256::from(1000));
    assert_eq!(row.reserved, U256::ZERO);
    // 1000 micro-units consumed: the claim is one whole base unit, not the 500 prepaid.
    assert_eq!(ledger.claims().unwrap(), vec![Claim::new(v, U256::from(1))]);
}

#[test]
fn keeps_only_the_best_voucher_and_replays_are_no_ops() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("l.db")).unwrap();
    let v100 = voucher(1, 0, 100);
    let v200 = voucher(1, 0, 200);
    assert!(ledger.record_voucher(&v100).unwrap());
    assert!(!ledger.record_voucher(&v100).unwrap(), "replay");
    assert!(ledger.record_voucher(&v200).unwrap());
    assert!(!ledger.record_voucher(&v100).unwrap(), "older, lower");
    assert!(!ledger.record_voucher(&v200).unwrap(), "replay of best");
    let payer = v200.voucher.payer;
    assert_eq!(ledger.channel(payer, 0).unwrap().unwrap().best, v200);
    // Another epoch is another channel.
    assert!(ledger.record_voucher(&voucher(1, 1, 5)).unwrap());
    assert_eq!(
        ledger
            .channel(payer, 0)
            .unwrap()
            .unwrap()
            .best
            .voucher
            .amount,
        U256::from(200)
    );
    assert!(ledger.channel(payer, 2).unwrap().is_none());
}

#[test]
fn never_consumes_beyond_the_best_voucher() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("l.db")).unwrap();
    let v = voucher(2, 3, 10); // 10 base units = 10_000_000 micro
    let payer = v.voucher.payer;
    // No voucher: nothing admitted.
    assert!(matches!(
        ledger.try_consume(payer, 3, U256::from(1)),
        Err(PaymentError::InsufficientCredit { .. })
    ));
    ledger.record_voucher(&v).unwrap();
    let a = ledger.try_consume(payer, 3, micro(6)).unwrap();
    // 4 left, 5 asked: refused while `a` is in flight.
    match ledger.try_consume(payer, 3, micro(5)) {
        Err(PaymentError::InsufficientCredit { needed, available }) => {
            assert_eq!((needed, available), (micro(5), micro(4)));
        }
        other => panic!("expected InsufficientCredit, got {other:?}"),
    }
    // Charging more than reserved is capped at the reservation.
    let c = ledger.settle_reservation(a, micro(100)).unwrap();
    assert_eq!(
        (c.cost, c.consumed, c.authorized),
        (micro(6), micro(6), micro(10))
    );
    let b = ledger.try_consume(payer, 3, micro(4)).unwrap();
    let c = ledger.settle_reservation(b, micro(1)).unwrap();
    assert_eq!(c.consumed, micro(7));
    // Release without charge.
    let r = ledger.try_consume(payer, 3, micro(3)).unwrap();
    assert!(ledger.try_consume(payer, 3, U256::from(1)).is_err());
    assert_eq!(
        ledger.settle_reservation(r, U256::ZERO).unwrap().consumed,
        micro(7)
    );
    assert!(ledger.try_consume(payer, 3, micro(3)).is_ok());
    let row = ledger.channel(payer, 3).unwrap().unwrap();
    assert!(row.consumed <= row.authorized_micro());
    // A closed channel admits nothing.
    ledger.close(payer, 3).unwrap();
    assert!(ledger.try_consume(payer, 3, U256::from(1)).is_err());
    assert!(ledger.claims().unwrap().is_empty());
}

#[test]
fn concurrent_reservations_cannot_overspend() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path().join("l.db")).unwrap());
    let v = voucher(3, 0, 1); // 1 base unit = 1_000_000 micro
    let payer = v.voucher.payer;
    ledger.record_voucher(&v).unwrap();
    let per_call = U256::from(7_000); // 142 calls fit (994_000), the 143rd does not
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut admitted = 0u32;
                for _ in 0..40 {
                    if let Ok(res) = ledger.try_consume(payer, 0, per_call) {
                        admitted += 1;
                        ledger.settle_reservation(res, per_call).unwrap();
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 142);
    let row = ledger.channel(payer, 0).unwrap().unwrap();
    assert_eq!(row.consumed, U256::from(142 * 7_000));
    assert_eq!(row.reserved, U256::ZERO);
}

#[test]
fn claims_are_what_was_consumed_rounded_up() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("l.db")).unwrap();
    let a = voucher(1, 0, 300);
    let b = voucher(2, 0, 50);
    ledger.record_voucher(&a).unwrap();
    ledger.record_voucher(&b).unwrap();
    let res = ledger
        .try_consume(a.voucher.payer, 0, U256::from(2_500_001))
        .unwrap();
    ledger
        .settle_reservation(res, U256::from(2_500_001))
        .unwrap();
    // Only a's calls cost anything: 2.500001 base units, claimed as 3; b's prepay is not owed.
    assert_eq!(
        ledger.claims().unwrap(),
        vec![Claim::new(a.clone(), U256::from(3))]
    );
    let s = ledger.status().unwrap();
    assert_eq!(s.earned_micro, U256::from(2_500_001));
    assert_eq!(s.earned, U256::from(3));
    assert_eq!(s.authorized, U256::from(350));
    assert_eq!((s.redeemed, s.pending), (U256::ZERO, U256::from(3)));

    // Charges written behind (the hot path) are claimed too: `claims` flushes first.
    let res = ledger.try_consume(b.voucher.payer, 0, micro(20)).unwrap();
    ledger.settle_reservation_cached(&res, micro(20)).unwrap();
    let mut claims = ledger.claims().unwrap();
    claims.sort_by_key(|c| c.amount);
    assert_eq!(
        claims,
        vec![
            Claim::new(a.clone(), U256::from(3)),
            Claim::new(b.clone(), U256::from(20))
        ]
    );

    ledger
        .mark_redeemed(a.voucher.payer, 0, U256::from(3))
        .unwrap();
    ledger
        .mark_redeemed(a.voucher.payer, 0, U256::from(1))
        .unwrap(); // never lowers
    ledger
        .mark_redeemed(b.voucher.payer, 0, U256::from(5))
        .unwrap();
    assert_eq!(
        ledger.claims().unwrap(),
        vec![Claim::new(b.clone(), U256::from(20))]
    );
    let s = ledger.status().unwrap();
    assert_eq!((s.redeemed, s.pending), (U256::from(8), U256::from(15)));
    // A better voucher alone makes nothing claimable: no call consumed it.
    ledger.record_voucher(&voucher(1, 0, 400)).unwrap();
    assert_eq!(ledger.claims().unwrap().len(), 1);
    // The claim never exceeds the voucher, whatever was consumed.
    assert_eq!(claimable(&b, micro(1_000)), U256::from(50));
    assert_eq!(claimable(&b, U256::from(1)), U256::from(1));
    assert_eq!(claimable(&b, U256::ZERO), U256::ZERO);
}

#[test]
fn a_better_voucher_keeps_calls_in_flight_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("l.db")).unwrap();
    let payer = dev_signer(4).address();
    ledger.record_voucher(&voucher(4, 0, 1)).unwrap();
    let a = ledger.try_consume(payer, 0, micro(1)).unwrap();
    assert!(ledger.record_voucher(&voucher(4, 0, 2)).unwrap());
    let row = ledger.channel(payer, 0).unwrap().unwrap();
    assert_eq!((row.reserved, row.available()), (micro(1), micro(1)));
    assert!(ledger
        .try_consume(payer, 0, micro(1) + U256::from(1))
        .is_err());
    let b = ledger.try_consume(payer, 0, micro(1)).unwrap();
    ledger.settle_reservation(a, micro(1)).unwrap();
    let c = ledger.settle_reservation(b, micro(1)).unwrap();
    assert_eq!(c.consumed, micro(2));
    // What is cached is what is stored.
    drop(ledger);
    let ledger = Ledger::open(dir.path().join("l.db")).unwrap();
    let row = ledger.channel(payer, 0).unwrap().unwrap();
    assert_eq!((row.consumed, row.reserved), (micro(2), U256::ZERO));
    assert_eq!(row.best.voucher.amount, U256::from(2));
}

#[test]
fn known_voucher_admits_from_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path().join("ledger.db")).unwrap();
    let v = voucher(1, 0, 10);
    let payer = v.voucher.payer;
    // Not in memory yet: the slow path.
    assert!(ledger.try_consume_known(&v, micro(1), || Ok(())).is_none());
    ledger.record_voucher(&v).unwrap();
    ledger.channel(payer, 0).unwrap();
    let res = ledger
        .try_consume_known(&v, micro(4), || Ok(()))
        .expect("cached")
        .unwrap();
    assert_eq!(
        ledger.channel(payer, 0).unwrap().unwrap().reserved,
        micro(4)
    );
    // Another (older, lower) voucher of the same channel is not the best: slow path.
    assert!(ledger
        .try_consume_known(&voucher(1, 0, 5), micro(1), || Ok(()))
        .is_none());
    // The check runs and its error is the answer; nothing is held then.
    let refused = ledger
        .try_consume_known(&v, micro(1), || Err(PaymentError::PaymentRequired))
        .unwrap();
    assert!(matches!(refused, Err(PaymentError::PaymentRequired)));
    // Not enough left besides the 4 held: refused with what is available.
    match ledger.try_consume_known(&v, micro(7), || Ok(())).unwrap() {
        Err(PaymentError::InsufficientCredit { available, .. }) => {
            assert_eq!(available, micro(6));
        }
        other => panic!("expected InsufficientCredit, got {other:?}"),
    }
    ledger.settle_reservation(res, micro(3)).unwrap();
    let row = ledger.channel(payer, 0).unwrap().unwrap();
    assert_eq!((row.consumed, row.reserved), (micro(3), U256::ZERO));
    // A closed channel admits nothing.
    ledger.close(payer, 0).unwrap();
    assert!(matches!(
        ledger.try_consume_known(&v, U256::from(1), || Ok(())),
        Some(Err(PaymentError::InsufficientCredit { .. }))
    ));
}

#[test]
fn memory_charges_reach_disk_on_flush_and_a_crash_forgets_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let v = voucher(1, 0, 500);
    let payer = v.voucher.payer;
    let ledger = Ledger::open(&path).unwrap();
    ledger.record_voucher(&v).unwrap();
    // First charge through the blocking path: on disk at once.
    let res = ledger.try_consume(payer, 0, micro(10)).unwrap();
    ledger.settle_reservation(res, micro(1)).unwrap();
    // Then two charges in memory only.
    for _ in 0..2 {
        let res = ledger.try_consume(payer, 0, micro(10)).unwrap();
        let charge = ledger
            .settle_reservation_cached(&res, micro(2))
            .expect("cached row");
        assert_eq!(charge.cost, micro(2));
    }
    let row = ledger.channel(payer, 0).unwrap().unwrap();
    assert_eq!((row.consumed, row.reserved), (micro(5), U256::ZERO));
    {
        // Another process (e.g. `provider status` before a flush) sees the last flush.
        let other = Ledger::open(&path).unwrap();
        assert_eq!(other.channel(payer, 0).unwrap().unwrap().consumed, micro(1));
        std::mem::forget(other);
    }
    assert_eq!(ledger.flush().unwrap(), 1);
    assert_eq!(ledger.flush().unwrap(), 0, "nothing left to write");
    // One more charge in memory, then a crash (no drop, no flush): the voucher and the
    // flushed charges survive; only the unflushed charge is forgotten.
    let res = ledger.try_consume(payer, 0, micro(10)).unwrap();
    ledger.settle_reservation_cached(&res, micro(3)).unwrap();
    std::mem::forget(ledger);
    let reopened = Ledger::open(&path).unwrap();
    let row = reopened.channel(payer, 0).unwrap().unwrap();
    assert_eq!(row.best, v);
    assert_eq!(row.consumed, micro(5));
    assert_eq!(
        reopened.claims().unwrap(),
        vec![Claim::new(v, U256::from(5))]
    );
    // A clean drop flushes.
    let res = reopened.try_consume(payer, 0, micro(10)).unwrap();
    reopened.settle_reservation_cached(&res, micro(4)).unwrap();
    drop(reopened);
    let again = Ledger::open(&path).unwrap();
    assert_eq!(again.channel(payer, 0).unwrap().unwrap().consumed, micro(9));
}

#[test]
fn hot_path_charges_race_flushes_and_slow_charges_without_losing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let v = voucher(2, 0, 1_000_000);
    let (payer, calls_per_thread) = (v.voucher.payer, 300u64);
    {
        let ledger = Arc::new(Ledger::open(&path).unwrap());
        ledger.record_voucher(&v).unwrap();
        // Load the row into memory, as the first (slow-path) call does.
        ledger.channel(payer, 0).unwrap().unwrap();
        let mut threads = Vec::new();
        for t in 0..4u64 {
            let (ledger, v) = (Arc::clone(&ledger), v.clone());
            threads.push(std::thread::spawn(move || {
                for n in 0..calls_per_thread {
                    let res = ledger
                        .try_consume_known(&v, U256::from(50), || Ok(()))
                        .expect("row is in memory")
                        .unwrap();
                    // Thread 0 charges through the blocking path, the others in memory.
                    if t == 0 {
                        ledger.settle_reservation(res, U256::from(7)).unwrap();
                    } else {
                        ledger
                            .settle_reservation_cached(&res, U256::from(7))
                            .unwrap();
                    }
                    if n % 50 == 0 {
                        ledger.flush().unwrap();
                    }
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let row = ledger.channel(payer, 0).unwrap().unwrap();
        assert_eq!(row.consumed, U256::from(4 * calls_per_thread * 7));
        assert_eq!(row.reserved, U256::ZERO);
        ledger.flush().unwrap();
        // Not dropped gracefully: what is on disk is what the flushes wrote.
        std::mem::forget(Arc::try_unwrap(ledger).ok().unwrap());
    }
    let reopened = Ledger::open(&path).unwrap();
    let row = reopened.channel(payer, 0).unwrap().unwrap();
    assert_eq!(row.consumed, U256::from(4 * calls_per_thread * 7));
}

#[test]
fn latest_open_epoch_finds_top_ups_of_a_newer_epoch_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let payer = voucher(3, 0, 1).voucher.payer;
    {
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.latest_open_epoch(payer).unwrap(), None);
        ledger.record_voucher(&voucher(3, 0, 100)).unwrap();
        ledger.record_voucher(&voucher(3, 2, 50)).unwrap();
        ledger.record_voucher(&voucher(4, 7, 50)).unwrap();
    }
    let ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.latest_open_epoch(payer).unwrap(), Some(2));
    ledger.close(payer, 2).unwrap();
    assert_eq!(ledger.latest_open_epoch(payer).unwrap(), Some(0));
}
