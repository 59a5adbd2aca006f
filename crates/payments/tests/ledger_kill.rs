//! kill -9 durability: a child process records ever better vouchers and charges calls,
//! acknowledging each one on stdout only after the ledger returned; the parent SIGKILLs it
//! mid-stream and reopens the ledger: every acknowledged voucher and charge is there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use khachapuri_chain::{Address, Voucher, U256};
use khachapuri_devnet::dev_signer;
use khachapuri_payments::Ledger;

const CHILD_ENV: &str = "KHACHAPURI_LEDGER_KILL_CHILD";
const PER_CALL: u64 = 1_000; // micro-units charged per call

/// Runs only as the child: writes until killed.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let ledger = Ledger::open(&path).unwrap();
    let key = dev_signer(1);
    let mut out = std::io::stdout().lock();
    for i in 1..=1_000_000u64 {
        let v = Voucher {
            payer: key.address(),
            provider: Address::repeat_byte(2),
            epoch: 0,
            amount: U256::from(i),
        }
        .sign(&key, 31337, Address::repeat_byte(0xEE))
        .unwrap();
        assert!(ledger.record_voucher(&v).unwrap());
        let res = ledger
            .try_consume(key.address(), 0, U256::from(PER_CALL))
            .unwrap();
        ledger
            .settle_reservation(res, U256::from(PER_CALL))
            .unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn every_acknowledged_voucher_survives_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    while acked < 300 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked = n.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acks the child wrote before dying but we had not read yet count too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ack ") {
            acked = n.parse().unwrap();
        }
    }

    let ledger = Ledger::open(&path).unwrap();
    let row = ledger
        .channel(dev_signer(1).address(), 0)
        .unwrap()
        .expect("channel recorded");
    let best: u64 = row.best.voucher.amount.to();
    assert!(best >= acked, "acknowledged {acked}, ledger has {best}");
    row.best
        .verify(31337, Address::repeat_byte(0xEE))
        .expect("stored signature intact");
    assert!(row.consumed >= U256::from(acked * PER_CALL));
    assert!(
        row.consumed <= row.authorized_micro(),
        "never beyond the voucher"
    );
    // Settlement claims exactly what was consumed (rounded up), never the rest.
    let claim = khachapuri_payments::micro_to_base_ceil(row.consumed).min(row.best.voucher.amount);
    let expected = if claim.is_zero() {
        vec![]
    } else {
        vec![khachapuri_chain::Claim::new(row.best, claim)]
    };
    assert_eq!(ledger.claims().unwrap(), expected);
}
