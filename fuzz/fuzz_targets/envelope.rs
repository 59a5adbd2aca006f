//! Envelopes and specs arrive by CID from any gateway: parsing must never panic, and a
//! parsed envelope re-encodes to bytes that parse to the same envelope.
#![no_main]
use khachapuri_types::{Envelope, Spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_slice(data) {
        assert_eq!(Envelope::from_slice(&env.to_bytes()).ok(), Some(env));
    }
    if let Ok(spec) = Spec::from_slice(data) {
        let _ = spec.validate();
        let _ = spec.hash();
    }
});
