//! A 1 GiB upload through the tunnel with flat memory. Its own test binary, so that no
//! other test shares the process whose RSS it measures.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_signer_local::PrivateKeySigner;
use axum::extract::Request;
use axum::routing::post;
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_upload_streams_with_flat_memory() {
    let key = PrivateKeySigner::random();
    let gw = start_gateway(loopback(), |_| {}, operators(&[("dev", key.address())])).await;
    // A reader slower than the sender: without flow control the gateway would keep
    // sending and the provider's side would buffer what it has not read yet.
    let router = axum::Router::new().route(
        "/count",
        post(|req: Request| async move {
            let mut body = req.into_body();
            let (mut n, mut next_pause) = (0u64, 0u64);
            while let Some(frame) = body.frame().await {
                n += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
                // Slow for the first 256 MiB (20 ms per 4 MiB, ~200 MiB/s), then full speed.
                if n >= next_pause && n < 256 << 20 {
                    next_pause += 4 << 20;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            n.to_string()
        }),
    );
    let p = start_provider(test_client_config(&gw.url(), "dev"), key, router);
    let h = wait_tunnel(&gw.server, "dev", Duration::from_secs(5)).await;
    let warm = http::Request::post("/count")
        .body(http_body_util::Full::new(Bytes::from(vec![0u8; 8 << 20])))
        .unwrap();
    assert_eq!(
        text(h.send_request(warm).await.unwrap()).await,
        (8u64 << 20).to_string()
    );

    let before = rss_bytes();
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let frames = futures_util::stream::iter(
        (0..GIB / CHUNK as u64)
            .map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone()))),
    );
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let start = Instant::now();
    let req = http::Request::post("/count")
        .body(StreamBody::new(frames))
        .unwrap();
    let got = text(h.send_request(req).await.unwrap()).await;
    let took = start.elapsed();
    sampler.abort();
    let growth = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(before);
    eprintln!(
        "1 GiB upload through the tunnel: {took:?} ({:.0} MiB/s), peak RSS growth {} MiB",
        1024.0 / took.as_secs_f64(),
        growth >> 20
    );
    assert_eq!(got, GIB.to_string());
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MiB during the upload",
        growth >> 20
    );
    p.stop().await;
    gw.stop().await;
}
