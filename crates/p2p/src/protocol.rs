//! Protocol names, caps, and the DHT key providers announce themselves under.

use khachapuri_attest::MAX_EVIDENCE_BYTES;
use libp2p::kad::RecordKey;
use libp2p::StreamProtocol;

use crate::codec::Limits;

/// Publisher nonce → evidence bound to the provider's keys.
pub const ATTEST: StreamProtocol = StreamProtocol::new("/khachapuri/attest/1");
/// Resources wanted → signed offer.
pub const CAPACITY: StreamProtocol = StreamProtocol::new("/khachapuri/capacity/1");
/// Signed order (spec CID + payer) → signed provision result.
pub const PROVISION: StreamProtocol = StreamProtocol::new("/khachapuri/provision/1");
/// Kademlia under Khachapuri's own name: our DHT never mixes with the public IPFS one.
pub const KAD: StreamProtocol = StreamProtocol::new("/khachapuri/kad/1.0.0");
/// What identify says we speak.
pub const IDENTIFY_VERSION: &str = "/khachapuri/1.0.0";

/// A nonce is 32 bytes; the request carries nothing else.
pub const ATTEST_LIMITS: Limits = Limits {
    request: 64,
    response: MAX_EVIDENCE_BYTES + 1024,
};
/// A request names a few runtimes and a region; an offer adds prices and addresses.
pub const CAPACITY_LIMITS: Limits = Limits {
    request: 2048,
    response: 8192,
};
/// An order is a CID, two addresses and a signature; a result adds a URL and prices.
pub const PROVISION_LIMITS: Limits = Limits {
    request: 2048,
    response: 8192,
};

/// Longest string field kept from any message (runtimes, regions, codes, URLs).
pub const MAX_FIELD: usize = 512;
/// Most entries of a repeated field (runtimes, regions).
pub const MAX_LIST: usize = 16;

/// The DHT key under which every provider node is a Kademlia provider record.
pub fn providers_key() -> RecordKey {
    RecordKey::new(&b"/khachapuri/providers/v1")
}

/// Cuts `s` to at most `max` bytes at a character boundary: fields from peers are UTF-8 of
/// any shape, and `String::truncate` panics inside a character.
pub fn clip(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clipping_never_splits_a_character() {
        let mut s = "→".repeat(200);
        clip(&mut s, 512);
        assert_eq!(s, "→".repeat(170));
        let mut short = String::from("ok");
        clip(&mut short, 512);
        assert_eq!(short, "ok");
    }
}
