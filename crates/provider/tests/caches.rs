//! Every cache stays under its cap: 1000 distinct deployments (20 distinct artifacts,
//! each behind 50 specs that differ by env) called in turn on a free node with small caps
//! leave the deployments cache, the in-memory prepared code, the compiled code on disk and
//! the block cache under their caps after every call, and each cap really evicted.
//!
//! The artifacts are tiny WAGI modules (a compile takes milliseconds); a probe node
//! measures one artifact's compiled size first so the caps hold a few of them, not all.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;

use khachapuri_chain::sign_spec;
use khachapuri_devnet::dev_signer;
use khachapuri_provider::{Free, Node, NodeCacheUsage, NodeConfig};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec};
use tokio::net::TcpListener;

const ARTIFACTS: usize = 20;
const DEPLOYMENTS: usize = 1000;

/// A WAGI module answering `hello {n}`: distinct bytes (and CID) per `n`.
fn wagi_hello(n: usize) -> Vec<u8> {
    let body = format!("Content-Type: text/plain\\n\\nhello {n}\\n");
    let len = body.len() - body.matches('\\').count();
    wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{body}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#
    ))
    .expect("wat")
}

struct Net {
    url: String,
    node: Arc<Node>,
    data_dir: std::path::PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

async fn serve_store(blocks: &Blockstore) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        listener,
        blocks.clone(),
        std::future::pending::<()>(),
    ));
    url
}

async fn start_node(store_url: &str, edit: impl FnOnce(&mut NodeConfig)) -> Net {
    let node_dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig {
        data_dir: node_dir.path().to_path_buf(),
        gateways: vec![store_url.to_string()],
        free: true,
        default_timeout_ms: 2_000,
        fetch_timeout_ms: 5_000,
        ..NodeConfig::default()
    };
    edit(&mut config);
    let node = Arc::new(Node::new(config, Box::new(Free)).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_provider::serve(
        listener,
        node.clone(),
        std::future::pending::<()>(),
    ));
    Net {
        url,
        node,
        data_dir: node_dir.path().to_path_buf(),
        _dirs: vec![node_dir],
    }
}

fn put(blocks: &Blockstore, data: &[u8]) -> Cid {
    let (imported, bs) = khachapuri_store::import_bytes(data).unwrap();
    for b in bs {
        blocks.put(&b.cid, &b.data).unwrap();
    }
    imported.cid
}

fn deploy(blocks: &Blockstore, artifact: Cid, n: usize) -> String {
    let mut spec = Spec::new(artifact.to_string(), RuntimeKind::Wagi, 1);
    spec.env.insert("N".into(), n.to_string());
    sign_spec(&mut spec, &dev_signer(0)).unwrap();
    put(blocks, &Envelope::Public { spec }.to_bytes()).to_string()
}

async fn call(net: &Net, cid: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}/{cid}/", net.url)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Bytes of the files under `dir` (recursively): what the disk really holds.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The caps configured, checked against what the node reports.
#[derive(Debug, Clone, Copy)]
struct Caps {
    specs: u64,
    memory: u64,
    disk: u64,
    blocks: u64,
}

fn assert_under_caps(u: &NodeCacheUsage, caps: Caps, at: usize) {
    assert!(
        u.deployments.bytes <= caps.specs,
        "call {at}: {caps:?} {u:?}"
    );
    assert!(u.prepared.bytes <= caps.memory, "call {at}: {caps:?} {u:?}");
    assert!(
        u.compiled_disk.bytes <= caps.disk,
        "call {at}: {caps:?} {u:?}"
    );
    assert!(u.blocks.bytes <= caps.blocks, "call {at}: {caps:?} {u:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_distinct_deployments_leave_every_cache_under_its_cap() {
    let store_dir = tempfile::tempdir().unwrap();
    let blocks = Blockstore::open(store_dir.path()).unwrap().without_fsync();
    let store_url = serve_store(&blocks).await;
    let artifacts: Vec<Cid> = (0..ARTIFACTS)
        .map(|n| put(&blocks, &wagi_hello(n)))
        .collect();

    // One artifact's compiled size, in memory and on disk, from a probe node.
    let probe = start_node(&store_url, |_| {}).await;
    let first = deploy(&blocks, artifacts[0], 0);
    assert_eq!(call(&probe, &first).await, (200, "hello 0\n".into()));
    let one = probe.node.cache_usage();
    // The file's size as the disk holds it, not as the index says.
    let (image, file) = (
        one.prepared.bytes,
        dir_bytes(&probe.data_dir.join("compiled")),
    );
    let spec = one.deployments.bytes;
    assert!(image > 0 && file > 0 && spec > 0, "{one:?}");
    drop(probe);

    // Caps that hold a few of each, far from all.
    let caps = Caps {
        specs: spec * 30 + spec / 2,
        memory: image * 4 + image / 2,
        disk: file * 4 + file / 2,
        blocks: 256 * 1024,
    };
    let net = start_node(&store_url, |c| {
        c.max_cached_spec_bytes = caps.specs;
        c.max_compiled_memory_bytes = caps.memory;
        c.max_compiled_disk_bytes = caps.disk;
        c.max_spec_bytes = 16 * 1024;
        c.max_artifact_bytes = 64 * 1024;
        c.max_block_cache_bytes = caps.blocks;
    })
    .await;
    let cids: Vec<String> = (0..DEPLOYMENTS)
        .map(|i| deploy(&blocks, artifacts[i * ARTIFACTS / DEPLOYMENTS], i))
        .collect();
    for (i, cid) in cids.iter().enumerate() {
        let a = i * ARTIFACTS / DEPLOYMENTS;
        assert_eq!(
            call(&net, cid).await,
            (200, format!("hello {a}\n")),
            "call {i}"
        );
        assert_under_caps(&net.node.cache_usage(), caps, i);
    }
    // A deployment called long ago still works (re-fetched, re-compiled).
    assert_eq!(call(&net, &cids[0]).await, (200, "hello 0\n".into()));

    let u = net.node.cache_usage();
    assert_under_caps(&u, caps, DEPLOYMENTS);
    // Each cap evicted one entry at a time, and none started over.
    assert!(u.deployments.evictions > 900, "{u:?}");
    assert!(u.deployments.entries >= 20, "no wholesale wipe: {u:?}");
    assert!(
        u.prepared.evictions >= 15 && u.prepared.entries >= 3,
        "{u:?}"
    );
    assert!(
        u.compiled_disk.evictions >= 15 && u.compiled_disk.entries >= 3,
        "{u:?}"
    );
    assert!(
        u.blocks.gc_runs > 0 && u.blocks.collected_blocks > 0,
        "{u:?}"
    );
    // The disk agrees with the indexes.
    let compiled = dir_bytes(&net.data_dir.join("compiled"));
    assert!(compiled <= caps.disk, "{compiled} on disk: {u:?}");
    let cached = dir_bytes(&net.data_dir.join("blocks/cache"));
    assert!(cached <= caps.blocks, "{cached} on disk: {u:?}");
    // And `/metrics` shows it.
    let metrics = reqwest::get(format!("{}/metrics", net.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("khachapuri_cache_bytes{cache=\"prepared\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("khachapuri_block_gc_runs_total"),
        "{metrics}"
    );
}

/// Envelope fetches happen before payment, so they are bounded: with one allowed and a
/// gateway that never answers, a second fresh deployment gets 503 + Retry-After at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_fetches_past_the_bound_answer_503_with_retry_after() {
    let stall = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stall_url = format!("http://{}", stall.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = stall.accept().await {
            held.push(sock);
        }
    });
    let net = start_node(&stall_url, |c| {
        c.max_concurrent_spec_fetches = 1;
        c.fetch_timeout_ms = 10_000;
    })
    .await;
    let first = Cid::raw(b"some envelope").to_string();
    let url = format!("{}/{first}/", net.url);
    let hanging = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = Cid::raw(b"another envelope").to_string();
    let started = std::time::Instant::now();
    let r = reqwest::get(format!("{}/{second}/", net.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    hanging.abort();
}
