//! Command implementations, one module per command group.

pub mod build;
pub mod call;
pub mod chainctx;
pub mod deploy;
pub mod deploy_check;
pub mod deploy_p2p;
pub mod dev;
pub mod escrow;
pub mod gateway;
pub mod info;
pub mod init;
pub mod pay;
pub mod provider;
pub mod provider_attest;
pub mod provider_ledger;
pub mod provider_register;
pub mod provider_run;
pub mod registry;
pub mod store;
pub mod wallet;

use crate::cli::{Cli, Command};
use crate::home::Home;
use crate::output::Printer;

/// Dispatches a parsed command line.
pub async fn run(cli: Cli, printer: &Printer) -> anyhow::Result<()> {
    let home = Home::resolve(cli.home.as_deref())?;
    match cli.command {
        Command::Dev(args) => dev::run(args, &home, printer).await,
        Command::Info(args) => info::run(args, &home, printer).await,
        Command::Init(args) => init::run(args, &home, printer).await,
        Command::Build(args) => build::run(args, &home, printer).await,
        Command::Deploy(args) => deploy::run(args, &home, printer).await,
        Command::Call(args) => call::run(args, &home, printer).await,
        Command::Store(args) => store::run(args, &home, printer).await,
        Command::Wallet(args) => wallet::run(args, &home, printer).await,
        Command::Escrow(args) => escrow::run(args, &home, printer).await,
        Command::Registry(args) => registry::run(args, &home, printer).await,
        Command::Gateway(args) => gateway::run(args, &home, printer).await,
        Command::Provider(args) => provider::run(args, &home, printer).await,
    }
}
