//! Gateway server and clients over real sockets on 127.0.0.1:0: a DAG fetched by CAR and
//! block by block, a gateway serving tampered bytes detected and skipped, an incomplete
//! CAR rejected, and the Kubo RPC subset answered by the embedded server.

use std::future::Future;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Path;
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use khachapuri_store::{
    car, import_bytes, serve, Blockstore, Cid, GatewayClient, KuboClient, Limits, Store,
    StoreConfig, StoreError,
};
use tokio::net::TcpListener;

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

/// Serves `store` on a fresh port; the server stops when the test's runtime ends.
async fn start_store(store: Blockstore) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, store, async {
        let _ = rx.await;
    }));
    (format!("http://{addr}"), tx)
}

async fn start_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn blockstore() -> (tempfile::TempDir, Blockstore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Blockstore::open(dir.path()).expect("open").without_fsync();
    (dir, store)
}

/// A 3-chunk file imported into a fresh blockstore.
fn publisher() -> (
    tempfile::TempDir,
    Blockstore,
    Cid,
    Vec<u8>,
    Vec<(Cid, Bytes)>,
) {
    let (dir, store) = blockstore();
    let data = pattern((2 << 20) + 4321);
    let (imported, blocks) = import_bytes(&data).expect("import");
    for b in &blocks {
        store.put(&b.cid, &b.data).expect("put");
    }
    let blocks = blocks.into_iter().map(|b| (b.cid, b.data)).collect();
    (dir, store, imported.cid, data, blocks)
}

/// The blocks of a one-level file in CAR (depth-first) order: root, then leaves.
fn dfs_order(blocks: &[(Cid, Bytes)]) -> Vec<(Cid, Bytes)> {
    let (root, leaves) = blocks.split_last().expect("blocks");
    std::iter::once(root).chain(leaves).cloned().collect()
}

fn config(gateways: Vec<String>) -> StoreConfig {
    StoreConfig {
        gateways,
        ..StoreConfig::default()
    }
}

async fn with_timeout<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_a_dag_from_the_gateway_and_caches_it() {
    with_timeout(async {
        let (_d1, published, root, data, _) = publisher();
        let (url, _stop) = start_store(published).await;

        // Raw block, CAR and plain file answers of the server itself.
        let http = reqwest::Client::new();
        let raw = http
            .get(format!("{url}/ipfs/{root}"))
            .header(header::ACCEPT, "application/vnd.ipld.raw")
            .send()
            .await
            .expect("raw");
        assert_eq!(raw.status(), 200);
        assert!(root.verify(&raw.bytes().await.expect("body")));
        let file = http
            .get(format!("{url}/ipfs/{root}"))
            .send()
            .await
            .expect("file");
        assert_eq!(file.bytes().await.expect("body").as_ref(), &data[..]);
        let head = http
            .head(format!("{url}/ipfs/{root}?format=car"))
            .send()
            .await
            .expect("head");
        assert_eq!(head.status(), 200);
        let missing = http
            .get(format!("{url}/ipfs/{}", Cid::raw(b"nope")))
            .send()
            .await
            .expect("404");
        assert_eq!(missing.status(), 404);
        let bad = http
            .get(format!("{url}/ipfs/notacid"))
            .send()
            .await
            .expect("400");
        assert_eq!(bad.status(), 400);

        // A second node with an empty store reads the file through the gateway.
        let (_d2, local) = blockstore();
        let store = Store::new(local.clone(), config(vec![url.clone()])).expect("store");
        let got = store.read_file(root, 10 << 20).await.expect("read");
        assert_eq!(got.as_ref(), &data[..]);
        assert!(store.is_complete(root).await.expect("complete"));
        // Cached: it now works with no gateway at all.
        let offline = Store::new(local, StoreConfig::default()).expect("store");
        assert_eq!(
            offline
                .read_file(root, 10 << 20)
                .await
                .expect("read")
                .as_ref(),
            &data[..]
        );
        // The size cap holds.
        assert!(matches!(
            offline.read_file(root, 1000).await,
            Err(StoreError::TooLarge { .. })
        ));
    })
    .await;
}

/// A gateway that answers every request with the given bytes for the given kind.
fn evil_gateway(raw: Bytes, car: Bytes) -> Router {
    Router::new().route(
        "/ipfs/{cid}",
        get(
            move |Path(_cid): Path<String>, headers: axum::http::HeaderMap| {
                let (raw, car) = (raw.clone(), car.clone());
                async move {
                    let wants_car = headers
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("car"));
                    Response::new(Body::from(if wants_car { car } else { raw }))
                }
            },
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_blocks_are_detected_and_never_cached() {
    with_timeout(async {
        let (_d1, published, root, data, blocks) = publisher();
        let (good_url, _stop) = start_store(published).await;

        // A CAR whose first leaf has one byte flipped, and a wrong raw block.
        let mut car = car::header(&root);
        for (i, (cid, block)) in dfs_order(&blocks).iter().enumerate() {
            let mut bytes = block.to_vec();
            if i == 1 {
                bytes[0] ^= 1;
            }
            car.extend(car::section_prefix(cid, bytes.len()));
            car.extend_from_slice(&bytes);
        }
        let evil = start_router(evil_gateway(
            Bytes::from_static(b"not the block"),
            Bytes::from(car),
        ))
        .await;
        let evil_url = format!("http://{evil}");

        let client = GatewayClient::new(vec![evil_url.clone()], Limits::default()).expect("client");
        let err = client.get_block(root).await.expect_err("must fail");
        assert!(err.to_string().contains("does not match its CID"), "{err}");
        let (_d2, local) = blockstore();
        let err = client.fetch_dag(root, &local).await.expect_err("must fail");
        assert!(err.to_string().contains("does not match its CID"), "{err}");
        // The bad leaf is not in the store (the root, verified before it, may be).
        let bad_leaf = blocks[0].0;
        assert!(!local.has(&bad_leaf));

        // With a good gateway after the evil one, the fetch falls back and succeeds.
        let store = Store::new(local, config(vec![evil_url, good_url])).expect("store");
        assert_eq!(
            store
                .read_file(root, 10 << 20)
                .await
                .expect("read")
                .as_ref(),
            &data[..]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_car_is_rejected() {
    with_timeout(async {
        let (_d1, _published, root, _data, blocks) = publisher();
        // Root and first leaf only: well-formed, every block valid, DAG incomplete.
        let mut car = car::header(&root);
        for (cid, block) in dfs_order(&blocks).iter().take(2) {
            car.extend(car::section_prefix(cid, block.len()));
            car.extend_from_slice(block);
        }
        let short = start_router(evil_gateway(Bytes::new(), Bytes::from(car.clone()))).await;
        let client =
            GatewayClient::new(vec![format!("http://{short}")], Limits::default()).expect("client");
        let (_d2, local) = blockstore();
        let err = client.fetch_dag(root, &local).await.expect_err("must fail");
        assert!(err.to_string().contains("incomplete CAR"), "{err}");

        // Cut in the middle of a section: also incomplete, not a clean end.
        car.truncate(car.len() - 10);
        let cut = start_router(evil_gateway(Bytes::new(), Bytes::from(car))).await;
        let client =
            GatewayClient::new(vec![format!("http://{cut}")], Limits::default()).expect("client");
        let err = client.fetch_dag(root, &local).await.expect_err("must fail");
        assert!(err.to_string().contains("incomplete CAR"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_rpc_subset_round_trips() {
    with_timeout(async {
        let (_d1, served) = blockstore();
        let (url, stop) = start_store(served.clone()).await;
        let kubo = KuboClient::new(url.clone(), Limits::default()).expect("client");

        let data = Bytes::from(pattern((1 << 20) + 99));
        let added = kubo.add_bytes("f.bin", data.clone()).await.expect("add");
        let (expected, blocks) = import_bytes(&data).expect("import");
        assert_eq!(added.cid, expected.cid);
        assert_eq!(added.dag_size, expected.dag_size);
        assert!(served.is_pinned(&added.cid));
        let root = kubo.block_get(added.cid).await.expect("block/get");
        assert_eq!(root, blocks.last().expect("root").data);
        kubo.pin_add(added.cid).await.expect("pin/add");

        let cid = kubo
            .block_put(khachapuri_types::RAW, Bytes::from_static(b"raw block"))
            .await
            .expect("put");
        assert_eq!(cid, Cid::raw(b"raw block"));
        assert!(served.has(&cid));
        let missing = kubo.pin_add(Cid::raw(b"absent")).await.expect_err("absent");
        assert!(missing.to_string().contains("404"), "{missing}");

        // Other import profiles are refused rather than silently giving other CIDs.
        let resp = reqwest::Client::new()
            .post(format!("{url}/api/v0/add?cid-version=0"))
            .multipart(
                reqwest::multipart::Form::new()
                    .part("file", reqwest::multipart::Part::bytes(b"x".to_vec())),
            )
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400);

        // Graceful shutdown: the port stops answering.
        let _ = stop.send(());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(kubo.block_get(added.cid).await.is_err());
    })
    .await;
}
