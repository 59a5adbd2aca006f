//! Untrusted content cannot keep the node busy: a "walk bomb" (five small dag-pb blocks,
//! each level linking the next a thousand times, down to one empty leaf) is answered with
//! an error within seconds at `/{cid}/` and `/ipfs/{cid}`, while other calls keep
//! answering. A store server and a free provider node on 127.0.0.1:0.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_chain::sign_spec;
use khachapuri_devnet::dev_signer;
use khachapuri_provider::{Free, Node, NodeConfig};
use khachapuri_store::dagpb::{PbLink, PbNode, UnixfsData};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec, DAG_PB};
use tokio::net::TcpListener;

struct Net {
    url: String,
    blocks: Blockstore,
    _dirs: Vec<tempfile::TempDir>,
}

async fn start() -> Net {
    let store_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let blocks = Blockstore::open(store_dir.path()).unwrap().without_fsync();
    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks.clone(),
        std::future::pending::<()>(),
    ));
    let config = NodeConfig {
        data_dir: node_dir.path().to_path_buf(),
        gateways: vec![store_url],
        free: true,
        default_timeout_ms: 2_000,
        fetch_timeout_ms: 5_000,
        ..NodeConfig::default()
    };
    let node = Node::new(config, Box::new(Free)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        std::future::pending::<()>(),
    ));
    Net {
        url,
        blocks,
        _dirs: vec![store_dir, node_dir],
    }
}

/// Five blocks: a one-byte raw leaf, then four dag-pb file nodes each linking the level
/// below 1000 times (10^12 leaves if followed naively). (With an empty leaf the exporter
/// skips the empty children outright; a byte per leaf makes every link count.)
fn walk_bomb(blocks: &Blockstore) -> Cid {
    let mut child = Cid::raw(b"x");
    blocks.put(&child, b"x").unwrap();
    let mut size = 1u64;
    for _ in 0..4 {
        let node = PbNode {
            links: (0..1000)
                .map(|_| PbLink {
                    hash: child,
                    name: Some(String::new()),
                    tsize: Some(size),
                })
                .collect(),
            data: Some(UnixfsData::file(vec![size; 1000]).encode()),
        };
        size *= 1000;
        let bytes = node.encode();
        child = Cid::of(DAG_PB, &bytes);
        blocks.put(&child, &bytes).unwrap();
    }
    child
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn status_of(url: String) -> (u16, Duration) {
    let started = Instant::now();
    let r = client().get(&url).send().await.expect("answered in time");
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_bomb_is_refused_quickly_and_the_node_keeps_serving() {
    let net = start().await;
    let bomb = walk_bomb(&net.blocks);
    let artifact = khachapuri_store::import_bytes(&khachapuri_testkit::hello()).unwrap();
    for b in artifact.1 {
        net.blocks.put(&b.cid, &b.data).unwrap();
    }
    let mut spec = Spec::new(artifact.0.cid.to_string(), RuntimeKind::WasiHttp, 1);
    sign_spec(&mut spec, &dev_signer(1)).unwrap();
    let (hello, blocks) =
        khachapuri_store::import_bytes(&Envelope::Public { spec }.to_bytes()).unwrap();
    for b in blocks {
        net.blocks.put(&b.cid, &b.data).unwrap();
    }

    // As a callable CID: the node fetches it as an envelope.
    let call = tokio::spawn(status_of(format!("{}/{bomb}/", net.url)));
    // Meanwhile, others are served.
    let (status, _) = status_of(format!("{}/{}", net.url, hello.cid)).await;
    assert_eq!(status, 200);
    let (status, took) = call.await.unwrap();
    assert!((400..600).contains(&status), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Now local at the node: its trustless gateway, as a file, as a CAR and raw.
    let file = tokio::spawn(status_of(format!("{}/ipfs/{bomb}", net.url)));
    let (status, _) = status_of(format!("{}/healthz", net.url)).await;
    assert_eq!(status, 200);
    let (status, took) = file.await.unwrap();
    assert!((400..600).contains(&status), "{status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let (status, _) = status_of(format!("{}/ipfs/{bomb}?format=car", net.url)).await;
    assert_eq!(status, 200, "a CAR carries each block once: small and fine");
    let (status, _) = status_of(format!("{}/{}", net.url, hello.cid)).await;
    assert_eq!(status, 200);
}
