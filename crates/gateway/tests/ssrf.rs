//! A registry record is written by a stranger: outside `--dev`, a name pointing at
//! loopback, at an IPv4-mapped loopback, at a host name that resolves to loopback, or at a
//! private-range host (a real one, in a network namespace this test builds) is refused
//! before any byte is sent there; `--dev` allows loopback but never the gateway itself.
//! Traffic goes only to loopback and to the namespace the test made.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

async fn status_and_error(url: &str) -> (u16, String) {
    let r = common::client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.unwrap_or_default();
    (status, v["error"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_dev_loopback_targets_are_refused() {
    let t = common::start(1, true).await;
    let hello = t.deploy(&khachapuri_testkit::hello());
    let dev_url = t.net.dev().url.clone();
    let port = dev_url.rsplit(':').next().unwrap().to_string();
    t.register(9, "mapped", &format!("http://[::ffff:127.0.0.1]:{port}"))
        .await;
    t.register(8, "named", &format!("http://localhost:{port}"))
        .await;
    let (strict, _launched, _stop) = t.launch_gateway(|c| c.dev = false).await;

    // The same provider answers through the dev gateway…
    let r = common::client()
        .get(format!("{}/dev/{hello}/", t.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // …and is refused by a production gateway, in every spelling of loopback.
    for name in ["dev", "mapped", "named"] {
        let (status, error) = status_and_error(&format!("{strict}/{name}/{hello}/")).await;
        assert_eq!(status, 502, "{name}: {error}");
        assert!(error.contains("loopback"), "{name}: {error}");
    }
    // Even in dev, the gateway never forwards to itself.
    t.register(7, "itself", &t.gateway).await;
    let (status, error) = status_and_error(&format!("{}/itself/{hello}/", t.gateway)).await;
    assert_eq!(status, 502, "{error}");
    assert!(error.contains("own address"), "{error}");
}

/// A network namespace with a veth pair: the host side `10.231.N.1/30`, the namespace
/// side `10.231.N.2/30` running a plain HTTP server. Removed on drop.
struct PrivateHost {
    ns: String,
    ip: String,
    server: Child,
}

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (needs iproute2 and root)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed (the test needs root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PrivateHost {
    fn start() -> Self {
        let n = std::process::id() % 250;
        let ns = format!("khgw{n}");
        let (host_if, ns_if) = (format!("khgwh{n}"), format!("khgwn{n}"));
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        run(&["ip", "netns", "add", &ns]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("10.231.{n}.1/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let ip = format!("10.231.{n}.2");
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/30"),
            "dev",
            &ns_if,
        ]);
        run(&["ip", "-n", &ns, "link", "set", &ns_if, "up"]);
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "python3",
                "-m",
                "http.server",
                "8000",
                "--bind",
                &ip,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server inside the namespace");
        Self { ns, ip, server }
    }
}

impl Drop for PrivateHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_range_host_is_refused_even_in_dev() {
    let host = PrivateHost::start();
    let url = format!("http://{}:8000", host.ip);
    // The host is really there: the test reaches it directly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match common::client().get(format!("{url}/")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the namespace's server never answered: {other:?}"),
        }
    }
    let t = common::start(1, true).await;
    t.register(9, "inside", &url).await;
    let (strict, _launched, _stop) = t.launch_gateway(|c| c.dev = false).await;
    for gateway in [&t.gateway, &strict] {
        let (status, error) = status_and_error(&format!("{gateway}/inside/bafkqaaa/")).await;
        assert_eq!(status, 502, "{error}");
        assert!(error.contains("private-network"), "{error}");
    }
}
