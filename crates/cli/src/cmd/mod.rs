//! Command implementations, one module per command group.

pub mod info;
pub mod store;

use crate::cli::{Cli, Command};
use crate::home::Home;
use crate::output::Printer;

/// Dispatches a parsed command line.
pub async fn run(cli: Cli, printer: &Printer) -> anyhow::Result<()> {
    let home = Home::resolve(cli.home.as_deref())?;
    match cli.command {
        Command::Info(args) => info::run(args, &home, printer).await,
        Command::Store(args) => store::run(args, &home, printer).await,
    }
}
