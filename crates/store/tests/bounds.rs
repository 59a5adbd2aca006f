//! Walks of untrusted DAGs are bounded: links followed (duplicates included), depth,
//! checked size arithmetic, CAR byte caps that count duplicates; and files that repeat a
//! block legitimately are still exported whole.

use std::time::{Duration, Instant};

use bytes::Bytes;
use khachapuri_store::dagpb::{PbLink, PbNode, UnixfsData};
use khachapuri_store::{
    car, export_with, import_bytes, serve, verify_car_into, Blockstore, Cid, DagWalker, Limits,
    StoreError,
};
use khachapuri_types::DAG_PB;

fn blockstore() -> (tempfile::TempDir, Blockstore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Blockstore::open(dir.path()).expect("open").without_fsync();
    (dir, store)
}

fn file_node(children: &[(Cid, u64)]) -> (Cid, Vec<u8>) {
    let node = PbNode {
        links: children
            .iter()
            .map(|(c, s)| PbLink {
                hash: *c,
                name: Some(String::new()),
                tsize: Some(*s),
            })
            .collect(),
        data: Some(UnixfsData::file(children.iter().map(|c| c.1).collect()).encode()),
    };
    let bytes = node.encode();
    (Cid::of(DAG_PB, &bytes), bytes)
}

/// Four dag-pb levels each linking the next 1000 times over one leaf of `leaf` bytes.
fn walk_bomb_over(store: &Blockstore, leaf: &[u8]) -> Cid {
    let mut child = Cid::raw(leaf);
    store.put(&child, leaf).expect("put");
    let mut size = leaf.len() as u64;
    for _ in 0..4 {
        let (cid, bytes) = file_node(&vec![(child, size); 1000]);
        store.put(&cid, &bytes).expect("put");
        child = cid;
        size *= 1000;
    }
    child
}

/// The bomb with a one-byte leaf: every link holds bytes, so every link counts.
fn walk_bomb(store: &Blockstore) -> Cid {
    walk_bomb_over(store, b"x")
}

#[tokio::test]
async fn a_walk_bomb_over_an_empty_leaf_costs_nothing() {
    let (_d, store) = blockstore();
    let root = walk_bomb_over(&store, b"");
    let started = Instant::now();
    let written = export_with(
        &store,
        root,
        &mut tokio::io::sink(),
        u64::MAX,
        &Limits::default(),
    )
    .await
    .expect("an empty file");
    assert_eq!(written, 0);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_walk_bomb_exhausts_the_budget_fast() {
    let (_d, store) = blockstore();
    let root = walk_bomb(&store);
    // Each distinct block is visited once.
    let mut walker = DagWalker::new(root);
    let mut visited = 0;
    while let Some(cid) = walker.next_cid().expect("in time") {
        let block = store.get(&cid).expect("read").expect("local");
        walker.visit(cid, &block).expect("within budget");
        visited += 1;
    }
    assert_eq!(visited, 5);
    // Exporting follows duplicates, within the budget.
    let started = Instant::now();
    let err = export_with(
        &store,
        root,
        &mut tokio::io::sink(),
        u64::MAX,
        &Limits::default(),
    )
    .await
    .expect_err("over budget");
    assert!(
        matches!(err, StoreError::TooLarge { what, .. } if what.contains("links")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A deadline stops it too.
    let limits = Limits {
        max_walk_blocks: u64::MAX,
        walk_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let err = export_with(&store, root, &mut tokio::io::sink(), u64::MAX, &limits)
        .await
        .expect_err("deadline");
    assert!(matches!(err, StoreError::Deadline { .. }), "{err}");
}

#[tokio::test]
async fn deep_chains_and_overflowing_sizes_are_refused() {
    let (_d, store) = blockstore();
    let mut child = Cid::raw(b"x");
    store.put(&child, b"x").expect("put");
    for _ in 0..40 {
        let (cid, bytes) = file_node(&[(child, 1)]);
        store.put(&cid, &bytes).expect("put");
        child = cid;
    }
    let err = export_with(
        &store,
        child,
        &mut tokio::io::sink(),
        u64::MAX,
        &Limits::default(),
    )
    .await
    .expect_err("too deep");
    assert!(
        matches!(err, StoreError::TooLarge { what, .. } if what.contains("depth")),
        "{err}"
    );
    let mut walker = DagWalker::new(child);
    let walked = loop {
        match walker.next_cid() {
            Ok(Some(cid)) => {
                let block = store.get(&cid).expect("read").expect("local");
                if let Err(e) = walker.visit(cid, &block) {
                    break Err(e);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(walked.is_err(), "the walker has the same depth limit");

    // Sizes that overflow u64 are an invalid block, not a panic or a wrap.
    let leaf = Cid::raw(b"y");
    store.put(&leaf, b"y").expect("put");
    let node = PbNode {
        links: vec![
            PbLink {
                hash: leaf,
                name: None,
                tsize: None,
            };
            2
        ],
        data: Some(
            UnixfsData {
                kind: khachapuri_store::dagpb::UNIXFS_FILE,
                data: None,
                filesize: None,
                blocksizes: vec![u64::MAX, 2],
            }
            .encode(),
        ),
    };
    let bytes = node.encode();
    let cid = Cid::of(DAG_PB, &bytes);
    store.put(&cid, &bytes).expect("put");
    let err = export_with(&store, cid, &mut Vec::new(), u64::MAX, &Limits::default())
        .await
        .expect_err("overflow");
    assert!(matches!(err, StoreError::InvalidBlock { .. }), "{err}");
}

#[tokio::test]
async fn a_car_byte_cap_counts_duplicate_blocks() {
    let (_d, store) = blockstore();
    let leaf = Bytes::from(vec![7u8; 1000]);
    let leaf_cid = Cid::raw(&leaf);
    let (root, root_bytes) = file_node(&[(leaf_cid, 1000)]);
    let mut bytes = car::header(&root);
    for (cid, data) in [(root, &root_bytes[..]), (leaf_cid, &leaf[..])] {
        bytes.extend(car::section_prefix(&cid, data.len()));
        bytes.extend_from_slice(data);
    }
    // The same leaf again and again (a `dups=y` CAR gone wild).
    for _ in 0..100 {
        bytes.extend(car::section_prefix(&leaf_cid, leaf.len()));
        bytes.extend_from_slice(&leaf);
    }
    let limits = Limits {
        max_dag_bytes: 20_000,
        ..Limits::default()
    };
    let err = verify_car_into(&bytes[..], root, &store, "test", &limits)
        .await
        .expect_err("dups count");
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn files_repeating_a_chunk_are_served_whole() {
    let (_d, store) = blockstore();
    let data = vec![0u8; (2 << 20) + 10];
    let (imported, blocks) = import_bytes(&data).expect("import");
    for b in blocks {
        store.put(&b.cid, &b.data).expect("put");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(serve(listener, store, std::future::pending::<()>()));
    let body = reqwest::get(format!("{url}/ipfs/{}", imported.cid))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        body.len(),
        data.len(),
        "repeated chunks are not deduplicated"
    );
}

#[tokio::test]
async fn a_stalling_gateway_hits_the_fetch_deadline() {
    async fn stall() -> &'static str {
        tokio::time::sleep(Duration::from_secs(20)).await;
        "too late"
    }
    let app = axum::Router::new().route("/ipfs/{cid}", axum::routing::get(stall));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (_d, local) = blockstore();
    let store = khachapuri_store::Store::new(
        local,
        khachapuri_store::StoreConfig {
            gateways: vec![url],
            kubo_rpc: None,
            limits: Limits {
                walk_timeout: Duration::from_millis(300),
                ..Limits::default()
            },
        },
    )
    .expect("store");
    let started = Instant::now();
    let err = store.fetch(Cid::raw(b"never")).await.expect_err("deadline");
    assert!(matches!(err, StoreError::Deadline { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
