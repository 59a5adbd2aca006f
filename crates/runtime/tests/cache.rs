//! Compiled code survives a restart: a new runtime over the same cache dir serves
//! without compiling, even without the artifact's bytes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use khachapuri_runtime::{GuestKind, Origin};

#[tokio::test]
async fn restart_loads_compiled_code_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = hello();
    {
        let rt = runtime(dir.path(), 2);
        assert!(rt
            .load_cached("bafyhello", GuestKind::WasiHttp)
            .await
            .unwrap()
            .is_none());
        let p = rt
            .prepare("bafyhello", GuestKind::WasiHttp, wasm.clone())
            .await
            .unwrap();
        assert_eq!(p.origin(), Origin::Compiled);
        assert_eq!(call(&rt, &p, "/").await.0, 200);
        // Second prepare: memory hit, no compile.
        let again = rt
            .prepare("bafyhello", GuestKind::WasiHttp, wasm.clone())
            .await
            .unwrap();
        assert_eq!(again.origin(), Origin::Compiled);
        let m = rt.metrics();
        assert_eq!((m.compiles, m.disk_hits, m.memory_hits), (1, 0, 1));
    }
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "one cache entry, no temp files: {files:?}");

    // "Restart": a new runtime, the artifact bytes not even needed.
    let rt = runtime(dir.path(), 2);
    let p = rt
        .load_cached("bafyhello", GuestKind::WasiHttp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.origin(), Origin::DiskCache);
    assert_eq!(
        call(&rt, &p, "/").await,
        (200, "Hello from Khachapuri!\n".into())
    );
    assert!(rt.get("bafyhello").is_some());
    let m = rt.metrics();
    assert_eq!((m.compiles, m.disk_hits), (0, 1));

    // And prepare() on yet another runtime also goes to disk, not the compiler.
    let rt = runtime(dir.path(), 2);
    let p = rt
        .prepare("bafyhello", GuestKind::WasiHttp, wasm)
        .await
        .unwrap();
    assert_eq!(p.origin(), Origin::DiskCache);
    assert_eq!(rt.metrics().compiles, 0);
}

#[tokio::test]
async fn corrupt_cache_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wagi_wat("trap");
    {
        let rt = runtime(dir.path(), 2);
        rt.prepare("bafytrap", GuestKind::Wagi, wasm.clone())
            .await
            .unwrap();
    }
    for e in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let rt = runtime(dir.path(), 2);
    assert!(rt
        .load_cached("bafytrap", GuestKind::Wagi)
        .await
        .unwrap()
        .is_none());
    let p = rt.prepare("bafytrap", GuestKind::Wagi, wasm).await.unwrap();
    assert_eq!(p.origin(), Origin::Compiled);
    assert_eq!(call(&rt, &p, "/").await.0, 500);
}

#[tokio::test]
async fn invalid_artifacts_and_kind_mismatches_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 2);
    let e = rt
        .prepare(
            "bafybad",
            GuestKind::WasiHttp,
            bytes::Bytes::from_static(b"not wasm"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 500);
    // A core module is not a component, and vice versa.
    let e = rt
        .prepare("bafyx", GuestKind::WasiHttp, wagi_wat("trap"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("invalid wasi-http artifact"), "{e}");
    rt.prepare("bafyh", GuestKind::WasiHttp, hello())
        .await
        .unwrap();
    assert!(rt.prepare("bafyh", GuestKind::Wagi, hello()).await.is_err());
}
