//! `/khachapuri/provision/1` frames come from any peer: an order is opened as the
//! provider would before any work (decode, payer signature, addressee, expiry), and a
//! signed result as the publisher would; both refuse garbage without panicking.
#![no_main]
use khachapuri_attest::{TeeKind, Verified};
use khachapuri_p2p::codec::{decode_frame, encode_frame};
use khachapuri_p2p::messages::{ProvisionRequest, Signed};
use khachapuri_p2p::protocol::PROVISION_LIMITS;
use khachapuri_p2p::publisher::{open_result, Attested};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(peer) = khachapuri_p2p::PeerId::from_bytes(&[0, 2, 8, 1]) else {
        return;
    };
    if let Ok(m) = decode_frame::<ProvisionRequest>(data, PROVISION_LIMITS.request) {
        assert_eq!(
            decode_frame::<ProvisionRequest>(&encode_frame(&m), PROVISION_LIMITS.request).ok(),
            Some(m.clone())
        );
        let _ = khachapuri_p2p::open_order(&m, &peer, 1_800_000_000, 3600);
    }
    if let Ok(signed) = decode_frame::<Signed>(data, PROVISION_LIMITS.response) {
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
        let _ = open_result(&signed, &attested, "bafy");
    }
});
