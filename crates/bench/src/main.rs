//! `khachapuri-bench`: the parts of the payment benchmarks a shell script cannot do.
//!
//! - `gas`: on a fresh anvil with the real contracts, what settling N paid calls costs
//!   on chain when each call is one transaction (the seeds' `consume` per request, here one
//!   `redeem` per call) against vouchers settled with one `redeemBatch`.
//! - `header`: a prepaid `Khachapuri-Payment` value, for wrk.
//! - `fresh`: HTTP load where every call carries a freshly signed voucher (the provider
//!   verifies a signature and fsyncs the ledger per call).
//! - `hostile prepare|run`: walk bombs, slowloris, oversize bodies, random-key vouchers,
//!   unpaid fresh deployments and upload attempts against a provider (the soak benchmark).
//! - `tunnel`: providers behind tunnels and a 100 MB answer on a dev network, and the
//!   time to serve again after a gateway restart (the gateway benchmark).
//!
//! Results go to stdout as one JSON object per run (the scripts under `bench/` format them).

mod fresh;
mod gas;
mod hostile;
mod tunnel;

use clap::{Parser, Subcommand};

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "khachapuri-bench", about = "Payment benchmark drivers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Gas of N paid calls: one transaction per call vs batched vouchers.
    Gas(gas::GasArgs),
    /// Print a signed `Khachapuri-Payment` value (key from env KHACHAPURI_BENCH_KEY).
    Header(fresh::HeaderArgs),
    /// Calls/s when every call carries a freshly signed voucher.
    Fresh(fresh::FreshArgs),
    /// Hostile traffic: `prepare` publishes the material, `run` attacks a provider.
    Hostile(hostile::HostileArgs),
    /// Tunneled providers and a big answer on a running dev network (bench/gateway.sh).
    Tunnel(tunnel::TunnelArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = match Cli::parse().command {
        Command::Gas(a) => gas::run(a).await?,
        Command::Header(a) => fresh::header(a)?,
        Command::Fresh(a) => fresh::run(a).await?,
        Command::Hostile(a) => hostile::run(a).await?,
        Command::Tunnel(a) => tunnel::run(a).await?,
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{out}");
    }
    Ok(())
}
