//! Shared test helpers: build the example and fault guests once (cached under
//! `target/guests/`), and make runtimes and requests.
#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use khachapuri_runtime::{CallOptions, GuestKind, Limits, Prepared, Runtime, RuntimeConfig};

pub use khachapuri_testkit::{c_hello, echo, faults, hello, wagi_wat};

/// A runtime with a private cache dir and small limits, for tests.
pub fn runtime(cache: &Path, max_instances: u32) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        max_instances,
        max_limits: Limits {
            memory_bytes: 64 << 20,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// Limits for fault tests: short timeout, 32 MiB memory, 1 MiB bodies.
pub fn tight() -> Limits {
    Limits {
        timeout: Duration::from_millis(1500),
        memory_bytes: 32 << 20,
        max_request_bytes: 1 << 20,
        max_response_bytes: 1 << 20,
    }
}

pub fn opts<'a>(path: &'a str, env: &'a [(String, String)]) -> CallOptions<'a> {
    CallOptions {
        env,
        limits: tight(),
        path,
    }
}

pub fn get(uri: &str) -> http::Request<http_body_util::Full<Bytes>> {
    http::Request::get(uri)
        .header("host", "provider.test")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap()
}

/// Prepares `wasm` under a CID-like key derived from its name.
pub async fn prepare(rt: &Runtime, cid: &str, kind: GuestKind, wasm: Bytes) -> Prepared {
    rt.prepare(cid, kind, wasm).await.unwrap()
}

/// Calls `path` and returns (status, body) — faults mapped to their HTTP status.
pub async fn call(rt: &Runtime, p: &Prepared, path: &str) -> (u16, String) {
    let req = get(&format!("/bafytest{path}"));
    match rt.handle(p, req, &opts(path, &[])).await {
        Ok(r) => (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body()).into_owned(),
        ),
        Err(e) => (e.http_status(), e.to_string()),
    }
}
