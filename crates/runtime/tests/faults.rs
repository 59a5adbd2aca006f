//! Faults are answers: every misbehaving guest gets the right status, and the next call
//! to a healthy function (or the same one) still works.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use khachapuri_runtime::{CallOptions, FaultKind, GuestKind, RuntimeError};

#[tokio::test]
async fn wasi_http_faults_become_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let bad = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    let good = prepare(&rt, "bafyhello", GuestKind::WasiHttp, hello()).await;

    let cases: [(&str, u16, &str); 4] = [
        ("/trap", 500, "trapped"),
        ("/loop", 504, "time limit"),
        ("/memory", 500, "memory limit"),
        ("/flood", 502, "response body exceeds"),
    ];
    for (path, status, msg) in cases {
        let started = Instant::now();
        let (got, text) = call(&rt, &bad, path).await;
        assert_eq!(got, status, "{path}: {text}");
        assert!(text.contains(msg), "{path}: {text}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} took too long"
        );
        // A healthy call right after, on both the healthy and the faulty function.
        assert_eq!(
            call(&rt, &good, "/").await,
            (200, "Hello from Khachapuri!\n".into())
        );
        assert_eq!(call(&rt, &bad, "/").await, (200, "ok\n".into()));
    }
    let m = rt.metrics();
    assert_eq!(m.fault(FaultKind::Trap), 1);
    assert_eq!(m.fault(FaultKind::Deadline), 1);
    assert_eq!(m.fault(FaultKind::Memory), 1);
    assert_eq!(m.fault(FaultKind::ResponseTooLarge), 1);
    assert_eq!(rt.available_slots(), 4, "every instance slot is returned");
}

#[tokio::test]
async fn wagi_faults_become_answers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let good = prepare(&rt, "bafychello", GuestKind::Wagi, c_hello()).await;
    let cases: [(&str, u16); 5] = [
        ("trap", 500),
        ("loop", 504),
        ("memory", 500),
        ("flood", 502),
        ("noheaders", 502),
    ];
    for (name, status) in cases {
        let p = prepare(
            &rt,
            &format!("bafywagi{name}"),
            GuestKind::Wagi,
            wagi_wat(name),
        )
        .await;
        let (got, text) = call(&rt, &p, "/").await;
        assert_eq!(got, status, "{name}: {text}");
        let (got, text) = call(&rt, &good, "/").await;
        assert_eq!(got, 200, "healthy call after {name}: {text}");
    }
    let m = rt.metrics();
    assert_eq!(m.fault(FaultKind::Memory), 1);
    assert_eq!(m.fault(FaultKind::Deadline), 1);
}

#[tokio::test]
async fn request_body_over_the_limit_is_413_before_the_guest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 4);
    let p = prepare(&rt, "bafyecho", GuestKind::WasiHttp, echo()).await;
    let mut o = opts("/", &[]);
    o.limits.max_request_bytes = 1000;
    let big = Bytes::from(vec![b'a'; 1001]);
    // With and without a Content-Length header (streamed bodies have none).
    let with_len = http::Request::post("/x")
        .header("content-length", "1001")
        .body(http_body_util::Full::new(big.clone()))
        .unwrap();
    let e = rt.handle(&p, with_len, &o).await.unwrap_err();
    assert!(matches!(e, RuntimeError::RequestTooLarge { limit: 1000 }));
    assert_eq!(e.http_status(), 413);
    let e = rt
        .handle(
            &p,
            http::Request::post("/x").body(chunked(big)).unwrap(),
            &o,
        )
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 413);
    // Exactly at the limit is fine.
    let ok = http::Request::post("/x")
        .body(http_body_util::Full::new(Bytes::from(vec![b'a'; 1000])))
        .unwrap();
    assert_eq!(rt.handle(&p, ok, &o).await.unwrap().status(), 200);
}

/// A body delivered in 100-byte frames with no known length.
struct Chunked(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn chunked(data: Bytes) -> Chunked {
    Chunked(data.chunks(100).map(Bytes::copy_from_slice).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_instance_slots_answer_busy() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 1);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    let spinning = {
        let rt = rt.clone();
        let p = p.clone();
        tokio::spawn(async move { call(&rt, &p, "/loop").await })
    };
    let waited = Instant::now();
    while rt.available_slots() > 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "loop call never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = rt
        .handle(&p, get("/x"), &CallOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Busy(1)));
    assert_eq!(e.http_status(), 503);
    assert_eq!(e.retry_after_secs(), Some(1));
    assert_eq!(spinning.await.unwrap().0, 504);
    assert_eq!(call(&rt, &p, "/").await, (200, "ok\n".into()));
}
