//! `khachapuri provider ...`: running and registering a provider node. This module only
//! names the subcommands; each lives in its own `provider_*.rs` file.

use clap::{Args, Subcommand};

use crate::home::Home;
use crate::output::Printer;

/// Arguments of `provider`.
#[derive(Debug, Args)]
pub struct ProviderArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ProviderCommand,
}

/// `provider` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Run a provider node until Ctrl-C.
    Run(super::provider_run::RunArgs),
    /// Claim (or update) a name in the on-chain registry with this node's endpoint and key.
    Register(super::provider_register::RegisterArgs),
    /// Claim on chain now what the calls consumed and was not yet redeemed (one batched
    /// transaction; credited to the operator's escrow balance).
    Settle(super::provider_ledger::SettleArgs),
    /// Earned, redeemed and pending amounts, and the operator's balances.
    Status(super::provider_ledger::StatusArgs),
    /// What the node would answer to `/khachapuri/attest/1`: peer id, bound keys,
    /// report_data and evidence (JSON).
    Attest(super::provider_attest::AttestArgs),
}

/// Runs a `provider` subcommand.
pub async fn run(args: ProviderArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    match args.command {
        ProviderCommand::Run(a) => super::provider_run::run(a, home, printer).await,
        ProviderCommand::Register(a) => super::provider_register::run(a, home, printer).await,
        ProviderCommand::Settle(a) => super::provider_ledger::settle(a, home, printer).await,
        ProviderCommand::Status(a) => super::provider_ledger::status(a, home, printer).await,
        ProviderCommand::Attest(a) => super::provider_attest::run(a, home, printer).await,
    }
}
