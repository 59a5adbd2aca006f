//! `khachapuri wallet new|import|address|balance`: the key that pays (and, for providers,
//! gets paid), kept in an encrypted keystore in the home.

use std::io::Read;

use anyhow::Context;
use clap::{Args, Subcommand};
use khachapuri_chain::alloy_format_units as format_units;
use khachapuri_chain::{format_usdc, wallet};
use serde_json::json;

use super::chainctx::{self, PASSWORD_ENV};
use crate::home::Home;
use crate::output::{hint, Printer};

/// Arguments of `wallet`.
#[derive(Debug, Args)]
pub struct WalletArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: WalletCommand,
}

/// `wallet` subcommands.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a new key in an encrypted keystore (password from KHACHAPURI_PASSWORD or a prompt).
    New,
    /// Import a hex private key read from stdin (never from the command line).
    Import,
    /// Print the wallet's address.
    Address,
    /// Gas, token and escrow balances of the wallet.
    Balance {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `wallet` subcommand.
pub async fn run(args: WalletArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let profile = home.active_profile()?;
    match args.command {
        WalletCommand::New => {
            let path = chainctx::keystore_path(home, &profile);
            let (dir, name) = split(&path)?;
            let password = chainctx::password("new keystore password: ", true)?;
            let signer = wallet::create_keystore(dir, name, &password)?;
            printer.status(format!("created {}", path.display()));
            printer.data(signer.address());
        }
        WalletCommand::Import => {
            let path = chainctx::keystore_path(home, &profile);
            let (dir, name) = split(&path)?;
            printer.status("reading a hex private key from stdin");
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("cannot read the key from stdin")?;
            let password = chainctx::password("new keystore password: ", true)?;
            let signer = wallet::import_keystore(dir, name, key.trim(), &password)?;
            printer.status(format!("imported into {}", path.display()));
            printer.data(signer.address());
        }
        WalletCommand::Address => {
            printer.data(chainctx::wallet_address(home, &profile)?);
        }
        WalletCommand::Balance { json } => {
            let me = chainctx::wallet_address(home, &profile)?;
            let net = chainctx::Network::from_profile(&profile)?;
            let chain = net.connect(None).await?;
            let gas = chain.eth_balance(me).await?;
            let token = net.token(&chain).await?;
            let usdc = token.balance_of(me).await?;
            let escrowed = match net.escrow {
                Some(_) => Some(net.escrow(&chain)?.balance_of(me).await?),
                None => None,
            };
            if json {
                printer.json(&json!({
                    "address": me,
                    "eth_wei": gas.to_string(),
                    "usdc": format_usdc(usdc),
                    "escrow_balance": escrowed.map(format_usdc),
                }));
            } else {
                printer.data(format!("address:  {me}"));
                printer.data(format!("gas:      {} ETH", format_units(gas, "ether")?));
                printer.data(format!("USDC:     {}", format_usdc(usdc)));
                if let Some(e) = escrowed {
                    printer.data(format!("escrow:   {} (free balance)", format_usdc(e)));
                }
            }
        }
    }
    Ok(())
}

fn split(path: &std::path::Path) -> anyhow::Result<(&std::path::Path, &str)> {
    let dir = path.parent().context("keystore path has no directory")?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("keystore path has no file name")?;
    if path.exists() {
        return Err(hint(
            format!("a wallet already exists at {}", path.display()),
            format!(
                "use it (`khachapuri wallet address`), or move it away first; {PASSWORD_ENV} unlocks it"
            ),
        ));
    }
    Ok((dir, name))
}
