//! dag-pb and UnixFS decoding must never panic, and what decodes re-encodes canonically.
#![no_main]
use khachapuri_store::dagpb::{PbNode, UnixfsData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = PbNode::decode(data) {
        let again = PbNode::decode(&node.encode()).expect("re-encoded node decodes");
        assert_eq!(again, node);
    }
    let _ = UnixfsData::decode(data);
});
