//! `Evidence::from_bytes` of arbitrary bytes, then `verify` of whatever decodes under a
//! policy that accepts every kind. Must never panic; what decodes must re-encode to the
//! same bytes; random bytes must never verify as TEE or test evidence.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use khachapuri_attest::{verify, Binding, Evidence, Policy, TeeKind, TestRoot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ev) = Evidence::from_bytes(data) else {
        return;
    };
    assert_eq!(ev.to_bytes(), data);
    let expected = Binding {
        peer_id: vec![1, 2, 3],
        operator: [1; 20],
        x25519: [2; 32],
        nonce: [3; 32],
        chain_id: 1,
        escrow: [4; 20],
    };
    // A fixed point that is on the curve (the secp256k1 generator), as a test root.
    let mut g = [0u8; 33];
    g[0] = 0x02;
    g[1..].copy_from_slice(&[
        0x79, 0xBE, 0x66, 0x7E, 0xF9, 0xDC, 0xBB, 0xAC, 0x55, 0xA0, 0x62, 0x95, 0xCE, 0x87,
        0x0B, 0x07, 0x02, 0x9B, 0xFC, 0xDB, 0x2D, 0xCE, 0x28, 0xD9, 0x59, 0xF2, 0x81, 0x5B,
        0x16, 0xF8, 0x17, 0x98,
    ]);
    let policy = Policy {
        require_tee: false,
        accepted_kinds: vec![TeeKind::SevSnp, TeeKind::Tdx, TeeKind::Sgx],
        accepted_measurements: Vec::new(),
        allow_test_root: Some(TestRoot(g)),
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_750_809_600);
    if let Ok(v) = verify(&ev, &expected, &policy, now) {
        assert_eq!(v.kind, TeeKind::None);
    }
});
