//! A provider reachable only through its tunnel: it runs in its own network namespace,
//! behind a NAT router namespace (veth pairs, nftables masquerade, default route), and
//! can reach the gateway on the host side of the veth, while the host has no route to it.
//!
//! ```text
//! host: gateway on 10.213.N.1 ──veth── router ns: 10.213.N.2 | masquerade | 10.214.N.1 ──veth── provider ns: 10.214.N.2
//! ```
//!
//! Needs root, `ip` and `nft`. A machine that cannot set this up fails the test with the
//! exact command that failed: it never skips. Traffic goes only to the namespaces made here.
//! The provider is this test binary run again inside the namespace (the
//! `netns_child_provider` test, which does nothing unless `KT_NETNS_CHILD` is set), so it
//! works the same under `cargo test` and `cargo nextest`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::hex;
use alloy_signer_local::PrivateKeySigner;
use common::*;
use khachapuri_tunnel::{run_tunnel, ViaTunnel};

fn sh(args: &[&str]) {
    sh_in(args, None);
}

fn sh_in(args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("netns setup: cannot run `{}`: {e}", args.join(" ")));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "netns setup failed: `{}`{} exited with {}: {}",
        args.join(" "),
        stdin.map(|s| format!(" <<< {s:?}")).unwrap_or_default(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The two namespaces and the host's veth end; removed on drop.
struct Topology {
    router: String,
    provider: String,
    host_if: String,
    gateway_ip: IpAddr,
    router_ip: IpAddr,
    provider_ip: IpAddr,
}

impl Topology {
    fn create() -> Self {
        let tag = format!(
            "{:06x}",
            (std::process::id() ^ rand::random::<u32>()) & 0xff_ffff
        );
        // A /24 pair no interface on this host uses yet.
        let used = String::from_utf8(
            Command::new("ip")
                .args(["-o", "-4", "addr"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let n = (1..=254u32)
            .map(|i| (i + rand::random::<u32>()) % 254 + 1)
            .find(|n| {
                !used.contains(&format!("10.213.{n}.")) && !used.contains(&format!("10.214.{n}."))
            })
            .expect("a free 10.213.N.0/30");
        let t = Topology {
            router: format!("ktr-{tag}"),
            provider: format!("ktp-{tag}"),
            host_if: format!("kth{tag}"),
            gateway_ip: format!("10.213.{n}.1").parse().unwrap(),
            router_ip: format!("10.213.{n}.2").parse().unwrap(),
            provider_ip: format!("10.214.{n}.2").parse().unwrap(),
        };
        let (r, p, h) = (t.router.as_str(), t.provider.as_str(), t.host_if.as_str());
        let (rh, rp, pr) = (
            format!("ktrh{tag}"),
            format!("ktrp{tag}"),
            format!("ktpr{tag}"),
        );
        let (gw, rt) = (
            format!("{}/30", t.gateway_ip),
            format!("{}/30", t.router_ip),
        );
        let (rin, pin) = (format!("10.214.{n}.1/24"), format!("{}/24", t.provider_ip));
        let via = format!("10.214.{n}.1");
        sh(&["ip", "netns", "add", r]);
        sh(&["ip", "netns", "add", p]);
        sh(&["ip", "link", "add", h, "type", "veth", "peer", "name", &rh]);
        sh(&["ip", "link", "set", &rh, "netns", r]);
        sh(&["ip", "addr", "add", &gw, "dev", h]);
        sh(&["ip", "link", "set", h, "up"]);
        sh(&["ip", "-n", r, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", r, "addr", "add", &rt, "dev", &rh]);
        sh(&["ip", "-n", r, "link", "set", &rh, "up"]);
        sh(&[
            "ip", "-n", r, "link", "add", &rp, "type", "veth", "peer", "name", &pr,
        ]);
        sh(&["ip", "-n", r, "link", "set", &pr, "netns", p]);
        sh(&["ip", "-n", r, "addr", "add", &rin, "dev", &rp]);
        sh(&["ip", "-n", r, "link", "set", &rp, "up"]);
        sh(&["ip", "-n", p, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", p, "addr", "add", &pin, "dev", &pr]);
        sh(&["ip", "-n", p, "link", "set", &pr, "up"]);
        sh(&["ip", "-n", p, "route", "add", "default", "via", &via]);
        sh(&[
            "ip",
            "netns",
            "exec",
            r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        let rules = format!(
            "table ip kt_nat {{\n  chain snat_out {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{rh}\" masquerade\n  }}\n}}\n\
             table ip kt_filter {{\n  chain fw {{\n    type filter hook forward priority filter; policy accept;\n    ct state established,related accept\n    iifname \"{rh}\" drop\n  }}\n}}\n"
        );
        sh_in(&["ip", "netns", "exec", r, "nft", "-f", "-"], Some(&rules));
        // The host routes the provider's network into the router, so the reachability
        // check below stays inside our namespaces (never out of the default route), and it
        // is the NAT's forward filter, as with a home router, that keeps the host out.
        let inner = format!("10.214.{n}.0/24");
        sh(&[
            "ip",
            "route",
            "add",
            &inner,
            "via",
            &t.router_ip.to_string(),
            "dev",
            h,
        ]);
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.provider, &self.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}

/// The provider process inside the namespace, killed on drop.
struct ChildProvider(Child);

impl Drop for ChildProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_provider_behind_nat_is_reachable_only_through_its_tunnel() {
    let topo = Topology::create();
    let key = PrivateKeySigner::random();
    let gw = start_gateway(
        SocketAddr::new(topo.gateway_ip, 0),
        |_| {},
        operators(&[("natted", key.address())]),
    )
    .await;
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &topo.provider])
        .arg(&exe)
        .args([
            "--exact",
            "netns_child_provider",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KT_NETNS_CHILD", "1")
        .env("KT_GATEWAY", gw.url())
        .env("KT_KEY", hex::encode(key.to_bytes()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the provider in netns {}: {e}", topo.provider));
    let _child = ChildProvider(child);

    let h = wait_tunnel(&gw.server, "natted", Duration::from_secs(20)).await;
    // The gateway sees the router's address: the provider is behind NAT.
    assert_eq!(
        h.peer().map(|p| p.ip()),
        Some(topo.router_ip),
        "tunnel did not come through the NAT"
    );
    let resp = h.send_request(get_req("/where")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = text(resp).await;
    let ns_ino = std::fs::metadata(format!("/run/netns/{}", topo.provider))
        .unwrap()
        .ino();
    assert_eq!(
        body,
        format!("net:[{ns_ino}] via {}", topo.gateway_ip),
        "answer did not come from the namespace"
    );

    // And the host cannot reach the provider directly, although the provider listens on
    // CHILD_PORT and the host routes its network to the router: the NAT drops it.
    let direct = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(SocketAddr::new(topo.provider_ip, CHILD_PORT)),
    )
    .await;
    assert!(
        !matches!(direct, Ok(Ok(_))),
        "the host reached the provider at {}:{CHILD_PORT} directly",
        topo.provider_ip
    );
    gw.stop().await;
}

/// A port the provider process listens on inside its namespace, to show the host cannot
/// reach it.
const CHILD_PORT: u16 = 7777;

/// The provider side of the test above, run inside the namespace. Without
/// `KT_NETNS_CHILD` (i.e. as an ordinary test) it returns at once.
#[tokio::test]
async fn netns_child_provider() {
    if std::env::var_os("KT_NETNS_CHILD").is_none() {
        return;
    }
    let key: PrivateKeySigner = std::env::var("KT_KEY").unwrap().parse().unwrap();
    let gateway = std::env::var("KT_GATEWAY").unwrap();
    let router = axum::Router::new().route(
        "/where",
        axum::routing::get(|req: axum::extract::Request| async move {
            let ns = std::fs::read_link("/proc/self/ns/net").unwrap();
            let via = req
                .extensions()
                .get::<ViaTunnel>()
                .map(|v| v.gateway.to_string())
                .unwrap_or_default();
            format!("{} via {via}", ns.display())
        }),
    );
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", CHILD_PORT))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    // Runs until the parent closes our stdin (or kills us).
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            use std::io::Read;
            let mut sink = Vec::new();
            std::io::stdin().read_to_end(&mut sink)
        })
        .await;
    };
    run_tunnel(
        test_client_config(&gateway, "natted"),
        Arc::new(key),
        router,
        stdin_closed,
    )
    .await
    .unwrap();
}
