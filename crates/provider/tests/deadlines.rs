//! The public port's read deadlines over raw TCP on 127.0.0.1:0: a slowloris trickling
//! header bytes is disconnected by the header read timeout, a body that stops arriving
//! is answered by the body read deadline, and other callers are served meanwhile.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_provider::{Free, Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().to_path_buf(),
        free: true,
        header_read_timeout_ms: 500,
        body_read_timeout_ms: 800,
        ..NodeConfig::default()
    };
    let node = Node::new(config, Box::new(Free)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        std::future::pending::<()>(),
    ));
    (addr, dir)
}

async fn healthz(addr: &str) -> u16 {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_closed_by_the_header_deadline() {
    let (addr, _dir) = start().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = loop {
        // One more header line every 100 ms: never a complete head.
        if conn.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break true;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => break true, // hyper answers 408 and closes
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(4) {
            break false;
        }
        assert_eq!(healthz(&addr).await, 200, "others are served meanwhile");
    };
    assert!(closed, "the trickling connection was still open after 4 s");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_by_the_body_deadline() {
    let (addr, _dir) = start().await;
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /.well-known/khachapuri/voucher HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(4), conn.read(&mut buf))
        .await
        .expect("answered before 4 s")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 4"), "{head}");
    assert!(started.elapsed() >= Duration::from_millis(600), "{head}");
    assert_eq!(healthz(&addr).await, 200);
}
