//! Tunnel handshake messages come from anyone who opens a WebSocket to a gateway (and,
//! for the provider, from whatever answers at the gateway's address): decoding must never
//! panic, and a decoded message re-encodes to one that decodes to the same message.
#![no_main]
use khachapuri_tunnel::handshake::{decode, encode, recover_signer, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = decode(data) else {
        return;
    };
    let again = encode(&m);
    assert_eq!(decode(again.as_bytes()).ok().as_ref(), Some(&m));
    // Signature recovery over a decoded hello must not panic either.
    if let Message::Hello(h) = &m {
        let c = khachapuri_tunnel::handshake::Challenge {
            nonce: h.nonce,
            host: "gw.example".into(),
            chain_id: 1,
            expires: 0,
        };
        let _ = recover_signer(&c, h);
    }
});
