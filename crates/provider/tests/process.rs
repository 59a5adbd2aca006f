//! The `process` runtime over real HTTP: `examples/native-hello` and hostile native
//! programs (tests/guests/native, compiled statically here) and hostile archives, each
//! contained with a clear status while the node keeps serving.
//!
//! These need bubblewrap and a C compiler with static glibc (scripts/setup) and fail
//! loudly without them.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use khachapuri_provider::NodeConfig;
use khachapuri_testkit::{native_c, native_hello, tar_of, tar_with_symlink, zip_bomb};
use khachapuri_types::{RuntimeKind, Spec};

mod common;

use common::client;
use common::free::{start, Net};

/// uids per node: more than its `max_instances` + `process_max_warm`.
const UIDS: u32 = 64;

/// A uid range of its own for every node: test binaries (and other people's test runs)
/// on this machine run at once, and sandboxes sharing uids would share `RLIMIT_NPROC`.
fn uid_base() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 15;
    1_000_000_000 + (std::process::id() % 500_000) * 2_000 + n * 128
}

/// A free node running all three runtimes, `/tmp` capped at 1 MiB, archives at 8 MiB.
async fn node(tweak: impl FnOnce(&mut NodeConfig)) -> (Net, u32) {
    let base = uid_base();
    let net = start(|c| {
        c.runtimes = khachapuri_provider::KNOWN_RUNTIMES
            .map(String::from)
            .to_vec();
        c.process_tmp_bytes = 1 << 20;
        c.max_unpacked_bytes = 8 << 20;
        c.process_uid_base = base;
        c.process_uids = UIDS;
        // Every test runs through the warm pool (the default); 32 + 16 uids fit.
        c.max_instances = 32;
        tweak(c);
    })
    .await;
    (net, base)
}

fn deploy(net: &Net, archive: &Bytes, edit: impl FnOnce(&mut Spec)) -> String {
    net.deploy(archive, RuntimeKind::Process, edit)
}

fn with_env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl FnOnce(&mut Spec) + 'a {
    move |s: &mut Spec| {
        for (k, v) in vars {
            s.env.insert((*k).into(), (*v).into());
        }
    }
}

/// `native-hello` still answers: the node kept serving.
async fn still_serving(net: &Net, hello: &str) {
    let (status, body) = net.get(&format!("/{hello}/after")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /after"), "{body}");
}

/// Processes on the host running as one of `base .. base + UIDS`.
fn sandbox_processes(base: u32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        if uid.is_some_and(|u| (base..base + UIDS).contains(&u)) {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_hello_answers_over_http_and_process_is_advertised() {
    let (net, _) = node(|_| {}).await;
    let hello = deploy(&net, &native_hello(), |_| {});
    let (status, body) = net.get(&format!("/{hello}/greet?x=1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from Khachapuri!"), "{body}");
    assert!(
        body.contains("(native via process) GET /greet?x=1"),
        "{body}"
    );
    // Unpacked once, then reused.
    for _ in 0..3 {
        assert_eq!(net.get(&format!("/{hello}/")).await.0, 200);
    }
    let (_, metrics) = net.get("/metrics").await;
    assert!(
        metrics.contains("khachapuri_cache_entries{cache=\"unpacked_disk\"} 1"),
        "{metrics}"
    );
    let (_, wk) = net.get("/.well-known/khachapuri").await;
    let wk: serde_json::Value = serde_json::from_str(&wk).unwrap();
    assert_eq!(
        wk["runtimes"],
        serde_json::json!(["wasi-http", "wagi", "process"])
    );
}

#[tokio::test]
async fn a_node_without_process_refuses_it_with_501() {
    let net = start(|_| {}).await;
    let hello = deploy(&net, &native_hello(), |_| {});
    let (status, body) = net.get(&format!("/{hello}/")).await;
    assert_eq!(status, 501, "{body}");
    assert!(body.contains("does not run `process`"), "{body}");
    assert!(body.contains("runtime_unavailable"), "{body}");
    let (_, wk) = net.get("/.well-known/khachapuri").await;
    assert!(!wk.contains("\"process\""), "{wk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_an_endless_loop_and_a_memory_hog_are_contained() {
    // No warm pool here: the test counts every process of the sandbox uids to prove a
    // killed call leaves none, and started-ahead sandboxes would be counted too.
    let (net, base) = node(|c| {
        c.default_timeout_ms = 1_500;
        c.process_warm_per_program = 0;
    })
    .await;
    let hello = deploy(&net, &native_hello(), |_| {});
    for (name, want) in [
        ("forkbomb", 504),
        ("spin", 504),
        ("memhog", 500),
        ("flood", 502),
    ] {
        let cid = deploy(&net, &native_c(name), |s| s.limits.memory_mb = Some(64));
        let started = Instant::now();
        let (status, body) = net.get(&format!("/{cid}/")).await;
        assert_eq!(status, want, "{name}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{name} took {:?}",
            started.elapsed()
        );
        if name == "memhog" {
            assert!(body.contains("address space"), "{body}");
        }
        still_serving(&net, &hello).await;
        // Nothing of the sandbox outlives its call.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = sandbox_processes(base);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{name} left processes {left:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn writes_outside_tmp_fail_and_tmp_is_capped() {
    let (net, _) = node(|_| {}).await;
    let hello = deploy(&net, &native_hello(), |_| {});
    let host = tempfile::tempdir().unwrap();
    let outside = host.path().join("pwned");
    let env = [("OUTSIDE", outside.to_str().unwrap())];
    let cid = deploy(&net, &native_c("write_outside"), with_env(&env));
    let (status, body) = net.get(&format!("/{cid}/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("WRITTEN"), "{body}");
    assert_eq!(body.matches(": denied (").count(), 7, "{body}");
    assert!(body.contains("/tmp: writable"), "{body}");
    assert!(!outside.exists(), "the program wrote on the host");

    let cid = deploy(&net, &native_c("fill_tmp"), |_| {});
    let (status, body) = net.get(&format!("/{cid}/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let wrote: u64 = body
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(wrote <= 1 << 20, "wrote {wrote} bytes into a 1 MiB /tmp");
    still_serving(&net, &hello).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_reach_nothing_on_the_host() {
    let (net, _) = node(|_| {}).await;
    let hello = deploy(&net, &native_hello(), |_| {});
    // A listener on the host's loopback the program tries to reach.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_port = target.local_addr().unwrap().port().to_string();
    // A port free on the host that the program listens on inside.
    let listen_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let lp = listen_port.to_string();
    let env = [
        ("TARGET_PORT", target_port.as_str()),
        ("LISTEN_PORT", lp.as_str()),
        ("LISTEN_MS", "1500"),
    ];
    let cid = deploy(&net, &native_c("sockets"), with_env(&env));
    let url = format!("{}/{cid}/", net.url);
    let call = tokio::spawn(async move {
        let r = client().get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    // While the program listens inside, nothing answers on that port outside.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let probe = tokio::net::TcpStream::connect(("127.0.0.1", listen_port)).await;
    assert!(
        probe.is_err(),
        "the sandbox's listener is reachable from the host"
    );
    let (status, body) = call.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("connect: failed"), "{body}");
    assert!(body.contains("listen: listening"), "{body}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), target.accept()).await;
    assert!(accepted.is_err(), "the host listener got a connection");
    still_serving(&net, &hello).await;
}

/// A descriptor of this process without close-on-exec, as a careless parent leaves them.
fn inherited_fd() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    rustix::io::fcntl_setfd(&f, rustix::io::FdFlags::empty()).unwrap();
    assert!(f.as_raw_fd() > 2);
    f
}

#[tokio::test]
async fn host_secrets_and_the_data_dir_are_out_of_sight() {
    let data_dir = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = data_dir.clone();
    let unpacked = std::sync::Arc::new(std::sync::Mutex::new(std::path::PathBuf::new()));
    let seen_unpacked = unpacked.clone();
    let (net, _) = node(move |c| {
        // A data dir only root may enter (like one under /root): the sandbox uids cannot
        // reach artifacts unpacked in it, so the node unpacks under the temp dir.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&c.data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        *seen.lock().unwrap() = c.data_dir.display().to_string();
        *seen_unpacked.lock().unwrap() = c.process_config().unwrap().reachable_dir();
    })
    .await;
    let unpacked = unpacked.lock().unwrap().clone();
    assert!(
        unpacked.starts_with(std::env::temp_dir())
            && !unpacked.starts_with(&*data_dir.lock().unwrap())
    );
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            khachapuri_archive::remove_tree(&self.0);
        }
    }
    let _cleanup = Cleanup(unpacked);
    let hello = deploy(&net, &native_hello(), |_| {});
    let data = data_dir.lock().unwrap().clone();
    assert!(std::path::Path::new(&data).is_dir());
    let env = [("DATA_DIR", data.as_str())];
    let cid = deploy(&net, &native_c("snoop"), with_env(&env));
    let (status, body) = net.get(&format!("/{cid}/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("READ"), "{body}");
    assert_eq!(body.matches(": denied (").count(), 4, "{body}");
    // Only stdin, stdout and stderr: no descriptor of the node leaks in (not even those
    // it inherited without close-on-exec: this test's runner may pass some).
    let _inherited = inherited_fd();
    let fds: Vec<&str> = body.lines().filter(|l| l.starts_with("fd ")).collect();
    assert_eq!(fds, ["fd 0", "fd 1", "fd 2"], "{body}");
    let pids: u32 = body
        .lines()
        .find_map(|l| l.strip_prefix("pids "))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(pids <= 3, "the sandbox sees {pids} processes: {body}");
    still_serving(&net, &hello).await;
}

#[tokio::test]
async fn hostile_archives_are_refused_and_nothing_lands_outside() {
    let (net, _) = node(|_| {}).await;
    let hello = deploy(&net, &native_hello(), |_| {});
    let main = {
        let tar = native_hello();
        // The program inside the example's archive (one ustar entry: header, then data).
        tar[512..].to_vec()
    };
    let cases: [(&str, Bytes, &str); 5] = [
        (
            "dotdot",
            tar_of(&[("main", 0o755, &main), ("../evil", 0o644, b"x")]),
            "`..`",
        ),
        (
            "absolute",
            tar_of(&[("main", 0o755, &main), ("/tmp/evil", 0o644, b"x")]),
            "absolute",
        ),
        (
            "symlink",
            tar_with_symlink(&main, "shadow", "/etc/shadow"),
            "outside",
        ),
        (
            "symlink-up",
            tar_with_symlink(&main, "up", "../../.."),
            "outside",
        ),
        (
            "zip-bomb",
            zip_bomb(&main, 64 << 20),
            "more than 8388608 bytes",
        ),
    ];
    for (name, archive, why) in cases {
        assert!(archive.len() < 2 << 20, "{name}: {} bytes", archive.len());
        let cid = deploy(&net, &archive, |_| {});
        let (status, body) = net.get(&format!("/{cid}/")).await;
        assert_eq!(status, 500, "{name}: {body}");
        assert!(body.contains("invalid process artifact"), "{name}: {body}");
        assert!(body.contains(why), "{name}: {body}");
        still_serving(&net, &hello).await;
    }
    assert!(!std::path::Path::new("/tmp/evil").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_answers_503() {
    let (net, _) = node(|c| {
        c.max_instances = 1;
        c.default_timeout_ms = 1_500;
    })
    .await;
    let hello = deploy(&net, &native_hello(), |_| {});
    assert_eq!(net.get(&format!("/{hello}/")).await.0, 200);
    let spin = deploy(&net, &native_c("spin"), |_| {});
    let url = format!("{}/{spin}/", net.url);
    let busy = tokio::spawn(async move { client().get(url).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = net.get(&format!("/{hello}/")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(busy.await.unwrap().as_u16(), 504);
    still_serving(&net, &hello).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_sandboxes_serve_one_request_each_with_its_own_env_and_body() {
    let (net, base) = node(|c| {
        c.max_instances = 16;
        c.process_warm_per_program = 2;
        c.process_max_warm = 4;
    })
    .await;
    let cid = deploy(&net, &native_c("once"), with_env(&[("GREETING", "hi")]));
    let hello = deploy(&net, &native_hello(), |_| {});
    for i in 0..6 {
        let body = format!("call {i}");
        let resp = client()
            .post(format!("{}/{cid}/", net.url))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains("tmp: fresh"),
            "call {i} saw another call's /tmp: {text}"
        );
        assert!(text.contains("greeting: hi"), "{text}");
        assert!(text.contains("method: POST"), "{text}");
        assert!(text.contains(&format!("body: {body}")), "{text}");
        // The refill runs in the background: give it a moment so later calls meet a
        // started-ahead sandbox, not only ones spawned on arrival.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Native-hello through the pool too, with its CGI variables from this request.
    let (status, body) = net.get(&format!("/{hello}/greet?x=2")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("GET /greet?x=2"), "{body}");
    // The pool holds at most process_max_warm waiting sandboxes (a few processes each).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Zombies do not count: the inner bubblewrap of a finished sandbox is re-parented
    // to the host's init, which reaps it in its own time.
    let waiting: Vec<String> = sandbox_processes(base)
        .into_iter()
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            !matches!(state, Some('Z') | None)
        })
        .collect();
    let launchers = waiting
        .iter()
        .filter(|p| {
            // The launcher itself (bubblewrap's argv names it too); comm is cut at 15 bytes.
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "khachapuri-laun")
        })
        .count();
    // Two programs were called, two sandboxes each wait: process_max_warm = 4.
    assert_eq!(launchers, 4, "{waiting:?}");
    assert!(
        waiting.len() <= 4 * 3,
        "{} sandbox processes wait",
        waiting.len()
    );
    still_serving(&net, &hello).await;
}
