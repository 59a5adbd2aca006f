//! The body of a `402 Payment Required` comes from whatever provider the client called:
//! `PaymentRequired::parse` must never panic on it, whatever the bytes.
#![no_main]
use khachapuri_payments::PaymentRequired;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PaymentRequired::parse(data);
});
