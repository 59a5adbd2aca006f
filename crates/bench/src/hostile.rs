//! Hostile traffic against a provider, for the soak benchmark (`bench/hostile-soak.sh`):
//! the node must keep serving honest paid calls while strangers throw cheap, nasty
//! requests at it. Two steps:
//!
//! - `hostile prepare`: publishes the attack material to the (dev) store — walk bombs
//!   (small dag-pb DAGs whose links fan out to the same child a thousand times per level,
//!   and one nested past the depth limit) and many distinct public specs of a real
//!   artifact (fresh deployments nobody pays for) — and writes them to a plan file, so
//!   publishing costs nothing during the measured phase.
//! - `hostile run`: every kind of attack as its own task at a bounded rate (the machine
//!   must stay measurable), counting answers by status per kind, with the node's
//!   `/metrics` counters before and after.

mod raw;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};
use khachapuri_chain::{parse_usdc, Address, PrivateKeySigner, Voucher};
use khachapuri_payments::{encode_payment, PAYMENT_HEADER};
use khachapuri_store::dagpb::{PbLink, PbNode, UnixfsData};
use khachapuri_store::KuboClient;
use khachapuri_types::{Cid, Envelope, RuntimeKind, Spec, DAG_PB, RAW};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;

/// Env var holding the prepaid `Khachapuri-Payment` value the paid attacks carry.
const PAYMENT_ENV: &str = "KHACHAPURI_BENCH_PAYMENT";

/// `hostile prepare|run`.
#[derive(Debug, Args)]
pub struct HostileArgs {
    #[command(subcommand)]
    step: Step,
}

#[derive(Debug, Subcommand)]
enum Step {
    /// Publish walk bombs and fresh public specs to the store; write the plan file.
    Prepare(PrepareArgs),
    /// Attack a provider with every hostile kind at once, for `--duration` seconds.
    Run(RunArgs),
}

/// Arguments of `hostile prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Kubo RPC base URL of the store (the dev store's `store_url`).
    #[arg(long)]
    store: String,
    /// Artifact CID the fresh specs point at (a real component, e.g. hello).
    #[arg(long)]
    artifact: String,
    /// Distinct public specs to publish.
    #[arg(long, default_value_t = 1000)]
    specs: usize,
    /// Where to write the plan (JSON).
    #[arg(long)]
    out: std::path::PathBuf,
}

/// Arguments of `hostile run`. Rates are requests (or new connections) per second.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Provider base URL.
    #[arg(long)]
    url: String,
    /// Plan file written by `hostile prepare`.
    #[arg(long)]
    plan: std::path::PathBuf,
    /// A real (paid) deployment CID: target of slowloris, oversize bodies and fresh keys.
    #[arg(long)]
    deployment: String,
    /// Chain id of the escrow (fresh-key vouchers).
    #[arg(long)]
    chain_id: u64,
    /// Escrow contract address.
    #[arg(long)]
    escrow: Address,
    /// The provider's operator address.
    #[arg(long)]
    provider: Address,
    /// Seconds to attack.
    #[arg(long, default_value_t = 300)]
    duration: u64,
    /// Touched once the attack starts (the script starts its honest load then).
    #[arg(long)]
    ready_file: Option<std::path::PathBuf>,
    /// Walk-bomb requests/s (round robin over bombs × endpoints).
    #[arg(long, default_value_t = 20.0)]
    walk_rate: f64,
    /// Slowloris connections held open, trickling header bytes.
    #[arg(long, default_value_t = 200)]
    slowloris_conns: usize,
    /// Connections sending a (paid) request body slowly.
    #[arg(long, default_value_t = 16)]
    slow_body_conns: usize,
    /// Seconds between two trickled writes of a slow connection.
    #[arg(long, default_value_t = 1.0)]
    trickle_secs: f64,
    /// Oversize bodies/s (alternating Content-Length and chunked).
    #[arg(long, default_value_t = 4.0)]
    oversize_rate: f64,
    /// Fresh random-key vouchers/s.
    #[arg(long, default_value_t = 20.0)]
    fresh_key_rate: f64,
    /// Unpaid calls of fresh deployments/s.
    #[arg(long, default_value_t = 20.0)]
    unpaid_rate: f64,
    /// Upload attempts/s.
    #[arg(long, default_value_t = 20.0)]
    upload_rate: f64,
    /// Requests of one kind in flight at most (beyond it a tick is skipped and counted).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
}

/// What `prepare` published.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// Walk bombs: (what it is, root CID).
    bombs: Vec<(String, String)>,
    /// Fresh public specs of the artifact, one per unpaid call.
    specs: Vec<String>,
}

/// Runs `hostile prepare` or `hostile run`.
pub async fn run(args: HostileArgs) -> anyhow::Result<serde_json::Value> {
    match args.step {
        Step::Prepare(a) => prepare(a).await,
        Step::Run(a) => attack(a).await,
    }
}

/// Fan-out per level of the wide bombs.
const FAN: usize = 1000;

async fn prepare(args: PrepareArgs) -> anyhow::Result<serde_json::Value> {
    let kubo = KuboClient::new(args.store.as_str(), khachapuri_store::Limits::default())
        .context("bad store URL")?;
    let started = Instant::now();
    let bombs = vec![
        (
            "wide: 4 levels x 1000 links to one 1-byte leaf (claims 1e12 bytes)".to_string(),
            wide_bomb(&kubo, 1).await?.to_string(),
        ),
        (
            "empty: 4 levels x 1000 links to one empty leaf (claims 0 bytes)".to_string(),
            wide_bomb(&kubo, 0).await?.to_string(),
        ),
        (
            "deep: 40 nested nodes, each linking its child twice".to_string(),
            deep_bomb(&kubo, 40).await?.to_string(),
        ),
    ];
    // Distinct public specs of the same artifact, signed by a throwaway owner.
    let owner = PrivateKeySigner::random();
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut envelopes = Vec::with_capacity(args.specs);
    for i in 0..args.specs {
        let mut spec = Spec::new(args.artifact.clone(), RuntimeKind::WasiHttp, created_at);
        spec.env.insert("HOSTILE_SPEC".into(), i.to_string());
        khachapuri_chain::sign_spec(&mut spec, &owner)?;
        envelopes.push(Bytes::from(Envelope::Public { spec }.to_bytes()));
    }
    let kubo = Arc::new(kubo);
    let next = Arc::new(AtomicUsize::new(0));
    let envelopes = Arc::new(envelopes);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (kubo, next, envelopes) = (kubo.clone(), next.clone(), envelopes.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = envelopes.get(i) else { break };
                out.push((i, kubo.add_bytes("spec.json", e.clone()).await?.cid));
            }
            anyhow::Ok(out)
        }));
    }
    let mut specs = Vec::new();
    for t in tasks {
        specs.extend(t.await??);
    }
    specs.sort();
    let plan = Plan {
        bombs,
        specs: specs.into_iter().map(|(_, c)| c.to_string()).collect(),
    };
    std::fs::write(&args.out, serde_json::to_vec_pretty(&plan)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(json!({
        "bombs": plan.bombs,
        "specs": plan.specs.len(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// A file node over `links`, each holding `size` bytes.
fn file_node(links: &[Cid], size: u64) -> Vec<u8> {
    PbNode {
        links: links
            .iter()
            .map(|c| PbLink {
                hash: *c,
                name: Some(String::new()),
                tsize: Some(size),
            })
            .collect(),
        data: Some(UnixfsData::file(vec![size; links.len()]).encode()),
    }
    .encode()
}

/// Leaf of `leaf_bytes` bytes, then 4 levels each linking the level below [`FAN`] times.
async fn wide_bomb(kubo: &KuboClient, leaf_bytes: usize) -> anyhow::Result<Cid> {
    let mut cid = kubo
        .block_put(RAW, Bytes::from(vec![b'x'; leaf_bytes]))
        .await?;
    let mut size = leaf_bytes as u64;
    for _ in 0..4 {
        cid = kubo
            .block_put(DAG_PB, Bytes::from(file_node(&vec![cid; FAN], size)))
            .await?;
        size = size.saturating_mul(FAN as u64);
    }
    Ok(cid)
}

/// A chain of `depth` file nodes, each linking its child twice, over a 1-byte leaf.
async fn deep_bomb(kubo: &KuboClient, depth: u32) -> anyhow::Result<Cid> {
    let mut cid = kubo.block_put(RAW, Bytes::from_static(b"x")).await?;
    let mut size = 1u64;
    for _ in 0..depth {
        cid = kubo
            .block_put(DAG_PB, Bytes::from(file_node(&[cid, cid], size)))
            .await?;
        size = size.saturating_mul(2);
    }
    Ok(cid)
}

/// Answers per kind and outcome, plus latency per kind.
#[derive(Default)]
struct Tally {
    by_kind: Mutex<BTreeMap<String, KindTally>>,
}

#[derive(Default)]
struct KindTally {
    outcomes: BTreeMap<String, u64>,
    answered: u64,
    total_ms: f64,
    max_ms: f64,
}

impl Tally {
    fn add(&self, kind: &str, outcome: impl Into<String>, took: Option<Duration>) {
        let mut map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        let k = map.entry(kind.to_string()).or_default();
        *k.outcomes.entry(outcome.into()).or_default() += 1;
        if let Some(t) = took {
            let ms = t.as_secs_f64() * 1000.0;
            k.answered += 1;
            k.total_ms += ms;
            k.max_ms = k.max_ms.max(ms);
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let map = self.by_kind.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(kind, k)| {
                let avg = if k.answered > 0 {
                    k.total_ms / k.answered as f64
                } else {
                    0.0
                };
                let v = json!({
                    "outcomes": k.outcomes,
                    "total": k.outcomes.values().sum::<u64>(),
                    "avg_ms": avg,
                    "max_ms": k.max_ms,
                });
                (kind.to_string(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Shared by the attack tasks.
struct Ctx {
    url: String,
    host: String,
    http: reqwest::Client,
    tally: Tally,
    deadline: Instant,
    payment: Option<String>,
    deployment: String,
    max_request_bytes: u64,
}

/// How a reqwest attempt ended: the status, or the kind of failure.
fn outcome(r: &Result<reqwest::Response, reqwest::Error>) -> String {
    match r {
        Ok(resp) => resp.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connect error".into(),
        Err(_) => "connection error".into(),
    }
}

/// Runs `one(n)` `rate` times a second until the deadline, at most `max_in_flight` at
/// once; waits (bounded) for the last ones. Each call records its own outcome.
async fn drive<F, Fut>(ctx: Arc<Ctx>, kind: &'static str, rate: f64, max_in_flight: usize, one: F)
where
    F: Fn(Arc<Ctx>, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if rate <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let mut n = 0u64;
    while Instant::now() < ctx.deadline {
        tick.tick().await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ctx.tally.add(kind, "skipped (max in flight)", None);
            continue;
        };
        let fut = one(ctx.clone(), n);
        n += 1;
        tokio::spawn(async move {
            fut.await;
            drop(permit);
        });
    }
    let all = u32::try_from(max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(Duration::from_secs(15), permits.acquire_many(all)).await;
    if drained.is_err() {
        ctx.tally.add(kind, "still in flight at the end", None);
    }
}

/// A GET (or POST with `body`), its outcome recorded under `kind`.
async fn request(ctx: &Ctx, kind: &str, req: reqwest::RequestBuilder, expect_body: bool) {
    let t = Instant::now();
    let r = req.send().await;
    let mut label = outcome(&r);
    if let (Ok(resp), true) = (r, expect_body) {
        if resp.bytes().await.is_err() {
            label.push_str(" (body cut)");
        }
    }
    ctx.tally.add(kind, label, Some(t.elapsed()));
}

/// Scrapes the node's `khachapuri_*` counters.
async fn scrape(http: &reqwest::Client, url: &str) -> BTreeMap<String, f64> {
    let Ok(resp) = http.get(format!("{url}/metrics")).send().await else {
        return BTreeMap::new();
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("khachapuri_"))
        .filter_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn attack(args: RunArgs) -> anyhow::Result<serde_json::Value> {
    let plan: Plan = serde_json::from_slice(
        &std::fs::read(&args.plan)
            .with_context(|| format!("cannot read {}", args.plan.display()))?,
    )?;
    anyhow::ensure!(!plan.specs.is_empty(), "the plan has no specs");
    let url = args.url.trim_end_matches('/').to_string();
    let host = url
        .strip_prefix("http://")
        .context("the provider URL must be http://host:port")?
        .to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(args.max_in_flight)
        .build()?;
    let well_known: serde_json::Value = http
        .get(format!("{url}/.well-known/khachapuri"))
        .send()
        .await?
        .json()
        .await?;
    let max_request_bytes = well_known["limits"]["max_request_bytes"]
        .as_u64()
        .context("no limits.max_request_bytes at /.well-known/khachapuri")?;
    let before = scrape(&http, &url).await;
    let ctx = Arc::new(Ctx {
        url: url.clone(),
        host,
        http: http.clone(),
        tally: Tally::default(),
        deadline: Instant::now() + Duration::from_secs(args.duration),
        payment: std::env::var(PAYMENT_ENV).ok(),
        deployment: args.deployment.clone(),
        max_request_bytes,
    });
    if let Some(f) = &args.ready_file {
        std::fs::write(f, b"attacking\n")?;
    }
    let started = Instant::now();
    let plan = Arc::new(plan);
    let fresh_amount = parse_usdc("1")?;
    let (chain_id, escrow, provider) = (args.chain_id, args.escrow, args.provider);
    let m = args.max_in_flight;

    let walk = {
        let plan = plan.clone();
        drive(
            ctx.clone(),
            "walk bomb",
            args.walk_rate,
            m,
            move |ctx, n| {
                let plan = plan.clone();
                async move {
                    let bombs = plan.bombs.len().max(1) as u64;
                    let Some((what, cid)) = plan.bombs.get((n % bombs) as usize) else {
                        return;
                    };
                    let short = what.split(':').next().unwrap_or_default();
                    let (path, shown) = match (n / bombs) % 3 {
                        0 => (format!("/{cid}/"), "GET /{cid}/"),
                        1 => (
                            format!("/ipfs/{cid}?format=car"),
                            "GET /ipfs/{cid}?format=car",
                        ),
                        _ => (format!("/ipfs/{cid}"), "GET /ipfs/{cid}"),
                    };
                    let req = ctx.http.get(format!("{}{path}", ctx.url));
                    request(&ctx, &format!("walk bomb ({short}) {shown}"), req, true).await;
                }
            },
        )
    };
    let fresh_keys = drive(
        ctx.clone(),
        "fresh random-key voucher",
        args.fresh_key_rate,
        m,
        {
            move |ctx, _| async move {
                let key = PrivateKeySigner::random();
                let v = Voucher {
                    payer: key.address(),
                    provider,
                    epoch: 0,
                    amount: fresh_amount,
                }
                .sign(&key, chain_id, escrow);
                let Ok(v) = v else {
                    ctx.tally
                        .add("fresh random-key voucher", "cannot sign", None);
                    return;
                };
                let req = ctx
                    .http
                    .get(format!("{}/{}/", ctx.url, ctx.deployment))
                    .header(PAYMENT_HEADER, encode_payment(&v));
                request(&ctx, "fresh random-key voucher", req, true).await;
            }
        },
    );
    let unpaid = {
        let plan = plan.clone();
        drive(
            ctx.clone(),
            "unpaid fresh deployment",
            args.unpaid_rate,
            m,
            move |ctx, n| {
                let plan = plan.clone();
                async move {
                    let i = (n % plan.specs.len() as u64) as usize;
                    let cid = plan.specs.get(i).cloned().unwrap_or_default();
                    let req = ctx.http.get(format!("{}/{cid}/", ctx.url));
                    let kind = if n < plan.specs.len() as u64 {
                        "unpaid fresh deployment"
                    } else {
                        "unpaid deployment (spec pool reused)"
                    };
                    request(&ctx, kind, req, true).await;
                }
            },
        )
    };
    let uploads = drive(
        ctx.clone(),
        "upload attempt",
        args.upload_rate,
        m,
        |ctx, n| async move {
            let path = if n % 2 == 0 { "add" } else { "block/put" };
            let body = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nhello\r\n--b--\r\n";
            let req = ctx
                .http
                .post(format!("{}/api/v0/{path}", ctx.url))
                .header("content-type", "multipart/form-data; boundary=b")
                .body(body);
            request(&ctx, "upload attempt", req, true).await;
        },
    );
    let oversize = drive(
        ctx.clone(),
        "oversize body",
        args.oversize_rate,
        m,
        raw::oversize,
    );
    let slowloris = raw::slowloris(ctx.clone(), args.slowloris_conns, args.trickle_secs);
    let slow_body = raw::slow_body(ctx.clone(), args.slow_body_conns, args.trickle_secs);
    tokio::join!(walk, fresh_keys, unpaid, uploads, oversize, slowloris, slow_body);
    let seconds = started.elapsed().as_secs_f64();

    let after = scrape(&http, &url).await;
    let delta: BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect();
    let pick = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied();
    Ok(json!({
        "seconds": seconds,
        "rates": {
            "walk_bomb_per_s": args.walk_rate,
            "slowloris_conns": args.slowloris_conns,
            "slow_body_conns": args.slow_body_conns,
            "trickle_secs": args.trickle_secs,
            "oversize_per_s": args.oversize_rate,
            "oversize_bytes": max_request_bytes + 1,
            "fresh_key_per_s": args.fresh_key_rate,
            "unpaid_per_s": args.unpaid_rate,
            "upload_per_s": args.upload_rate,
            "max_in_flight_per_kind": args.max_in_flight,
        },
        "kinds": ctx.tally.to_json(),
        "artifact_fetches": {
            "before": pick(&before, "khachapuri_artifact_fetches_total"),
            "after": pick(&after, "khachapuri_artifact_fetches_total"),
        },
        "compiles": {
            "before": pick(&before, "khachapuri_runtime_compiles_total"),
            "after": pick(&after, "khachapuri_runtime_compiles_total"),
        },
        "metrics_delta": delta,
    }))
}
