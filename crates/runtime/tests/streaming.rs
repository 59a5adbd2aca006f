//! Responses stream out of the guest as it writes them: the first event of a
//! server-sent-events function arrives long before the function ends, limits apply to the
//! streamed bytes, and dropping the body (the client went away) stops the guest and
//! returns its instance slot.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use khachapuri_runtime::{FaultKind, GuestKind, RuntimeError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_event_arrives_before_the_guest_ends() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 2);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    let started = Instant::now();
    let o = opts("/sse", &[]);
    let resp = rt
        .handle_stream(&p, get("/x/sse?ms=700"), &o)
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"data: event 1\n\n");
    assert!(
        first_at < Duration::from_millis(600),
        "first event took {first_at:?}: the body was buffered"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"data: event 2\n\ndata: event 3\n\n");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(rt.available_slots(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_body_stops_the_guest_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 1);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    let o = opts("/sse", &[]);
    let resp = rt
        .handle_stream(&p, get("/x/sse?ms=5000"), &o)
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(rt.available_slots(), 0, "the guest is still running");
    drop(body);
    let waited = Instant::now();
    while rt.available_slots() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(1),
            "the slot was never returned"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(call(&rt, &p, "/").await, (200, "ok\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_ends_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 2);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    let o = opts("/flood", &[]);
    let resp = rt.handle_stream(&p, get("/x/flood"), &o).await.unwrap();
    let mut body = resp.into_body();
    let mut got = 0usize;
    let err = loop {
        match body.frame().await {
            Some(Ok(f)) => got += f.into_data().map_or(0, |d| d.len()),
            Some(Err(e)) => break e,
            None => panic!("a flooding guest's body ended cleanly after {got} bytes"),
        }
    };
    assert!(
        matches!(err, RuntimeError::ResponseTooLarge { .. }),
        "{err}"
    );
    assert!(got <= tight().max_response_bytes, "{got} bytes went out");
    assert_eq!(rt.metrics().fault(FaultKind::ResponseTooLarge), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_killed_mid_stream_ends_its_body_in_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), 2);
    let p = prepare(&rt, "bafyfaults", GuestKind::WasiHttp, faults()).await;
    // Events 2 s apart under a 1.5 s deadline: the first event is out, then time is up.
    let o = opts("/sse", &[]);
    let resp = rt
        .handle_stream(&p, get("/x/sse?ms=2000"), &o)
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    let end = body.frame().await;
    assert!(
        matches!(end, Some(Err(RuntimeError::Deadline(_)))),
        "truncated body must not end cleanly: {end:?}"
    );
}
