//! `khachapuri dev --providers N` through the real binary: N providers registered under
//! `dev`, `dev2`, … each answering paid calls, and the local chain dying with the process
//! that started it even when that process is killed without a chance to clean up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::Dev;

#[test]
fn three_providers_are_registered_and_paid() {
    let dev = Dev::start_with(&["--providers", "3"]);
    let info = dev.info();
    let names: Vec<&str> = info["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev", "dev2", "dev3"], "{info}");

    let list: serde_json::Value =
        serde_json::from_str(&dev.ok(&["registry", "list", "--json"])).unwrap();
    let mut registered: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    registered.sort_unstable();
    assert_eq!(registered, ["dev", "dev2", "dev3"], "{list}");

    // Each provider has its own operator and serves a paid call of its own deployment.
    let dev3_url = info["providers"][2]["url"].as_str().unwrap();
    let deployed: serde_json::Value = serde_json::from_str(&dev.ok(&[
        "deploy",
        "examples/hello",
        "--provider",
        "dev3",
        "--json",
    ]))
    .unwrap();
    let cid = deployed["cid"].as_str().unwrap();
    assert_eq!(deployed["url"], format!("{dev3_url}/{cid}"));
    assert_eq!(
        dev.ok(&["call", cid, "--provider", "dev3"]),
        "Hello from Khachapuri!\n"
    );
    // Through the gateway: the CLI's voucher passes through untouched and pays dev3.
    assert_eq!(
        dev.ok(&["call", cid, "--provider", "dev3", "--gateway"]),
        "Hello from Khachapuri!\n"
    );
    let head = dev.ok(&["call", cid, "--provider", "dev3", "--gateway", "-i"]);
    assert!(head.contains("khachapuri-receipt"), "{head}");
    // curl as is: `*.localhost` is loopback, the Host header names the provider; unpaid,
    // the provider's 402 comes back through the gateway.
    let gateway = info["gateway_url"].as_str().expect("info has gateway_url");
    let port = gateway.rsplit(':').next().unwrap();
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://dev3.localhost:{port}/{cid}/"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "402");

    // Provider selection: the same ranking for `registry select` and a deploy naming none.
    let select: serde_json::Value =
        serde_json::from_str(&dev.ok(&["registry", "select", "--json"])).unwrap();
    let ranked: Vec<&str> = select["ranked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        ranked,
        ["dev", "dev2", "dev3"],
        "equal records rank by name: {select}"
    );
    assert!(select["ranked"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("reputation"));
    let none: serde_json::Value =
        serde_json::from_str(&dev.ok(&["registry", "select", "--region", "mars", "--json"]))
            .unwrap();
    assert_eq!(none["ranked"].as_array().unwrap().len(), 0, "{none}");
    assert_eq!(none["excluded"].as_array().unwrap().len(), 3, "{none}");
    let out = dev.run(&["deploy", "examples/hello", "--json"], &common::root());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chose dev ("),
        "deploy says which and why: {stderr}"
    );

    let operators: std::collections::BTreeSet<&str> = info["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    assert_eq!(operators.len(), 3, "one operator per provider: {info}");
}

#[test]
fn anvil_dies_with_a_killed_dev() {
    let mut dev = Dev::start();
    let pid = dev.child.id();
    let anvil = children(pid)
        .into_iter()
        .find(|c| comm(*c).is_some_and(|name| name.contains("anvil")))
        .unwrap_or_else(|| panic!("no anvil among the children of khachapuri dev ({pid})"));
    // SIGKILL: no destructor runs, only the kernel's parent-death signal can stop anvil.
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(anvil) {
        assert!(
            Instant::now() < deadline,
            "anvil ({anvil}) outlived its killed parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Child pids of `pid`, over all its threads.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("children");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()
}

/// A zombie (reaped by nobody yet) counts as dead: it runs no more.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
