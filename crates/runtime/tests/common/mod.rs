//! Shared test helpers: build the example and fault guests once (cached under
//! `target/guests/`), and make runtimes and requests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use khachapuri_runtime::{CallOptions, GuestKind, Limits, Prepared, Runtime, RuntimeConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn guests_dir() -> PathBuf {
    let dir = root().join("target/guests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds a Rust wasi-http guest project (relative to the workspace root) with
/// `cargo build --target wasm32-wasip2 --release` into `target/guests` and returns the
/// component's bytes. Cargo's own lock on the target dir serializes concurrent test
/// processes, and a fresh build is a no-op.
pub fn rust_guest(project: &str, name: &str) -> Bytes {
    let target_dir = guests_dir().join("cargo");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root().join(project).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo to build a guest");
    assert!(status.success(), "building guest {project} failed");
    let wasm = target_dir.join(format!("wasm32-wasip2/release/{name}.wasm"));
    Bytes::from(std::fs::read(&wasm).unwrap())
}

/// Builds `examples/c-hello` with clang-14 + wasi-libc (wagi module) and returns it.
pub fn c_hello() -> Bytes {
    let out = guests_dir().join("c-hello.wasm");
    // Unique temp output then rename: parallel test processes never see a partial file.
    let tmp = guests_dir().join(format!(".c-hello-{}.wasm", std::process::id()));
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "clang-14".into()));
    cmd.arg("--target=wasm32-wasi");
    if Path::new("/usr/share/wasi-sysroot").is_dir() {
        cmd.arg("--sysroot=/usr/share/wasi-sysroot");
    }
    let status = cmd
        .args(["-O2", "-fuse-ld=lld", "-o"])
        .arg(&tmp)
        .arg(root().join("examples/c-hello/main.c"))
        .status()
        .expect("run clang-14 (install with scripts/setup)");
    assert!(status.success(), "building examples/c-hello failed");
    std::fs::rename(&tmp, &out).unwrap();
    Bytes::from(std::fs::read(&out).unwrap())
}

pub fn hello() -> Bytes {
    rust_guest("examples/hello", "hello")
}
pub fn echo() -> Bytes {
    rust_guest("examples/echo", "echo")
}
pub fn faults() -> Bytes {
    rust_guest("tests/guests/faults", "faults")
}

/// A wagi fault guest from `tests/guests/wagi-{name}.wat`.
pub fn wagi_wat(name: &str) -> Bytes {
    let path = root().join(format!("tests/guests/wagi-{name}.wat"));
    Bytes::from(wat::parse_file(path).unwrap())
}

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
