//! The newcomer's path, with the real binary: `khachapuri dev`, then deploy and call the
//! examples, `init` + `build` templates, the escrow commands, the registry record read
//! with `cast`, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{root, Dev};

#[test]
fn dev_deploy_call_escrow_and_stop() {
    let dev = Dev::start();
    let info = dev.info();
    let provider_url = info["providers"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(info["providers"][0]["name"], "dev");
    assert_eq!(info["chain_id"], 31337);
    for key in ["rpc_url", "escrow", "registry", "token", "store_url"] {
        assert!(info[key].is_string(), "info lacks {key}: {info}");
    }
    assert!(info.get("dev_key").is_none(), "info must not print keys");

    // hello: deploy, call with the CLI, and with plain HTTP.
    let deployed: serde_json::Value =
        serde_json::from_str(&dev.ok(&["deploy", "examples/hello", "--public", "--json"])).unwrap();
    let cid = deployed["cid"].as_str().unwrap();
    assert_eq!(deployed["url"], format!("{provider_url}/{cid}"));
    assert!(deployed["artifact_cid"]
        .as_str()
        .unwrap()
        .starts_with("bafk"));
    assert_eq!(dev.ok(&["call", cid]), "Hello from Khachapuri!\n");
    let head = dev.ok(&["call", cid, "-i"]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");

    // echo: method, path, query, headers, body and env reach the function.
    let echo = dev.ok(&["deploy", "examples/echo", "--env", "GREETING=hi"]);
    let echo = echo.trim();
    let out = dev.ok(&[
        "call",
        echo,
        "/a/b?x=1",
        "-d",
        "payload",
        "-H",
        "X-Test: yes",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["method"].as_str(),
            v["path"].as_str(),
            v["query"].as_str()
        ),
        (Some("POST"), Some("/a/b"), Some("x=1"))
    );
    assert_eq!(v["headers"]["x-test"], "yes");
    assert_eq!(v["body"], "payload");
    assert_eq!(v["env"]["GREETING"], "hi");

    // A secret from --env-file: the spec is sealed to the dev provider and signed by the
    // wallet; the function sees the secret, the stored envelope never holds it in clear.
    let work = tempfile::tempdir().unwrap();
    let secrets = work.path().join("secrets.env");
    std::fs::write(
        &secrets,
        "# api credentials\nAPI_TOKEN=\"s3cr3t-from-env-file\"\n",
    )
    .unwrap();
    let faults = khachapuri_testkit::rust_guest_path("tests/guests/faults", "faults");
    let faults = faults.to_str().unwrap();
    let secrets = secrets.to_str().unwrap();
    let deployed: serde_json::Value =
        serde_json::from_str(&dev.ok(&["deploy", faults, "--env-file", secrets, "--json"]))
            .unwrap();
    assert_eq!(deployed["sealed"], true, "{deployed}");
    assert_eq!(deployed["provider"], "dev", "{deployed}");
    let cid = deployed["cid"].as_str().unwrap();
    assert_eq!(
        dev.ok(&["call", cid, "/env"]),
        "API_TOKEN=s3cr3t-from-env-file\n"
    );
    let stored = dev.ok(&["store", "get", cid]);
    assert!(stored.contains("khachapuri/sealed"), "{stored}");
    assert!(
        !stored.contains("s3cr3t") && !stored.contains("API_TOKEN"),
        "{stored}"
    );
    // Secrets never go into a public spec.
    let refused = dev.run(
        &["deploy", faults, "--public", "--env-file", secrets],
        &root(),
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("public"));
    // An unknown provider name is a clear error.
    let refused = dev.run(&["deploy", faults, "--provider", "nobody"], &root());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nobody"));

    // A guest fault is an answer, and the CLI exits non-zero saying so.
    let wasm = dev.run(
        &[
            "call",
            "bafkreiabcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqr",
        ],
        &root(),
    );
    assert!(!wasm.status.success());

    // init templates build out of the box and deploy.
    let work = tempfile::tempdir().unwrap();
    for (name, lang, expect) in [
        ("fn-c", "c", "(C via wagi) GET /"),
        ("fn-rust", "rust", "Hello from Khachapuri!"),
    ] {
        dev.ok_in(&["init", name, "--lang", lang], work.path());
        let dir = work.path().join(name);
        dev.ok_in(&["build"], &dir);
        let cid = dev.ok_in(&["deploy"], &dir);
        let body = dev.ok(&["call", cid.trim()]);
        assert!(body.contains(expect), "{name}: {body}");
    }

    // Escrow: deposit, fund the dev provider, see it in status.
    dev.ok(&["escrow", "deposit", "10"]);
    dev.ok(&["escrow", "fund", "dev", "5"]);
    let status: serde_json::Value =
        serde_json::from_str(&dev.ok(&["escrow", "status", "--json"])).unwrap();
    let text = status.to_string();
    assert!(text.contains("\"5\"") || text.contains("5000000"), "{text}");

    // Sponsored: the owner's voucher for the dev provider rides inside the sealed spec.
    let deployed: serde_json::Value = serde_json::from_str(&dev.ok(&[
        "deploy",
        faults,
        "--sponsor",
        "1.5",
        "--env-file",
        secrets,
        "--json",
    ]))
    .unwrap();
    let cid = deployed["cid"].as_str().unwrap();
    let envelope =
        khachapuri_types::Envelope::from_slice(dev.ok(&["store", "get", cid]).as_bytes()).unwrap();
    let (key, _) =
        khachapuri_seal::load_key_file(&dev.home.path().join("dev/provider/x25519.key")).unwrap();
    let (owner, operator) = (
        khachapuri_devnet::dev_signer(0).address(),
        khachapuri_devnet::dev_signer(1).address(),
    );
    let spec = khachapuri_seal::open(&envelope, &format!("{operator:#x}"), &key).unwrap();
    assert_eq!(khachapuri_chain::verify_spec(&spec).unwrap(), owner);
    assert_eq!(spec.payer, khachapuri_types::PayerPolicy::Sponsored);
    let voucher =
        khachapuri_payments::decode_payment(spec.sponsor_voucher.as_deref().unwrap()).unwrap();
    assert_eq!(
        (voucher.voucher.payer, voucher.voucher.provider),
        (owner, operator)
    );
    // The voucher is cumulative for the channel (on top of what the owner already signed);
    // the deployment's own budget is the owner-signed `sponsor_budget`.
    assert!(voucher.voucher.amount >= khachapuri_chain::U256::from(1_500_000u64));
    assert_eq!(spec.sponsor_budget.as_deref(), Some("1500000"));
    let escrow: khachapuri_chain::Address = info["escrow"].as_str().unwrap().parse().unwrap();
    voucher.verify(31337, escrow).unwrap();
    assert_eq!(
        dev.ok(&["call", cid, "/env"]),
        "API_TOKEN=s3cr3t-from-env-file\n"
    );
    // A second sponsorship stacks on the same channel: its voucher is the first's plus
    // its own budget, which is all its callers may draw.
    let second: serde_json::Value =
        serde_json::from_str(&dev.ok(&["deploy", faults, "--sponsor", "0.5", "--json"])).unwrap();
    let envelope = khachapuri_types::Envelope::from_slice(
        dev.ok(&["store", "get", second["cid"].as_str().unwrap()])
            .as_bytes(),
    )
    .unwrap();
    let spec2 = khachapuri_seal::open(&envelope, &format!("{operator:#x}"), &key).unwrap();
    let voucher2 =
        khachapuri_payments::decode_payment(spec2.sponsor_voucher.as_deref().unwrap()).unwrap();
    assert_eq!(spec2.sponsor_budget.as_deref(), Some("500000"));
    assert_eq!(
        voucher2.voucher.amount,
        voucher.voucher.amount + khachapuri_chain::U256::from(500_000u64)
    );
    let refused = dev.run(&["deploy", faults, "--public", "--sponsor", "1"], &root());
    assert!(!refused.status.success());

    // The registry record, read by a tool nobody here wrote.
    let cast = khachapuri_devnet::find_tool("cast").expect("cast (scripts/setup installs it)");
    let node = Command::new(&cast)
        .args(["keccak", "dev"])
        .output()
        .unwrap();
    let node = String::from_utf8(node.stdout).unwrap();
    let url = Command::new(&cast)
        .args([
            "call",
            info["registry"].as_str().unwrap(),
            "text(bytes32,string)(string)",
        ])
        .arg(node.trim())
        .arg("url")
        .args(["--rpc-url", info["rpc_url"].as_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(url.stdout).unwrap().trim(),
        format!("\"{provider_url}\"")
    );

    // SIGTERM stops everything cleanly, anvil included.
    let rpc = info["rpc_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let mut dev = dev;
    let pid = dev.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = dev.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "dev exited with {status}");
    assert!(
        std::net::TcpStream::connect(&rpc).is_err(),
        "anvil still listening"
    );
    assert!(
        std::net::TcpStream::connect(provider_url.trim_start_matches("http://")).is_err(),
        "provider still listening"
    );
}
