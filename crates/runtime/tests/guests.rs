//! The example functions run through the runtime.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use khachapuri_runtime::{CallOptions, GuestKind};

#[tokio::test]
async fn hello_answers_its_greeting() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafyhello", GuestKind::WasiHttp, hello()).await;
    for _ in 0..3 {
        let r = rt
            .handle(&p, get("/bafyhello"), &CallOptions::default())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.body().as_ref(), b"Hello from Khachapuri!\n");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    let m = rt.metrics();
    assert_eq!(m.calls, 3);
    assert_eq!(m.compiles, 1);
}

#[tokio::test]
async fn echo_reflects_method_path_query_headers_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafyecho", GuestKind::WasiHttp, echo()).await;
    let req = http::Request::post("/bafyecho/users/7?x=1&y=two")
        .header("host", "provider.test")
        .header("x-custom", "hi there")
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(Bytes::from_static(
            b"payload \"quoted\"\n",
        )))
        .unwrap();
    let opts = CallOptions {
        path: "/users/7",
        ..CallOptions::default()
    };
    let r = rt.handle(&p, req, &opts).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/users/7");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["headers"]["x-custom"], "hi there");
    assert_eq!(v["headers"]["content-type"], "text/plain");
    assert_eq!(v["body"], "payload \"quoted\"\n");
}

#[tokio::test]
async fn c_hello_runs_as_wagi_with_cgi_environment() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafychello", GuestKind::Wagi, c_hello()).await;
    let req = http::Request::put("/bafychello/a/b?q=1")
        .body(http_body_util::Full::new(Bytes::from_static(b"ignored")))
        .unwrap();
    let opts = CallOptions {
        path: "/a/b",
        ..CallOptions::default()
    };
    let r = rt.handle(&p, req, &opts).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-powered-by"], "c-hello");
    let body = String::from_utf8_lossy(r.body()).into_owned();
    assert_eq!(body, "Hello from Khachapuri!\n(C via wagi) PUT /a/b?q=1\n");
}

#[tokio::test]
async fn env_comes_only_from_the_call_options() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    // The host has variables (PATH at least) that must not leak into the guest.
    assert!(std::env::var("PATH").is_ok());
    let env = vec![
        ("GREETING".to_string(), "hej".to_string()),
        ("API_KEY".to_string(), "s3cret".to_string()),
    ];
    let r = rt
        .handle(&p, get("/bafyfaults/env"), &opts("/env", &env))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body().as_ref(), b"GREETING=hej\nAPI_KEY=s3cret\n");

    let r = rt
        .handle(&p, get("/bafyfaults/env"), &opts("/env", &[]))
        .await
        .unwrap();
    assert_eq!(r.body().as_ref(), b"");
}

#[tokio::test]
async fn guests_have_no_network_or_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    assert_eq!(
        call(&rt, &p, "/outgoing").await,
        (200, "outgoing: denied\n".into())
    );
    assert_eq!(call(&rt, &p, "/fs").await, (200, "fs: denied\n".into()));
}

#[tokio::test]
async fn wagi_sees_body_on_stdin_and_env() {
    // A tiny CGI echo in C would need a build; the c-hello test covers env. Here a WAT
    // module copies stdin to stdout after a header, proving the body reaches the guest.
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "Status: 201\n\n")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const 13))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 4096))
            (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (i32.store (i32.const 4) (i32.load (i32.const 8)))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafycat", GuestKind::Wagi, Bytes::from(wasm)).await;
    let req = http::Request::post("/bafycat")
        .body(http_body_util::Full::new(Bytes::from_static(b"from stdin")))
        .unwrap();
    let r = rt.handle(&p, req, &CallOptions::default()).await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.body().as_ref(), b"from stdin");
}

/// The node serves from axum/hyper: `handle` must accept hyper's body and be `Send`.
#[allow(dead_code)]
fn handle_accepts_hyper_bodies_and_is_send(
    rt: &khachapuri_runtime::Runtime,
    p: &khachapuri_runtime::Prepared,
    req: http::Request<hyper::body::Incoming>,
) {
    fn assert_send<T: Send>(_: T) {}
    assert_send(rt.handle(p, req, &CallOptions::default()));
}
