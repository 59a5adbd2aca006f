//! Command implementations, one module per command group.

pub mod build;
pub mod call;
pub mod deploy;
pub mod dev;
pub mod info;
pub mod init;
pub mod provider_run;
pub mod store;

use crate::cli::{Cli, Command, ProviderCommand};
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
        Command::Provider(ProviderCommand::Run(args)) => provider_run::run(args, &home, printer).await,
        Command::Store(args) => store::run(args, &home, printer).await,
    }
}
