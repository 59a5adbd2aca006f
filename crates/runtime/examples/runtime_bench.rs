//! In-process benchmark of the runtime alone (no HTTP): compile time, disk-cache load
//! time, then warm calls/s and latency of one wasi-http component.
//!
//! `cargo run --release -p khachapuri-runtime --example runtime_bench -- WASM [SECONDS] [TASKS]`
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use khachapuri_runtime::{CallOptions, GuestKind, Runtime, RuntimeConfig};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let wasm = Bytes::from(
        std::fs::read(
            args.next()
                .expect("usage: runtime_bench WASM [SECONDS] [TASKS]"),
        )
        .unwrap(),
    );
    let secs: u64 = args.next().map_or(5, |s| s.parse().unwrap());
    let tasks: usize = args.next().map_or(16, |s| s.parse().unwrap());
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        max_instances: 64,
        ..RuntimeConfig::default()
    };

    let rt = Runtime::new(config.clone()).unwrap();
    let t = Instant::now();
    rt.prepare("bafybench", GuestKind::WasiHttp, wasm.clone())
        .await
        .unwrap();
    println!("compile (first prepare): {:?}", t.elapsed());
    drop(rt);

    let rt = Runtime::new(config).unwrap();
    let t = Instant::now();
    let p = rt
        .load_cached("bafybench", GuestKind::WasiHttp)
        .await
        .unwrap()
        .unwrap();
    println!("disk-cache load (after restart): {:?}", t.elapsed());

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (rt, p) = (rt.clone(), p.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let req = http::Request::get("/bafybench/")
                    .header("host", "bench")
                    .body(http_body_util::Full::new(Bytes::new()))
                    .unwrap();
                let t = Instant::now();
                let r = rt.handle(&p, req, &CallOptions::default()).await.unwrap();
                assert_eq!(r.status(), 200);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all.sort();
    let n = all.len();
    println!(
        "warm: {} calls in {secs}s = {:.0}/s, p50 {:?}, p99 {:?} ({tasks} tasks)",
        n,
        n as f64 / secs as f64,
        all[n / 2],
        all[n * 99 / 100]
    );
}
