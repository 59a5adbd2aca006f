//! HTTP load where every call carries a voucher signed for it alone, and the prepaid
//! header for wrk. The key comes from the environment (`KHACHAPURI_BENCH_KEY`), never argv.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use khachapuri_chain::{parse_usdc, wallet::parse_private_key, Address, Voucher, U256};
use khachapuri_payments::{encode_payment, PAYMENT_HEADER};
use serde_json::json;

/// Env var holding the payer's private key (hex).
const KEY_ENV: &str = "KHACHAPURI_BENCH_KEY";

/// Which channel the vouchers are for.
#[derive(Debug, Args)]
pub struct Channel {
    /// Chain id of the escrow.
    #[arg(long)]
    chain_id: u64,
    /// Escrow contract address.
    #[arg(long)]
    escrow: Address,
    /// Provider (operator) address the vouchers are made out to.
    #[arg(long)]
    provider: Address,
    /// Channel epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
}

/// Arguments of `header`.
#[derive(Debug, Args)]
pub struct HeaderArgs {
    #[command(flatten)]
    channel: Channel,
    /// Cumulative amount in USDC.
    #[arg(long)]
    amount: String,
}

/// Arguments of `fresh`.
#[derive(Debug, Args)]
pub struct FreshArgs {
    #[command(flatten)]
    channel: Channel,
    /// Function URL to call.
    #[arg(long)]
    url: String,
    /// Amount already signed to this provider (USDC): fresh vouchers start above it.
    #[arg(long, default_value = "0")]
    from: String,
    /// Headroom above `from` so the first calls' reservations fit (USDC).
    #[arg(long, default_value = "0.05")]
    headroom: String,
    /// Added per call (USDC): at least what one call is charged.
    #[arg(long, default_value = "0.0002")]
    step: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

fn signer() -> anyhow::Result<khachapuri_chain::PrivateKeySigner> {
    let key = std::env::var(KEY_ENV).with_context(|| format!("set {KEY_ENV} to the payer key"))?;
    Ok(parse_private_key(&key)?)
}

/// Prints one signed payment value.
pub fn header(args: HeaderArgs) -> anyhow::Result<serde_json::Value> {
    let key = signer()?;
    let c = &args.channel;
    let v = Voucher {
        payer: key.address(),
        provider: c.provider,
        epoch: c.epoch,
        amount: parse_usdc(&args.amount)?,
    }
    .sign(&key, c.chain_id, c.escrow)?;
    Ok(json!({ "header": encode_payment(&v), "payer": key.address().to_string() }))
}

/// Runs the fresh-signature load and reports calls/s and latency percentiles.
pub async fn run(args: FreshArgs) -> anyhow::Result<serde_json::Value> {
    let key = Arc::new(signer()?);
    let base = parse_usdc(&args.from)? + parse_usdc(&args.headroom)?;
    let step = parse_usdc(&args.step)?;
    let counter = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (key, counter, http, url) =
            (key.clone(), counter.clone(), http.clone(), args.url.clone());
        let (chain_id, escrow, provider, epoch) = (
            args.channel.chain_id,
            args.channel.escrow,
            args.channel.provider,
            args.channel.epoch,
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures: Vec<u16> = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                let t = Instant::now();
                let v = Voucher {
                    payer: key.address(),
                    provider,
                    epoch,
                    amount: base + step * U256::from(n),
                }
                .sign(key.as_ref(), chain_id, escrow)?;
                let resp = http
                    .get(&url)
                    .header(PAYMENT_HEADER, encode_payment(&v))
                    .send()
                    .await?;
                let status = resp.status().as_u16();
                let _ = resp.bytes().await?;
                latencies.push(t.elapsed());
                if status != 200 {
                    failures.push(status);
                }
            }
            anyhow::Ok((latencies, failures))
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for t in tasks {
        let (l, f) = t.await??;
        latencies.extend(l);
        failures.extend(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(json!({
        "calls": latencies.len(),
        "failed": failures.len(),
        "failure_statuses": failures.iter().take(5).collect::<Vec<_>>(),
        "calls_per_sec": latencies.len() as f64 / elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "last_amount": (base + step * U256::from(counter.load(Ordering::Relaxed))).to_string(),
    }))
}
