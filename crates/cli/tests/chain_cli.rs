//! The chain commands against a real anvil: a payer and a provider, each with its own home
//! and profile, as `khachapuri dev` would write them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use khachapuri_chain::{
    deploy_all, mint_to, parse_usdc, Chain, DeployOptions, Deployment, RegistryClient,
};
use khachapuri_devnet::{dev_signer, Anvil, DEV_KEYS};

/// A libp2p address as `provider register --p2p` takes it.
const P2P_ADDR: &str =
    "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

fn khachapuri(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_khachapuri"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KHACHAPURI_PASSWORD", "correct horse")
        .output()
        .expect("run khachapuri")
}

/// Runs with `input` on stdin (keys are never passed in argv).
fn with_stdin(home: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_khachapuri"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KHACHAPURI_PASSWORD", "correct horse")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn khachapuri");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = khachapuri(home, args);
    assert!(
        out.status.success(),
        "khachapuri {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(home, args)).expect("json output")
}

/// Writes a `dev` profile (with an anvil dev key in the clear) and makes it active.
fn write_profile(home: &Path, anvil: &Anvil, d: &Deployment, dev_key: Option<&str>) {
    std::fs::create_dir_all(home.join("profiles")).unwrap();
    let mut text = format!(
        "rpc_url = \"{}\"\nchain_id = {}\nescrow = \"{}\"\nregistry = \"{}\"\ntoken = \"{}\"\n",
        anvil.endpoint(),
        d.chain_id,
        d.escrow,
        d.registry,
        d.token
    );
    if let Some(k) = dev_key {
        text.push_str(&format!("dev_key = \"{k}\"\n"));
    }
    std::fs::write(home.join("profiles/dev.toml"), text).unwrap();
    std::fs::write(home.join("config.toml"), "active_profile = \"dev\"\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_escrow_registry_and_provider_register() {
    let anvil = Anvil::spawn().expect("anvil");
    let deployer = Chain::connect(&anvil.endpoint(), Some(dev_signer(0)))
        .await
        .unwrap();
    let d = deploy_all(&deployer, DeployOptions::dev()).await.unwrap();
    mint_to(
        &deployer,
        d.token,
        &[dev_signer(1).address()],
        parse_usdc("100").unwrap(),
    )
    .await
    .unwrap();

    let payer_home = tempfile::tempdir().unwrap();
    let provider_home = tempfile::tempdir().unwrap();
    write_profile(payer_home.path(), &anvil, &d, Some(DEV_KEYS[1]));
    write_profile(provider_home.path(), &anvil, &d, Some(DEV_KEYS[2]));
    let payer = payer_home.path();
    let prov = provider_home.path();

    // The provider registers; the key pair is created in its home.
    let node = ok(
        prov,
        &[
            "provider",
            "register",
            "dev",
            "--endpoint",
            "http://127.0.0.1:7070",
            "--region",
            "local",
            "--p2p",
            P2P_ADDR,
        ],
    );
    assert_eq!(node.trim(), khachapuri_chain::node_of("dev").to_string());
    assert!(prov.join("keys/x25519.key").exists());
    let rec = RegistryClient::new(&deployer, d.registry)
        .resolve("dev")
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(rec.operator, dev_signer(2).address());
    assert_eq!(rec.url, "http://127.0.0.1:7070");
    assert_ne!(rec.pubkey, [0u8; 32]);
    let registry = RegistryClient::new(&deployer, d.registry);
    assert_eq!(registry.p2p_addrs("dev").await.unwrap(), vec![P2P_ADDR]);
    // An address publishers could not dial is refused before any transaction.
    let out = khachapuri(
        prov,
        &[
            "provider",
            "register",
            "dev",
            "--endpoint",
            "http://127.0.0.1:7070",
            "--p2p",
            "/ip4/127.0.0.1/tcp/4001",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/p2p/<peer id>"));

    // The payer deposits and funds the provider by name.
    assert_eq!(
        ok(payer, &["wallet", "address"]).trim(),
        dev_signer(1).address().to_string()
    );
    ok(payer, &["escrow", "deposit", "10"]);
    ok(payer, &["escrow", "fund", "dev", "5"]);
    let status = json(payer, &["escrow", "status", "--json"]);
    assert_eq!(status["balance"], "5");
    assert_eq!(status["wallet_usdc"], "90");
    assert_eq!(status["channels"][0]["provider"], "dev");
    assert_eq!(status["channels"][0]["remaining"], "5");
    assert_eq!(status["channels"][0]["epoch"], 0);
    let text = ok(payer, &["escrow", "status"]);
    assert!(text.contains("dev"), "{text}");

    ok(payer, &["escrow", "withdraw", "1.5"]);
    let bal = json(payer, &["wallet", "balance", "--json"]);
    assert_eq!(bal["usdc"], "91.5");
    assert_eq!(bal["escrow_balance"], "3.5");

    // Unlock, then reclaim is refused until the delay passes (with a hint).
    ok(payer, &["escrow", "unlock", "dev"]);
    let out = khachapuri(payer, &["escrow", "reclaim", "dev"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("UnlockPending") && err.contains("hint"),
        "{err}"
    );

    // Bad amounts and unknown providers fail clearly.
    let out = khachapuri(payer, &["escrow", "deposit", "1.0000001"]);
    assert!(!out.status.success());
    let out = khachapuri(payer, &["escrow", "fund", "nobody", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no provider named"));

    // Registry readers.
    let list = json(payer, &["registry", "list", "--json"]);
    assert_eq!(list[0]["name"], "dev");
    assert_eq!(list[0]["regions"][0], "local");
    let one = json(payer, &["registry", "resolve", "dev", "--json"]);
    assert_eq!(one["url"], "http://127.0.0.1:7070");
    let tables = json(payer, &["registry", "tables", "--json"]);
    assert_eq!(tables, serde_json::json!([]));

    // An encrypted wallet in a fresh home.
    let fresh = tempfile::tempdir().unwrap();
    write_profile(fresh.path(), &anvil, &d, None);
    let out = khachapuri(fresh.path(), &["wallet", "address"]);
    assert!(!out.status.success(), "no wallet yet");
    let addr = ok(fresh.path(), &["wallet", "new"]);
    assert!(fresh.path().join("keys/wallet.json").exists());
    assert_eq!(ok(fresh.path(), &["wallet", "address"]), addr);
    let bal = json(fresh.path(), &["wallet", "balance", "--json"]);
    assert_eq!(bal["usdc"], "0");
    let out = khachapuri(fresh.path(), &["wallet", "new"]);
    assert!(!out.status.success(), "never overwrites a wallet");

    // Importing a key from stdin; the keystore then pays like the dev key did.
    let imported = tempfile::tempdir().unwrap();
    write_profile(imported.path(), &anvil, &d, None);
    let out = with_stdin(imported.path(), &["wallet", "import"], DEV_KEYS[1]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        dev_signer(1).address().to_string()
    );
    ok(imported.path(), &["escrow", "deposit", "0.25"]);
    let status = json(imported.path(), &["escrow", "status", "--json"]);
    assert_eq!(status["balance"], "3.75");
}
