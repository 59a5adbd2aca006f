//! Rough per-operation figures of the payment path on this machine:
//! `cargo run -p khachapuri-payments --example ledger_bench [--release]`.

use std::io::Write;
use std::time::Instant;

use khachapuri_chain::{Address, Voucher, U256};
use khachapuri_devnet::dev_signer;
use khachapuri_payments::{decode_payment, encode_payment, Ledger, VoucherVerifier};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::open(dir.path().join("ledger.db"))?;
    let key = dev_signer(1);
    let escrow = Address::repeat_byte(0xEE);
    let provider = Address::repeat_byte(2);
    let verifier = VoucherVerifier {
        chain_id: 31337,
        escrow,
        provider,
    };
    let n = 500u64;
    let vouchers: Vec<_> = (1..=n)
        .map(|i| {
            Voucher {
                payer: key.address(),
                provider,
                epoch: 0,
                amount: U256::from(i * 1_000_000),
            }
            .sign(&key, 31337, escrow)
        })
        .collect::<Result<_, _>>()?;
    let headers: Vec<String> = vouchers.iter().map(encode_payment).collect();

    let mut out = std::io::stdout().lock();
    let t = Instant::now();
    for h in &headers {
        let v = decode_payment(h)?;
        verifier.check_signature(&v)?;
    }
    let per = t.elapsed() / n as u32;
    writeln!(out, "decode + verify signature: {per:?}/voucher")?;

    let t = Instant::now();
    for v in &vouchers {
        ledger.record_voucher(v)?;
    }
    let per = t.elapsed() / n as u32;
    writeln!(out, "record improving voucher (fsync): {per:?}/voucher")?;

    let calls = 5_000u32;
    let t = Instant::now();
    for _ in 0..calls {
        ledger.channel(key.address(), 0)?;
        let res = ledger.try_consume(key.address(), 0, U256::from(1_000))?;
        ledger.settle_reservation(res, U256::from(500))?;
    }
    let per = t.elapsed() / calls;
    writeln!(
        out,
        "prepaid call (lookup + reserve + charge): {per:?}/call ({:.0} calls/s on one thread)",
        1.0 / per.as_secs_f64()
    )?;
    Ok(())
}
