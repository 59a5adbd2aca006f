//! The `Khachapuri-Receipt` header comes from any provider the client calls, and the
//! `Khachapuri-Sign-Receipt` request id from any caller: parsing must never panic, and
//! a parsed receipt re-encodes to a header that parses to the same receipt.
#![no_main]
use khachapuri_payments::{check_request_id, Receipt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = Receipt::parse(text) {
        assert_eq!(Receipt::parse(&r.encode()).ok(), Some(r));
    }
    let _ = check_request_id(text);
});
