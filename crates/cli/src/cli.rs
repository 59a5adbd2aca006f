//! Command-line grammar (clap derive). Each command group lives in `cmd/<group>.rs`;
//! this file only names them so `--help` reads as one table of contents.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Serverless functions on IPFS, run by independent providers, paid in USDC.
#[derive(Debug, Parser)]
#[command(name = "khachapuri", version, about, propagate_version = true)]
pub struct Cli {
    /// Directory holding config, profiles, keys and local data.
    #[arg(long, global = true, env = "KHACHAPURI_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// More logging on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No progress bars or status lines on stderr (data on stdout is unchanged).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands, in the order a newcomer meets them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local network (store, provider `dev`) and make it the active profile.
    Dev(crate::cmd::dev::DevArgs),
    /// Endpoints, chain and contracts of the active profile.
    Info(crate::cmd::info::InfoArgs),
    /// Create a new function folder from a template.
    Init(crate::cmd::init::InitArgs),
    /// Build the function in a folder (runs the manifest's build command).
    Build(crate::cmd::build::BuildArgs),
    /// Publish a function and print its callable CID.
    Deploy(crate::cmd::deploy::DeployArgs),
    /// Call a function over HTTP; the body goes to stdout, like curl.
    Call(crate::cmd::call::CallArgs),
    /// The key that pays: create, import, show, balances.
    Wallet(crate::cmd::wallet::WalletArgs),
    /// Money in the escrow and payment channels to providers (amounts in USDC).
    Escrow(crate::cmd::escrow::EscrowArgs),
    /// Read the on-chain provider registry.
    Registry(crate::cmd::registry::RegistryArgs),
    /// The gateway: names and public CIDs to providers, tunnels for providers behind NAT.
    Gateway(crate::cmd::gateway::GatewayArgs),
    /// Run and register a provider node.
    Provider(crate::cmd::provider::ProviderArgs),
    /// IPFS content: add files, get them by CID, serve the local store.
    Store(crate::cmd::store::StoreArgs),
}
