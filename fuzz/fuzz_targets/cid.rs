//! CID parsing (binary and text) must never panic, and parsed CIDs round-trip.
#![no_main]
use khachapuri_types::Cid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cid) = Cid::from_bytes(data) {
        assert_eq!(Cid::from_bytes(&cid.to_bytes()).ok(), Some(cid));
        assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = text.parse::<Cid>() {
            assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
        }
    }
});
