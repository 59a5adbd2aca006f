//! The `khachapuri` binary: parses the command line, builds the one async runtime,
//! and reports errors with a hint on what to do next.

mod cli;
mod cmd;
mod home;
mod manifest;
mod output;
mod signal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_tracing(cli.verbose);
    let printer = output::Printer::new(cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            printer.error(&anyhow::Error::from(err).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli, &printer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            printer.error(&err);
            ExitCode::FAILURE
        }
    }
}
