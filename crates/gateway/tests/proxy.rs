//! The gateway in front of a real devnet: calls by Host and by path reach the named
//! provider, headers are cleaned and forwarded-for appended, server-sent events arrive as
//! they are written, a 1 GiB upload streams with flat memory, and unknown names are
//! answered without a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_by_host_and_by_path_reach_the_named_provider() {
    let t = common::start(2, true).await;
    let echo = t.deploy(&khachapuri_testkit::echo());
    let port = t.gateway.rsplit(':').next().unwrap().to_string();
    let client = common::client();

    // By path: /{name}/{cid}/rest?query.
    let r = client
        .post(format!("{}/dev2/{echo}/a/b?x=1", t.gateway))
        .header("x-test", "yes")
        .header("connection", "x-hop")
        .header("x-hop", "must not pass")
        .header("x-forwarded-for", "203.0.113.9")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["method"].as_str(), v["path"].as_str()),
        (Some("POST"), Some("/a/b"))
    );
    assert_eq!(v["query"], "x=1");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["headers"]["x-test"], "yes");
    assert!(v["headers"].get("x-hop").is_none(), "{v}");
    assert_eq!(v["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert!(
        v["headers"]["forwarded"]
            .as_str()
            .unwrap()
            .starts_with("for=127.0.0.1;proto=http"),
        "{v}"
    );

    // By Host: {name}.localhost, as curl sends it to http://dev.localhost:PORT/.
    let hello = t.deploy(&khachapuri_testkit::hello());
    for name in ["dev", "dev2"] {
        let r = client
            .get(format!("{}/{hello}/", t.gateway))
            .header("host", format!("{name}.localhost:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
        assert_eq!(r.text().await.unwrap(), "Hello from Khachapuri!\n");
    }

    // Unknown and malformed names are clear errors.
    let r = client
        .get(format!("{}/nobody/{hello}", t.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("nobody"), "{v}");
    assert!(v["hint"].is_string());
    let r = client
        .get(format!("{}/Bad_Name/x", t.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        client
            .get(format!("{}/healthz", t.gateway))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_pass_without_buffering() {
    let t = common::start(1, true).await;
    let faults = t.deploy(&khachapuri_testkit::faults());
    let started = Instant::now();
    let r = common::client()
        .get(format!("{}/dev/{faults}/sse?ms=1500", t.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(
        String::from_utf8_lossy(&first).contains("data:"),
        "{first:?}"
    );
    // Three events 1.5 s apart: the first must not wait for the last.
    assert!(
        first_at < Duration::from_millis(1400),
        "first event after {first_at:?}: the gateway buffered the stream"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert!(String::from_utf8_lossy(&rest).matches("data:").count() >= 2);
}

/// An upstream that counts what it receives and keeps nothing.
async fn counting_sink() -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/{*rest}",
        post(|body: axum::body::Body| async move {
            let mut n: u64 = 0;
            let mut s = body.into_data_stream();
            while let Some(chunk) = s.next().await {
                n += chunk.map(|c| c.len() as u64).unwrap_or(0);
            }
            n.to_string()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_upload_streams_with_flat_memory() {
    let t = common::start(1, true).await;
    let (sink, _task) = counting_sink().await;
    t.register(9, "sink", &sink).await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let chunk = Bytes::from(vec![0x5a; CHUNK]);
    let body =
        futures::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let before = common::rss();
    let r = common::client()
        .post(format!("{}/sink/bafkqaaa/upload", t.gateway))
        .timeout(Duration::from_secs(300))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (CHUNK * CHUNKS).to_string());
    let grown = common::rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "RSS grew by {} MiB for a 1 GiB upload",
        grown >> 20
    );
}
