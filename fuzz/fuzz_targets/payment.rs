//! The `Khachapuri-Payment` header parser takes bytes from any caller: it must never
//! panic, and what decodes re-encodes to the same voucher. (The `Khachapuri-Receipt`
//! parser has its own target, `receipt`.)
#![no_main]
use khachapuri_payments::{decode_payment, encode_payment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = decode_payment(text) {
        assert_eq!(decode_payment(&encode_payment(&v)).ok(), Some(v));
    }
});
