//! The store server's publishing API behind its guards, over real sockets: a bearer token
//! when one is configured (always, off loopback), a cap on upload bodies, and a refusal
//! to listen off loopback without a token.

use bytes::Bytes;
use khachapuri_store::{serve_with, Blockstore, KuboClient, Limits, PublishConfig};
use tokio::net::TcpListener;

fn blockstore() -> (tempfile::TempDir, Blockstore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Blockstore::open(dir.path()).expect("open").without_fsync();
    (dir, store)
}

async fn start(store: Blockstore, config: PublishConfig) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_with(
        listener,
        store,
        Limits::default(),
        config,
        std::future::pending::<()>(),
    ));
    format!("http://{addr}")
}

#[tokio::test]
async fn uploads_need_the_token_when_one_is_set() {
    let (_d, served) = blockstore();
    let config = PublishConfig {
        token: Some("s3cret-token".into()),
        ..PublishConfig::default()
    };
    let url = start(served.clone(), config).await;
    let data = Bytes::from_static(b"published bytes");

    let anonymous = KuboClient::new(url.clone(), Limits::default()).expect("client");
    let err = anonymous
        .add_bytes("f", data.clone())
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("401"), "{err}");
    let wrong = anonymous.clone().with_token(Some("s3cret-tokeX".into()));
    let err = wrong.add_bytes("f", data.clone()).await.expect_err("bad");
    assert!(err.to_string().contains("401"), "{err}");
    let err = anonymous
        .block_put(khachapuri_types::RAW, data.clone())
        .await
        .expect_err("no token");
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!served.has(&khachapuri_store::Cid::raw(&data)));

    let holder = anonymous.with_token(Some("s3cret-token".into()));
    let added = holder.add_bytes("f", data.clone()).await.expect("token");
    assert!(served.has(&added.cid));
    // Reading through the gateway needs no token.
    let r = reqwest::get(format!("{url}/ipfs/{}?format=raw", added.cid))
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn upload_bodies_are_capped() {
    let (_d, served) = blockstore();
    let config = PublishConfig {
        max_upload_bytes: Some(64 * 1024),
        ..PublishConfig::default()
    };
    let url = start(served.clone(), config).await;
    let kubo = KuboClient::new(url, Limits::default()).expect("client");
    kubo.add_bytes("small", Bytes::from(vec![1u8; 1000]))
        .await
        .expect("under the cap");
    let err = kubo
        .add_bytes("big", Bytes::from(vec![2u8; 200 * 1024]))
        .await
        .expect_err("over the cap");
    assert!(err.to_string().contains("413"), "{err}");
    let err = kubo
        .block_put(khachapuri_types::RAW, Bytes::from(vec![3u8; 200 * 1024]))
        .await
        .expect_err("over the cap");
    assert!(err.to_string().contains("413"), "{err}");
}

#[tokio::test]
async fn refuses_to_listen_off_loopback_without_a_token() {
    let (_d, served) = blockstore();
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let err = serve_with(
        listener,
        served.clone(),
        Limits::default(),
        PublishConfig::default(),
        std::future::pending::<()>(),
    )
    .await
    .expect_err("must refuse");
    assert!(err.to_string().contains("KHACHAPURI_STORE_TOKEN"), "{err}");
    let ok = PublishConfig {
        token: Some("t".into()),
        ..PublishConfig::default()
    };
    assert!(ok
        .check_exposure("0.0.0.0:5001".parse().expect("addr"))
        .is_ok());
}
