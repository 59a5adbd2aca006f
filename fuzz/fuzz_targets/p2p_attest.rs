//! `/khachapuri/attest/1` frames come from any peer: decoding never panics, never reads
//! past the cap, and a decoded message re-encodes to one that decodes the same; a
//! response is then checked as a publisher would, which must refuse or accept, not panic.
#![no_main]
use khachapuri_attest::{Policy, TeeKind};
use khachapuri_p2p::codec::{decode_frame, encode_frame};
use khachapuri_p2p::messages::{AttestRequest, AttestResponse};
use khachapuri_p2p::protocol::ATTEST_LIMITS;
use khachapuri_p2p::publisher::check_attestation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_frame::<AttestRequest>(data, ATTEST_LIMITS.request) {
        assert_eq!(decode_frame::<AttestRequest>(&encode_frame(&m), ATTEST_LIMITS.request).ok(), Some(m));
    }
    if let Ok(m) = decode_frame::<AttestResponse>(data, ATTEST_LIMITS.response) {
        assert_eq!(
            decode_frame::<AttestResponse>(&encode_frame(&m), ATTEST_LIMITS.response).ok(),
            Some(m.clone())
        );
        let policy = Policy {
            require_tee: false,
            accepted_kinds: vec![TeeKind::SevSnp, TeeKind::Tdx, TeeKind::Sgx, TeeKind::Test],
            accepted_measurements: Vec::new(),
            allow_test_root: None,
        };
        let peer = khachapuri_p2p::PeerId::from_bytes(&[0, 2, 8, 1]).ok();
        if let Some(peer) = peer {
            let _ = check_attestation(peer, [0; 32], &m, &policy, std::time::SystemTime::now());
        }
    }
});
