//! Answers stream out of the node as the function writes them: a server-sent-events
//! function's first event reaches a raw HTTP client long before the function ends, a
//! paid streamed answer carries its receipt in the trailers, and a client that leaves
//! (mid-stream or before the head) stops the guest and leaves the in-flight gauge at 0.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_chain::sign_spec;
use khachapuri_devnet::dev_signer;
use khachapuri_payments::Receipt;
use khachapuri_provider::{Free, Node, NodeConfig};
use khachapuri_store::Blockstore;
use khachapuri_types::{Envelope, RuntimeKind, Spec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A free node on 127.0.0.1:0 reading blocks from a local blockstore directly.
struct FreeNode {
    addr: String,
    blocks: Blockstore,
    _dir: tempfile::TempDir,
}

async fn free_node(tweak: impl FnOnce(&mut NodeConfig)) -> FreeNode {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig {
        data_dir: dir.path().join("node"),
        free: true,
        max_instances: 1,
        default_timeout_ms: 10_000,
        ..NodeConfig::default()
    };
    tweak(&mut config);
    // The node's own block store is where it looks first: put the guest there.
    let blocks = Blockstore::open(config.data_dir.join("blocks")).unwrap();
    let node = Node::new(config, Box::new(Free)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        std::future::pending::<()>(),
    ));
    FreeNode {
        addr,
        blocks,
        _dir: dir,
    }
}

impl FreeNode {
    fn deploy_faults(&self) -> String {
        let put = |data: &[u8]| {
            let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
            for b in blocks {
                self.blocks.put(&b.cid, &b.data).unwrap();
            }
            imported.cid
        };
        let artifact = put(&khachapuri_testkit::faults());
        let mut spec = Spec::new(artifact.to_string(), RuntimeKind::WasiHttp, 1);
        sign_spec(&mut spec, &dev_signer(1)).unwrap();
        put(&Envelope::Public { spec }.to_bytes()).to_string()
    }

    async fn in_flight(&self) -> u64 {
        let text = get(&self.addr, "/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix("khachapuri_calls_in_flight "))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

async fn get(addr: &str, path: &str) -> String {
    reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Reads from `conn` until `needle` has been seen (or the peer closes); returns all bytes.
async fn read_until(conn: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    let mut chunk = [0u8; 4096];
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(15), conn.read(&mut chunk))
            .await
            .expect("read timed out")
            .unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_reaches_the_client_before_the_function_ends() {
    let node = free_node(|_| {}).await;
    let cid = node.deploy_faults();
    // Warm up: compile once, so timing below is the stream's alone.
    assert_eq!(get(&node.addr, &format!("/{cid}/")).await, "ok\n");

    let mut conn = TcpStream::connect(&node.addr).await.unwrap();
    let started = Instant::now();
    conn.write_all(
        format!("GET /{cid}/sse?ms=1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    read_until(&mut conn, &mut buf, b"data: event 1").await;
    let first = started.elapsed();
    assert!(
        contains(&buf, "data: event 1"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        first < Duration::from_millis(1000),
        "first event after {first:?}: the answer was buffered"
    );
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    read_until(&mut conn, &mut buf, b"0\r\n\r\n").await;
    assert!(contains(&buf, "data: event 3"));
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert_eq!(node.in_flight().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_leave_stop_the_guest_and_the_gauge_goes_back_to_zero() {
    // One instance slot: the next call only runs if the abandoned guest was stopped.
    let node = free_node(|_| {}).await;
    let cid = node.deploy_faults();
    assert_eq!(get(&node.addr, &format!("/{cid}/")).await, "ok\n");

    // Mid-stream: read the first event, then hang up.
    let mut conn = TcpStream::connect(&node.addr).await.unwrap();
    conn.write_all(format!("GET /{cid}/sse?ms=4000 HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut conn, &mut buf, b"data: event 1").await;
    assert_eq!(node.in_flight().await, 1);
    drop(conn);
    // The node learns of it on its next write (after the 4 s gap) at the latest.
    wait_for_zero(&node, Duration::from_secs(7)).await;

    // Before the head: a spinning guest whose client gives up after 300 ms.
    let r = reqwest::Client::new()
        .get(format!("http://{}/{cid}/loop", node.addr))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.is_err(), "the loop call cannot answer in 300 ms");
    wait_for_zero(&node, Duration::from_secs(3)).await;
    let started = Instant::now();
    assert_eq!(get(&node.addr, &format!("/{cid}/")).await, "ok\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the abandoned guest still held the only instance slot"
    );
}

async fn wait_for_zero(node: &FreeNode, within: Duration) {
    let started = Instant::now();
    loop {
        let n = node.in_flight().await;
        if n == 0 {
            return;
        }
        assert!(
            started.elapsed() < within,
            "in-flight gauge still {n} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_streamed_answer_carries_its_receipt_in_the_trailers() {
    let net = common::start().await;
    let payer = dev_signer(5);
    net.fund(&payer, "1").await;
    let cid = net.deploy_wasm(&khachapuri_testkit::faults(), |_| {});
    let voucher = net.voucher(&payer, "1");
    let addr = net.url.trim_start_matches("http://").to_string();

    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        format!(
            "GET /{cid}/sse?ms=200 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\
             Khachapuri-Payment: {voucher}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head_lc = head.to_ascii_lowercase();
    assert!(head_lc.starts_with("http/1.1 200"), "{text}");
    assert!(head_lc.contains("trailer: khachapuri-receipt"), "{head}");
    assert!(!head_lc.contains("\r\nkhachapuri-receipt:"), "{head}");
    assert!(body.contains("data: event 3"), "{body}");
    let trailer = body
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("khachapuri-receipt:")
                .then(|| l.split_once(':').unwrap().1.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no receipt trailer in {body:?}"));
    let receipt = Receipt::parse(&trailer).unwrap();
    assert!(receipt.cost > khachapuri_chain::U256::ZERO, "{receipt:?}");
    // The receipt says what the ledger holds: the next call's receipt starts from it.
    let (status, next, _) = net.call(&cid, Some(&voucher)).await;
    assert_eq!(status, 200);
    let next = next.unwrap();
    assert_eq!(next.consumed, receipt.consumed + next.cost);
}
