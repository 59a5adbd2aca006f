//! The `Khachapuri-Payment` and `Khachapuri-Receipt` header parsers take bytes from any
//! caller: they must never panic, and what decodes re-encodes to the same voucher.
#![no_main]
use khachapuri_payments::{decode_payment, encode_payment, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = decode_payment(text) {
        assert_eq!(decode_payment(&encode_payment(&v)).ok(), Some(v));
    }
    if let Ok(r) = Receipt::parse(text) {
        assert_eq!(Receipt::parse(&r.encode()).ok(), Some(r));
    }
});
