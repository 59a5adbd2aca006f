//! The gateway's routing of untrusted Host headers and paths (and the address check of
//! whatever an IP literal in them says) must never panic, and a route always names a
//! valid registry name or a CID.
#![no_main]
use khachapuri_gateway::{classify, route, valid_name, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (host, path) = match text.split_once('\n') {
        Some((h, p)) => (Some(h), p),
        None => (None, text),
    };
    match route(host, path, "khachapuri.xyz") {
        Ok(Route::Named { name, path }) => {
            assert!(valid_name(&name), "{name:?}");
            assert!(path.starts_with('/'), "{path:?}");
        }
        Ok(Route::Public { path, .. }) => assert!(path.starts_with('/'), "{path:?}"),
        Ok(Route::Health) | Err(_) => {}
    }
    if let Ok(ip) = text.trim().parse::<std::net::IpAddr>() {
        let _ = classify(ip);
    }
});
