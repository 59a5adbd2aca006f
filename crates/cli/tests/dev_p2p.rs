//! Seed 003 through the real binary: `khachapuri dev --p2p` runs its providers on libp2p
//! too, `deploy --p2p` dials the provider at the addresses its registry record
//! advertises (or, for a public spec, finds one through the DHT, bootstrapping from the
//! profile), attests it under the dev test root, takes its offer and has it provision the
//! sealed deployment; then `call` pays for a call of it. `provider attest` shows the same
//! peer id the publisher attested.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::Dev;

#[test]
fn deploy_over_p2p_provisions_a_callable_deployment() {
    let dev = Dev::start_with(&["--p2p", "--providers", "2"]);
    let out = dev.ok(&[
        "deploy",
        "examples/hello",
        "--provider",
        "dev2",
        "--p2p",
        "--json",
    ]);
    let deployed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let cid = deployed["cid"].as_str().unwrap();
    let p2p = &deployed["p2p"];
    assert_eq!(p2p["tee"], "Test", "{deployed}");
    let info = dev.info();
    let dev2_url = info["providers"][1]["url"].as_str().unwrap();
    assert_eq!(p2p["url"], format!("{dev2_url}/{cid}/"), "{deployed}");
    assert_eq!(
        dev.ok(&["call", cid, "--provider", "dev2"]),
        "Hello from Khachapuri!\n"
    );

    // A public spec names no provider: the DHT finds one.
    let out = dev.ok(&["deploy", "examples/hello", "--public", "--p2p", "--json"]);
    let public: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(public["p2p"]["tee"], "Test", "{public}");

    // A publisher that only accepts SEV-SNP finds the dev providers (test evidence)
    // through the DHT and refuses every one, saying why.
    let out = dev.run(
        &[
            "deploy",
            "examples/hello",
            "--public",
            "--p2p",
            "--require-tee",
            "--tee",
            "sev-snp",
        ],
        &common::root(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no provider found through the DHT was acceptable")
            && err.contains("evidence kind test is not accepted"),
        "{err}"
    );

    // `provider attest` (dev's config) names dev's peer id and binds its keys.
    let preview: serde_json::Value =
        serde_json::from_str(&dev.ok(&["provider", "attest"])).unwrap();
    assert_eq!(preview["evidence"], "none");
    assert_eq!(preview["report_data"].as_str().unwrap().len(), 2 + 128);
    assert!(preview["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
}
