//! Building guests for tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn guests_dir() -> PathBuf {
    let dir = root().join("target/guests");
    std::fs::create_dir_all(&dir).expect("create target/guests");
    dir
}

/// Builds a Rust wasi-http guest project (relative to the workspace root) with
/// `cargo build --target wasm32-wasip2 --release` into `target/guests/cargo` and returns
/// the path of the component. Cargo's lock on that target dir serialises concurrent
/// test processes, and a second build is a no-op.
pub fn rust_guest_path(project: &str, name: &str) -> PathBuf {
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
    target_dir.join(format!("wasm32-wasip2/release/{name}.wasm"))
}

/// Like [`rust_guest_path`], returning the bytes.
pub fn rust_guest(project: &str, name: &str) -> Bytes {
    Bytes::from(std::fs::read(rust_guest_path(project, name)).expect("read guest"))
}

/// Builds `examples/c-hello` with clang-14 + wasi-libc (a wagi module) and returns it.
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
        .expect("run clang-14 (install it with scripts/setup)");
    assert!(status.success(), "building examples/c-hello failed");
    std::fs::rename(&tmp, &out).expect("rename c-hello");
    Bytes::from(std::fs::read(&out).expect("read c-hello"))
}

/// `examples/hello`.
pub fn hello() -> Bytes {
    rust_guest("examples/hello", "hello")
}

/// `examples/echo`.
pub fn echo() -> Bytes {
    rust_guest("examples/echo", "echo")
}

/// `tests/guests/faults`: the path picks the fault.
pub fn faults() -> Bytes {
    rust_guest("tests/guests/faults", "faults")
}

/// A wagi fault guest from `tests/guests/wagi-{name}.wat`.
pub fn wagi_wat(name: &str) -> Bytes {
    let path = root().join(format!("tests/guests/wagi-{name}.wat"));
    Bytes::from(wat::parse_file(path).expect("parse wat"))
}
