//! Unpacking arbitrary bytes as a tar or zip must never panic, never write outside its
//! directory, and never exceed its byte and entry bounds.
#![no_main]
use khachapuri_archive::{remove_tree, unpack, UnpackLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let out = dir.path().join("out");
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 64,
    };
    let _ = unpack(data, &out, &limits);
    // Only `out` may exist beside nothing else.
    let beside = std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
    assert!(beside <= 1, "the archive wrote beside its directory");
    remove_tree(&out);
});
