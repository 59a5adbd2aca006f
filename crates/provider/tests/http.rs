//! The provider over real HTTP: a store server and a provider node on 127.0.0.1:0, the
//! example and fault guests deployed as owner-signed public specs (and sealed ones),
//! called with reqwest.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use khachapuri_chain::{sign_spec, PrivateKeySigner};
use khachapuri_devnet::dev_signer;
use khachapuri_provider::{Free, Node, NodeConfig};
use khachapuri_store::Blockstore;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec};
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Net {
    url: String,
    blocks: Blockstore,
    stop: watch::Sender<bool>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(tweak: impl FnOnce(&mut NodeConfig)) -> Net {
    let store_dir = tempfile::tempdir().unwrap();
    let node_dir = tempfile::tempdir().unwrap();
    let blocks = Blockstore::open(store_dir.path()).unwrap();
    let (stop, rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let store_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_url = format!("http://{}", store_listener.local_addr().unwrap());
    tokio::spawn(khachapuri_store::serve(
        store_listener,
        blocks.clone(),
        stopped(rx.clone()),
    ));

    let mut config = NodeConfig {
        data_dir: node_dir.path().to_path_buf(),
        gateways: vec![store_url],
        free: true,
        max_instances: 8,
        default_timeout_ms: 2_000,
        fetch_timeout_ms: 5_000,
        ..NodeConfig::default()
    };
    tweak(&mut config);
    let node = Node::new(config, Box::new(Free)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(khachapuri_provider::serve(
        listener,
        Arc::new(node),
        stopped(rx),
    ));
    Net {
        url,
        blocks,
        stop,
        _dirs: vec![store_dir, node_dir],
    }
}

impl Net {
    /// Imports bytes into the store the provider reads from.
    fn put(&self, data: &[u8]) -> Cid {
        let (imported, blocks) = khachapuri_store::import_bytes(data).unwrap();
        for b in blocks {
            self.blocks.put(&b.cid, &b.data).unwrap();
        }
        imported.cid
    }

    /// Deploys `wasm` as a public spec signed by [`owner`].
    fn deploy(&self, wasm: &Bytes, runtime: RuntimeKind, edit: impl FnOnce(&mut Spec)) -> String {
        let mut spec = self.spec(wasm, runtime);
        edit(&mut spec);
        sign_spec(&mut spec, &owner()).unwrap();
        self.put(&Envelope::Public { spec }.to_bytes()).to_string()
    }

    /// An unsigned spec for `wasm`, its artifact stored.
    fn spec(&self, wasm: &Bytes, runtime: RuntimeKind) -> Spec {
        Spec::new(self.put(wasm).to_string(), runtime, 1)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// The deployments' owner in these tests.
fn owner() -> PrivateKeySigner {
    dev_signer(1)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn examples_answer_over_http() {
    let net = start(|_| {}).await;
    let hello = net.deploy(&khachapuri_testkit::hello(), RuntimeKind::WasiHttp, |_| {});
    assert_eq!(
        net.get(&format!("/{hello}")).await,
        (200, "Hello from Khachapuri!\n".into())
    );
    assert_eq!(net.get(&format!("/{hello}/")).await.0, 200);

    let echo = net.deploy(&khachapuri_testkit::echo(), RuntimeKind::WasiHttp, |_| {});
    let r = client()
        .post(format!("{}/{echo}/users/7?x=1&y=two", net.url))
        .header("x-test", "yes")
        .body("payload bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/users/7");
    assert_eq!(v["query"], "x=1&y=two");
    assert_eq!(v["headers"]["x-test"], "yes");
    assert_eq!(v["body"], "payload bytes");

    let c = net.deploy(&khachapuri_testkit::c_hello(), RuntimeKind::Wagi, |_| {});
    let (status, body) = net.get(&format!("/{c}/some/path?q=1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from Khachapuri!"), "{body}");
    assert!(body.contains("GET /some/path?q=1"), "{body}");
}

#[tokio::test]
async fn faults_are_answers_and_the_node_keeps_serving() {
    let net = start(|c| c.max_response_bytes = 1 << 20).await;
    let hello = net.deploy(&khachapuri_testkit::hello(), RuntimeKind::WasiHttp, |_| {});
    // A response cap within the node's buffering window (`stream_after_bytes`): a flood is
    // caught before anything went out, so it is a clean 502.
    let faults = net.deploy(&khachapuri_testkit::faults(), RuntimeKind::WasiHttp, |s| {
        s.limits.timeout_ms = Some(1_000);
        s.limits.memory_mb = Some(32);
        s.limits.max_response_bytes = Some(100_000);
    });
    for (path, status) in [
        ("/trap", 500),
        ("/loop", 504),
        ("/memory", 500),
        ("/flood", 502),
    ] {
        let (got, body) = net.get(&format!("/{faults}{path}")).await;
        assert_eq!(got, status, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["kind"], "guest_fault", "{path}: {body}");
        assert_eq!(
            net.get(&format!("/{hello}")).await.0,
            200,
            "healthy after {path}"
        );
    }
    for name in ["trap", "loop", "memory", "flood"] {
        let wagi = net.deploy(
            &khachapuri_testkit::wagi_wat(name),
            RuntimeKind::Wagi,
            |s| {
                s.limits.timeout_ms = Some(1_000);
                s.limits.memory_mb = Some(32);
            },
        );
        let (got, body) = net.get(&format!("/{wagi}/")).await;
        assert!(got >= 500, "wagi {name}: {got} {body}");
        assert_eq!(
            net.get(&format!("/{hello}")).await.0,
            200,
            "healthy after wagi {name}"
        );
    }
    // The sandbox: env only from the spec, no outgoing HTTP, no filesystem.
    let env = net.deploy(&khachapuri_testkit::faults(), RuntimeKind::WasiHttp, |s| {
        s.env.insert("GREETING".into(), "hi".into());
    });
    let (status, body) = net.get(&format!("/{env}/env")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "GREETING=hi\n");
    let (_, body) = net.get(&format!("/{env}/fs")).await;
    assert_eq!(body, "fs: denied\n");
    let (_, body) = net.get(&format!("/{env}/outgoing")).await;
    assert!(!body.contains("allowed"), "{body}");

    // Past the window the flood is streaming when it hits the 1 MiB cap: the transfer
    // breaks off (never a clean end), and the node keeps serving.
    let streamed = net.deploy(&khachapuri_testkit::faults(), RuntimeKind::WasiHttp, |s| {
        s.limits.timeout_ms = Some(1_000);
    });
    let r = client()
        .get(format!("{}/{streamed}/flood", net.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the head went out before the cap was hit");
    assert!(
        r.bytes().await.is_err(),
        "a capped stream must not end cleanly"
    );
    assert_eq!(net.get(&format!("/{hello}")).await.0, 200);

    let metrics = net.get("/metrics").await.1;
    assert!(
        metrics.contains("khachapuri_calls_faulted_total 9"),
        "{metrics}"
    );
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let net = start(|_| {}).await;
    let (status, body) = net.get("/not-a-cid/x").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("hint"), "{body}");

    let absent = Cid::raw(b"never stored");
    assert_eq!(net.get(&format!("/{absent}")).await.0, 404);

    let junk = net.put(b"this is not a deployment envelope");
    let (status, body) = net.get(&format!("/{junk}")).await;
    assert_eq!(status, 422, "{body}");

    let sealed = Envelope::Sealed {
        provider: "0x0000000000000000000000000000000000000001".into(),
        enc: "AA".into(),
        ciphertext: "AA".into(),
    };
    let sealed = net.put(&sealed.to_bytes());
    assert_eq!(net.get(&format!("/{sealed}")).await.0, 403);

    let small = net.deploy(&khachapuri_testkit::echo(), RuntimeKind::WasiHttp, |s| {
        s.limits.max_request_bytes = Some(16);
    });
    let r = client()
        .post(format!("{}/{small}", net.url))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The artifact is not a spec's runtime: a wasi-http component deployed as wagi.
    let wrong = net.deploy(&khachapuri_testkit::hello(), RuntimeKind::Wagi, |_| {});
    assert_eq!(net.get(&format!("/{wrong}")).await.0, 500);
    assert_eq!(net.get("/healthz").await, (200, "ok\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_503_with_retry_after() {
    let net = start(|c| c.max_instances = 1).await;
    let faults = net.deploy(&khachapuri_testkit::faults(), RuntimeKind::WasiHttp, |s| {
        s.limits.timeout_ms = Some(3_000);
    });
    let hello = net.deploy(&khachapuri_testkit::hello(), RuntimeKind::WasiHttp, |_| {});
    assert_eq!(net.get(&format!("/{hello}")).await.0, 200, "warm up hello");
    assert_eq!(
        net.get(&format!("/{faults}")).await.0,
        200,
        "warm up faults"
    );
    let url = format!("{}/{faults}/loop", net.url);
    let busy = tokio::spawn(async move { client().get(url).send().await.unwrap().status() });
    // Wait until the looping call holds the only slot (a fixed sleep is flaky on a
    // loaded machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let wk: serde_json::Value =
            serde_json::from_str(&net.get("/.well-known/khachapuri").await.1).unwrap();
        if wk["capacity"]["available"] == 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client()
        .get(format!("{}/{hello}", net.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(busy.await.unwrap(), 504);
    assert_eq!(net.get(&format!("/{hello}")).await.0, 200, "slot returned");
}

#[tokio::test]
async fn discovery_metrics_and_gateway() {
    let net = start(|c| c.name = "testnode".into()).await;
    let v: serde_json::Value =
        serde_json::from_str(&net.get("/.well-known/khachapuri").await.1).unwrap();
    assert_eq!(v["name"], "testnode");
    assert_eq!(v["free"], true);
    assert_eq!(v["runtimes"][0], "wasi-http");
    let hello = net.deploy(&khachapuri_testkit::hello(), RuntimeKind::WasiHttp, |_| {});
    net.get(&format!("/{hello}")).await;
    net.get(&format!("/{hello}")).await;
    let metrics = net.get("/metrics").await.1;
    assert!(metrics.contains("khachapuri_calls_ok_total 2"), "{metrics}");
    assert!(
        metrics.contains("khachapuri_spec_cache_hits_total 1"),
        "{metrics}"
    );
    // The node re-serves what it fetched, verified, at /ipfs/{cid}.
    let r = client()
        .get(format!("{}/ipfs/{hello}?format=raw", net.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(Cid::raw(&bytes) == hello.parse().unwrap());
}

#[tokio::test]
async fn the_public_port_never_accepts_uploads() {
    let net = start(|_| {}).await;
    let form = || {
        reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(b"planted".to_vec()))
    };
    for path in [
        "/api/v0/add",
        "/api/v0/block/put",
        "/api/v0/pin/add?arg=bafkqaaa",
        "/api/v0/block/get?arg=bafkqaaa",
    ] {
        let r = client()
            .post(format!("{}{path}", net.url))
            .multipart(form())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(status == 404 || status == 405, "{path}: {status}");
    }
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::POST,
        reqwest::Method::DELETE,
    ] {
        let r = client()
            .request(method.clone(), format!("{}/ipfs/bafkqaaa", net.url))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} /ipfs");
    }
    // Nothing was stored: the block the upload carried is not served back.
    let planted = Cid::raw(b"planted");
    let (status, _) = net.get(&format!("/ipfs/{planted}?format=raw")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn public_specs_need_the_owners_signature() {
    let net = start(|_| {}).await;
    let faults = khachapuri_testkit::faults();
    let put_public = |spec: Spec| net.put(&Envelope::Public { spec }.to_bytes());

    let unsigned = put_public(net.spec(&faults, RuntimeKind::WasiHttp));
    let (status, body) = net.get(&format!("/{unsigned}/env")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("signature"), "{body}");

    let mut tampered = net.spec(&faults, RuntimeKind::WasiHttp);
    sign_spec(&mut tampered, &owner()).unwrap();
    tampered.env.insert("INJECTED".into(), "1".into());
    assert_eq!(
        net.get(&format!("/{}/env", put_public(tampered))).await.0,
        403
    );

    // Signed by key 4, claiming key 1 as its owner.
    let mut foreign = net.spec(&faults, RuntimeKind::WasiHttp);
    foreign.created_at = 2;
    sign_spec(&mut foreign, &dev_signer(4)).unwrap();
    foreign.owner = Some(format!("{:#x}", owner().address()));
    assert_eq!(
        net.get(&format!("/{}/env", put_public(foreign))).await.0,
        403
    );

    let mut good = net.spec(&faults, RuntimeKind::WasiHttp);
    good.created_at = 3;
    sign_spec(&mut good, &owner()).unwrap();
    assert_eq!(net.get(&format!("/{}/env", put_public(good))).await.0, 200);
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn sealed_specs_open_only_at_their_provider() {
    const SECRET: &str = "tok-5f3a9c-very-secret";
    let keys = tempfile::tempdir().unwrap();
    let (key_a, key_b) = (keys.path().join("a.key"), keys.path().join("b.key"));
    let (_, pub_a) = khachapuri_seal::load_or_create_key_file(&key_a).unwrap();
    let (_, pub_b) = khachapuri_seal::load_or_create_key_file(&key_b).unwrap();
    let addr_a = format!("{:#x}", dev_signer(2).address());
    let addr_b = format!("{:#x}", dev_signer(3).address());
    let a = start(|c| {
        c.address = Some(addr_a.clone());
        c.x25519_key_file = Some(key_a.clone());
    })
    .await;
    let b = start(|c| {
        c.address = Some(addr_b.clone());
        c.x25519_key_file = Some(key_b.clone());
    })
    .await;
    let keyless = start(|c| c.address = Some(addr_a.clone())).await;
    // Each node publishes the key it opens envelopes with.
    let hex = |k: [u8; 32]| format!("0x{}", k.map(|b| format!("{b:02x}")).concat());
    for (node, key) in [
        (&a, Some(hex(pub_a))),
        (&b, Some(hex(pub_b))),
        (&keyless, None),
    ] {
        let wk: serde_json::Value =
            serde_json::from_str(&node.get("/.well-known/khachapuri").await.1).unwrap();
        assert_eq!(wk["x25519_public_key"].as_str().map(str::to_string), key);
    }
    let faults = khachapuri_testkit::faults();

    let sealed_spec = |created_at: u64, signer: Option<&PrivateKeySigner>| {
        let mut spec = a.spec(&faults, RuntimeKind::WasiHttp);
        spec.created_at = created_at;
        spec.env.insert("SECRET_TOKEN".into(), SECRET.into());
        spec.provider = Some(addr_a.clone());
        if let Some(s) = signer {
            sign_spec(&mut spec, s).unwrap();
        }
        spec
    };
    let spec = sealed_spec(1, Some(&owner()));
    let envelope = khachapuri_seal::seal(&spec, &addr_a, &pub_a).unwrap();
    let bytes = envelope.to_bytes();
    let cid = a.put(&bytes);
    b.put(&faults);
    assert_eq!(b.put(&bytes), cid);
    keyless.put(&faults);
    keyless.put(&bytes);

    // What the store holds is ciphertext only.
    let stored = a.blocks.get(&cid).unwrap().unwrap();
    assert!(!contains(&stored, SECRET) && !contains(&stored, "SECRET_TOKEN"));

    // The provider it is sealed to runs it, and the function sees the secret.
    let (status, body) = a.get(&format!("/{cid}/env")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "SECRET_TOKEN=tok-5f3a9c-very-secret\n")
    );
    // A second provider cannot open it; nor can a node without the key.
    let (status, body) = b.get(&format!("/{cid}/env")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("sealed to provider"), "{body}");
    assert!(!body.contains(SECRET), "{body}");
    let (status, body) = keyless.get(&format!("/{cid}/env")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("X25519"), "{body}");

    // Sealed to A's address but with B's key: A cannot decrypt it.
    let wrong_key =
        khachapuri_seal::seal(&sealed_spec(2, Some(&owner())), &addr_a, &pub_b).unwrap();
    assert_eq!(
        a.get(&format!("/{}/env", a.put(&wrong_key.to_bytes())))
            .await
            .0,
        403
    );
    // Tampered ciphertext.
    let tampered = match khachapuri_seal::seal(&spec, &addr_a, &pub_a).unwrap() {
        khachapuri_types::Envelope::Sealed {
            provider,
            enc,
            ciphertext,
        } => {
            let mut c = ciphertext.into_bytes();
            c[10] = if c[10] == b'A' { b'B' } else { b'A' };
            Envelope::Sealed {
                provider,
                enc,
                ciphertext: String::from_utf8(c).unwrap(),
            }
        }
        Envelope::Public { .. } => unreachable!(),
    };
    assert_eq!(
        a.get(&format!("/{}/env", a.put(&tampered.to_bytes())))
            .await
            .0,
        403
    );
    // Unsigned, and signed by someone other than its stated owner.
    let unsigned = khachapuri_seal::seal(&sealed_spec(3, None), &addr_a, &pub_a).unwrap();
    let (status, body) = a
        .get(&format!("/{}/env", a.put(&unsigned.to_bytes())))
        .await;
    assert_eq!(status, 403, "{body}");
    let mut foreign = sealed_spec(4, Some(&dev_signer(4)));
    foreign.owner = Some(format!("{:#x}", owner().address()));
    let foreign = khachapuri_seal::seal(&foreign, &addr_a, &pub_a).unwrap();
    assert_eq!(
        a.get(&format!("/{}/env", a.put(&foreign.to_bytes())))
            .await
            .0,
        403
    );

    // The decrypted spec never reached the node's disk.
    for file in files_under(a._dirs[1].path()) {
        let data = std::fs::read(&file).unwrap();
        assert!(
            !contains(&data, SECRET),
            "{} holds the secret",
            file.display()
        );
    }
}
