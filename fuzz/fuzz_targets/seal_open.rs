//! `open` of arbitrary bytes: parse as an envelope, then try to open it with a fixed key.
//! Must never panic, whatever the bytes; a random input must never open.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ME: &str = "0x00000000000000000000000000000000000000aa";

fuzz_target!(|data: &[u8]| {
    let secret = [7u8; 32];
    if let Ok(env) = khachapuri_types::Envelope::from_slice(data) {
        let _ = khachapuri_seal::open(&env, ME, &secret);
    }
    // Also feed the raw bytes straight in as the two sealed fields (split as bytes: a
    // split of the text could fall inside a character).
    let (enc, ct) = data.split_at(data.len() / 2);
    let env = khachapuri_types::Envelope::Sealed {
        provider: ME.into(),
        enc: String::from_utf8_lossy(enc).into_owned(),
        ciphertext: String::from_utf8_lossy(ct).into_owned(),
    };
    assert!(khachapuri_seal::open(&env, ME, &secret).is_err());
});
