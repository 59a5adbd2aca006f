//! Relay v2 + DCUtR hole punching between two peers behind two NATs, each its own Linux
//! network namespace: a relay on a "public" bridge (198.18.0.1, RFC 2544 test range), two
//! NAT routers on it (198.18.0.2, 198.18.0.3) masquerading a private LAN each (10.1.0.0/24,
//! 10.2.0.0/24) and dropping unsolicited inbound packets, and one peer behind each. There
//! is no route between the LANs and no port forward: the peers first reach each other
//! through a circuit on the relay, DCUtR then punches a direct connection between the two
//! NATs' public addresses, the relayed one is closed, and an attest request goes over the
//! direct connection.
//!
//! The test binary re-executes itself under `ip netns exec` to run each node in its
//! namespace (`holepunch_child`, which does nothing unless `KHACHAPURI_PUNCH_ROLE` is set);
//! children report on stdout with one `READY …` / `RESULT …` line. Needs root and
//! iproute2 + nftables: without them the test fails, it never skips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout
)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use khachapuri_p2p::messages::*;
use khachapuri_p2p::{Keypair, Multiaddr, P2pConfig, P2pNode, PeerId, Responder};
use libp2p::multiaddr::Protocol;

const ROLE: &str = "KHACHAPURI_PUNCH_ROLE";
const RELAY_ID: &str = "KHACHAPURI_PUNCH_RELAY";
const LISTENER_ID: &str = "KHACHAPURI_PUNCH_LISTENER";
const LISTENER_PRIVATE: &str = "KHACHAPURI_PUNCH_PRIVATE";
const CHILD: &str = "holepunch_child";
const PREFIX: &str = "kpunch";
const RELAY_IP: &str = "198.18.0.1";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the network

/// Runs `program args…`; panics with its stderr when it fails or is missing.
fn run(program: &str, args: &[&str], stdin: Option<&str>) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("holepunch needs root with iproute2 and nftables: cannot run `{program}`: {e}")
    });
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "holepunch needs root with iproute2 and nftables: `{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The five namespaces of one run; dropping it deletes them (their veths and bridge go
/// with them).
struct Net {
    pid: u32,
    made: Vec<String>,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{PREFIX}{}-{role}", self.pid)
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        let ns = self.ns(ns);
        let mut all = vec!["-n", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all, None);
    }

    fn exec(&self, ns: &str, args: &[&str], stdin: Option<&str>) {
        let ns = self.ns(ns);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all, stdin);
    }

    /// Builds pub (relay, bridge), natA/natB (masquerade) and peerA/peerB.
    fn build() -> Self {
        remove_stale();
        let mut net = Net {
            pid: std::process::id(),
            made: Vec::new(),
        };
        for role in ["pub", "nata", "natb", "peera", "peerb"] {
            let ns = net.ns(role);
            run("ip", &["netns", "add", &ns], None);
            net.made.push(ns);
            net.ip(role, &["link", "set", "lo", "up"]);
        }
        net.ip("pub", &["link", "add", "br0", "type", "bridge"]);
        net.ip("pub", &["addr", "add", "198.18.0.1/24", "dev", "br0"]);
        net.ip("pub", &["link", "set", "br0", "up"]);
        // The "internet" routes nothing: no forwarding between anything in pub.
        net.exec("pub", &["sysctl", "-qw", "net.ipv4.ip_forward=0"], None);
        for (nat, peer, public, lan) in [
            ("nata", "peera", "198.18.0.2", "10.1.0"),
            ("natb", "peerb", "198.18.0.3", "10.2.0"),
        ] {
            let pub_ns = net.ns("pub");
            let peer_ns = net.ns(peer);
            let port = format!("to-{nat}");
            net.ip(
                nat,
                &["link", "add", "wan", "type", "veth", "peer", "name", &port],
            );
            net.ip(nat, &["link", "set", &port, "netns", &pub_ns]);
            net.ip("pub", &["link", "set", &port, "master", "br0"]);
            net.ip("pub", &["link", "set", &port, "up"]);
            net.ip(nat, &["addr", "add", &format!("{public}/24"), "dev", "wan"]);
            net.ip(nat, &["link", "set", "wan", "up"]);
            net.ip(
                nat,
                &["link", "add", "lan", "type", "veth", "peer", "name", "eth0"],
            );
            net.ip(nat, &["link", "set", "eth0", "netns", &peer_ns]);
            net.ip(nat, &["addr", "add", &format!("{lan}.1/24"), "dev", "lan"]);
            net.ip(nat, &["link", "set", "lan", "up"]);
            net.ip(
                peer,
                &["addr", "add", &format!("{lan}.2/24"), "dev", "eth0"],
            );
            net.ip(peer, &["link", "set", "eth0", "up"]);
            net.ip(
                peer,
                &["route", "add", "default", "via", &format!("{lan}.1")],
            );
            net.exec(nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"], None);
            net.exec(nat, &["nft", "-f", "-"], Some(NAT_RULES));
        }
        net
    }
}

/// A home router: masquerade out of `wan`, and from `wan` only what answers our own
/// traffic (unsolicited packets are dropped, not refused).
const NAT_RULES: &str = r#"
table ip nat {
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        oifname "wan" masquerade
    }
}
table inet filter {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
    }
}
"#;

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Deletes namespaces left by runs whose process is gone (killed before its Drop ran).
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

// ---------------------------------------------------------------- children

/// This test binary running one node in a namespace; killed when dropped.
struct Node {
    name: &'static str,
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Node {
    fn spawn(net: &Net, ns: &str, name: &'static str, env: &[(&str, String)]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns(ns)])
            .arg(exe)
            .args(["--exact", CHILD, "--nocapture", "--test-threads=1"])
            .env(ROLE, name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a node under ip netns exec");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Node { name, child, lines }
    }

    /// The words after `tag` on the first line starting with it.
    fn wait(&self, tag: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    // The harness's `test holepunch_child ... ` may precede the first line.
                    if let Some((_, rest)) = line.split_once(tag) {
                        return rest.split_whitespace().map(String::from).collect();
                    }
                    if let Some((_, why)) = line.split_once("FAIL ") {
                        panic!("{}: {why}", self.name);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{}: no `{tag}` line within {timeout:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before printing `{tag}`", self.name)
                }
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // `ip netns exec` execs the test binary: this pid is the node itself.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn peers_behind_two_nats_hole_punch_to_a_direct_connection() {
    let started = Instant::now();
    let net = Net::build();
    let relay = Node::spawn(&net, "pub", "relay", &[]);
    let relay_id = relay.wait("READY ", WAIT).remove(0);
    let listener = Node::spawn(&net, "peera", "listener", &[(RELAY_ID, relay_id.clone())]);
    let ready = listener.wait("READY ", WAIT);
    let (listener_id, private) = (ready[0].clone(), ready[1].clone());
    let dialer = Node::spawn(
        &net,
        "peerb",
        "dialer",
        &[
            (RELAY_ID, relay_id),
            (LISTENER_ID, listener_id),
            (LISTENER_PRIVATE, private.clone()),
        ],
    );
    let blocked = dialer.wait("BLOCKED ", WAIT);
    eprintln!("peerB → peerA without the relay: {}", blocked.join(" "));
    let result = dialer.wait("RESULT ", 2 * WAIT);
    // RESULT <direct addresses…>
    let direct = &result;
    assert!(!direct.is_empty(), "no direct connection");
    for addr in direct {
        assert!(!addr.contains("p2p-circuit"), "{addr} is relayed");
        assert!(
            addr.starts_with("/ip4/198.18.0.2/"),
            "{addr} is not peerA's NAT public address"
        );
    }
    eprintln!(
        "hole punched: direct {direct:?}; whole test {:?}",
        started.elapsed()
    );
    drop((dialer, listener, relay));
    drop(net);
}

// ---------------------------------------------------------------- the nodes

/// Answers attest with its own peer id and the nonce; the rest is never asked.
struct Echo(PeerId);

#[async_trait::async_trait]
impl Responder for Echo {
    async fn attest(&self, _from: PeerId, request: AttestRequest) -> AttestResponse {
        AttestResponse {
            evidence: [self.0.to_bytes(), request.nonce].concat(),
            ..AttestResponse::default()
        }
    }
    async fn capacity(&self, _from: PeerId, _request: CapacityRequest) -> Signed {
        Signed::default()
    }
    async fn provision(&self, _from: PeerId, _request: ProvisionRequest) -> Signed {
        Signed::default()
    }
}

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} not set"))
}

/// A NATed peer: TCP and QUIC on all interfaces, ephemeral ports (outgoing dials reuse
/// them, which is what lets the NAT mapping seen by the relay be punched).
async fn nated(key: Keypair, responder: Option<Arc<dyn Responder>>) -> P2pNode {
    let config = P2pConfig {
        listen: vec![
            addr("/ip4/0.0.0.0/tcp/0"),
            addr("/ip4/0.0.0.0/udp/0/quic-v1"),
        ],
        request_timeout: Duration::from_secs(10),
        ..P2pConfig::default()
    };
    let node = P2pNode::start(key, config, responder).await.unwrap();
    let n = &node;
    until("TCP and QUIC listeners", || async move {
        let addrs = n.listen_addrs().await.unwrap();
        let bound = |t: &str| addrs.iter().any(|a| a.to_string().contains(t));
        bound("/tcp/") && bound("/quic-v1")
    })
    .await;
    node
}

/// Polls `check` every 50 ms until true; panics after [`WAIT`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn relay_addrs(id: &str) -> (Multiaddr, Multiaddr) {
    (
        addr(&format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{id}")),
        addr(&format!("/ip4/{RELAY_IP}/udp/4001/quic-v1/p2p/{id}")),
    )
}

/// Connects to the relay over TCP and over QUIC, so identify tells us our NAT's
/// public address on both (DCUtR's candidates).
async fn join_relay(node: &P2pNode, relay: PeerId, tcp: &Multiaddr, quic: &Multiaddr) {
    node.dial(tcp.clone()).await.unwrap();
    node.dial(quic.clone()).await.unwrap();
    until("TCP and QUIC connections to the relay", || async move {
        node.connections(relay).await.unwrap().len() >= 2
    })
    .await;
    // Identify's answer (our observed address) arrives just after the connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn relay_node() {
    let config = P2pConfig {
        listen: vec![
            addr("/ip4/0.0.0.0/tcp/4001"),
            addr("/ip4/0.0.0.0/udp/4001/quic-v1"),
        ],
        external: vec![
            addr(&format!("/ip4/{RELAY_IP}/tcp/4001")),
            addr(&format!("/ip4/{RELAY_IP}/udp/4001/quic-v1")),
        ],
        relay_server: true,
        ..P2pConfig::default()
    };
    let node = P2pNode::start(Keypair::generate_ed25519(), config, None)
        .await
        .unwrap();
    node.listen_addrs().await.unwrap();
    println!("READY {}", node.peer_id());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn listener_node() {
    let relay_id = env(RELAY_ID);
    let relay: PeerId = relay_id.parse().unwrap();
    let (tcp, quic) = relay_addrs(&relay_id);
    let key = Keypair::generate_ed25519();
    let echo = Echo(key.public().to_peer_id());
    let node = nated(key, Some(Arc::new(echo))).await;
    join_relay(&node, relay, &tcp, &quic).await;
    node.listen_on(tcp.with(Protocol::P2pCircuit))
        .await
        .unwrap();
    let n = &node;
    until("a reservation on the relay", || async move {
        let addrs = n.listen_addrs().await.unwrap();
        addrs
            .iter()
            .any(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
    })
    .await;
    let addrs = node.listen_addrs().await.unwrap();
    let private = addrs
        .iter()
        .find(|a| a.to_string().starts_with("/ip4/10.1.0.2/tcp/"))
        .expect("a private TCP address");
    println!("READY {} {private}", node.peer_id());
    tokio::time::sleep(Duration::from_secs(120)).await;
}

async fn dialer_node() {
    let relay_id = env(RELAY_ID);
    let relay: PeerId = relay_id.parse().unwrap();
    let listener: PeerId = env(LISTENER_ID).parse().unwrap();
    let (tcp, quic) = relay_addrs(&relay_id);
    let node = nated(Keypair::generate_ed25519(), None).await;
    let n = &node;

    // Without the relay, peerA's private address is unreachable from here.
    let private: Multiaddr = env(LISTENER_PRIVATE).parse().unwrap();
    let socket = match (private.iter().next(), private.iter().nth(1)) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => SocketAddr::from((ip, port)),
        _ => panic!("{private} is not /ip4/…/tcp/…"),
    };
    let private_err = match TcpStream::connect_timeout(&socket, Duration::from_secs(3)) {
        Ok(_) => return println!("FAIL peerB reached peerA's private {socket} directly"),
        Err(e) => e,
    };
    // Nor is peerA behind its NAT's public address: unsolicited inbound is dropped.
    let public = SocketAddr::from(([198, 18, 0, 2], socket.port()));
    let public_err = match TcpStream::connect_timeout(&public, Duration::from_secs(1)) {
        Ok(_) => return println!("FAIL peerB reached {public} through peerA's NAT unpunched"),
        Err(e) => e,
    };
    println!("BLOCKED {socket}: {private_err}; {public}: {public_err}");

    join_relay(&node, relay, &tcp, &quic).await;
    let circuit = tcp.with(Protocol::P2pCircuit).with(Protocol::P2p(listener));
    node.dial(circuit).await.unwrap();
    let direct = |conns: &[(Multiaddr, bool)]| -> Vec<Multiaddr> {
        (conns.iter())
            .filter(|(_, relayed)| !relayed)
            .map(|(a, _)| a.clone())
            .collect()
    };
    until("a direct connection to peerA", || async move {
        !direct(&n.connections(listener).await.unwrap()).is_empty()
    })
    .await;

    // Drop the relayed path (each of them: discovery may have dialed the circuit too):
    // what follows can only go over the punched connection.
    until("the relayed connection to close", || async move {
        n.close_relayed(listener).await.unwrap();
        let conns = n.connections(listener).await.unwrap();
        !conns.is_empty() && conns.iter().all(|(_, relayed)| !relayed)
    })
    .await;
    let nonce = vec![7u8; 32];
    let answer = node
        .attest(
            listener,
            AttestRequest {
                nonce: nonce.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(answer.evidence, [listener.to_bytes(), nonce].concat());
    let conns = node.connections(listener).await.unwrap();
    let direct: Vec<String> = direct(&conns).iter().map(|a| a.to_string()).collect();
    assert_eq!(direct.len(), conns.len(), "{conns:?}");
    println!("RESULT {}", direct.join(" "));
}

/// One node of the test above, in the namespace it was started in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holepunch_child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match role.as_str() {
        "relay" => relay_node().await,
        "listener" => listener_node().await,
        "dialer" => dialer_node().await,
        other => panic!("unknown {ROLE} {other}"),
    }
}
