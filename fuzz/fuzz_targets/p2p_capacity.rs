//! `/khachapuri/capacity/1` frames come from any peer: requests and signed offers decode
//! without panicking under their caps, re-encode stably, and a signed offer is opened as
//! a publisher would (signature, fields, expiry), refusing rather than panicking.
#![no_main]
use khachapuri_attest::{TeeKind, Verified};
use khachapuri_p2p::codec::{decode_frame, encode_frame};
use khachapuri_p2p::messages::{CapacityRequest, Signed};
use khachapuri_p2p::protocol::CAPACITY_LIMITS;
use khachapuri_p2p::publisher::{open_offer, Attested};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode_frame::<CapacityRequest>(data, CAPACITY_LIMITS.request) {
        assert_eq!(decode_frame::<CapacityRequest>(&encode_frame(&m), CAPACITY_LIMITS.request).ok(), Some(m));
    }
    if let Ok(signed) = decode_frame::<Signed>(data, CAPACITY_LIMITS.response) {
        let Ok(peer) = khachapuri_p2p::PeerId::from_bytes(&[0, 2, 8, 1]) else {
            return;
        };
        let attested = Attested {
            peer,
            operator: Default::default(),
            x25519: [0; 32],
            chain_id: 1,
            escrow: Default::default(),
            verified: Verified {
                kind: TeeKind::None,
                measurement: Vec::new(),
                report_data: [0; 64],
                tcb: String::new(),
            },
        };
        let _ = open_offer(&signed, &attested, std::time::SystemTime::now());
    }
});
