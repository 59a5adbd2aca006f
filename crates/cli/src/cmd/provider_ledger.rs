//! `khachapuri provider settle` and `khachapuri provider status`: the operator's view of
//! the node's ledger. Both find the node via `--config FILE`, else the active profile's
//! `provider_config`, else `HOME/provider.toml`, and open its `data_dir/ledger.sqlite`
//! (SQLite in WAL mode, so a running node keeps serving meanwhile). A running node writes
//! its charges behind (every 200 ms), so `settle` claims what had been written by then; a
//! later round (the node's own settlement, or another `settle`) claims the rest.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use khachapuri_chain::{format_usdc, Chain, EscrowClient};
use khachapuri_payments::{Ledger, Settler};
use khachapuri_provider::{NodeConfig, PaymentsConfig};
use serde_json::json;

use crate::home::Home;
use crate::output::{hint, Printer};

/// Arguments of `provider settle`.
#[derive(Debug, Args)]
pub struct SettleArgs {
    /// Provider config file (default: the profile's provider_config, else HOME/provider.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `provider status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Provider config file (default: the profile's provider_config, else HOME/provider.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

struct Opened {
    ledger: Arc<Ledger>,
    escrow: EscrowClient,
    chain: Chain,
}

/// Loads the config, the operator key, the chain and the ledger.
async fn open(flag: Option<&std::path::Path>, home: &Home) -> anyhow::Result<Opened> {
    let path = super::provider_run::config_file(flag, home).ok_or_else(|| {
        hint(
            "no provider config found",
            "pass --config FILE, run `khachapuri dev`, or write HOME/provider.toml",
        )
    })?;
    let config: NodeConfig = super::provider_run::load_file(&path, home)?;
    let p: PaymentsConfig = config.payments.clone().ok_or_else(|| {
        hint(
            format!("{} has no [payments] section", path.display()),
            "this provider takes no payments, so there is nothing to settle",
        )
    })?;
    let loader = p.clone();
    let password = super::provider_run::operator_password(Some(&p))?;
    let signer = tokio::task::spawn_blocking(move || loader.load_operator(password.as_deref()))
        .await?
        .map_err(|e| hint(e.to_string(), "fix the operator key in [payments]"))?;
    let chain = Chain::connect(&p.rpc_url, Some(signer))
        .await
        .map_err(|e| {
            hint(
                format!("cannot reach {}: {e}", p.rpc_url),
                "is the chain up? (`khachapuri dev` runs a local one)",
            )
        })?;
    let ledger_path = config.data_dir.join("ledger.sqlite");
    if !ledger_path.is_file() {
        return Err(hint(
            format!("no ledger at {}", ledger_path.display()),
            "the node has not served a paid call yet (start it with `khachapuri provider run`)",
        ));
    }
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(ledger_path))
        .await?
        .context("cannot open the ledger")?;
    Ok(Opened {
        ledger: Arc::new(ledger),
        escrow: EscrowClient::new(&chain, p.escrow),
        chain,
    })
}

/// Runs one settlement round now and prints what was redeemed (credited to the operator's
/// escrow balance).
pub async fn settle(args: SettleArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let o = open(args.config.as_deref(), home).await?;
    printer.status("claiming what the calls consumed (one batched transaction)…");
    let report = Settler::new(o.ledger.clone(), o.escrow.clone())
        .settle_once()
        .await
        .map_err(|e| hint(format!("settlement failed: {e}"), "retry; nothing is lost"))?;
    let status = o.ledger.run_blocking(|l| l.status()).await?;
    let txs: Vec<String> = report.txs.iter().map(|t| t.to_string()).collect();
    if args.json {
        printer.json(&json!({
            "vouchers": report.submitted,
            "skipped": report.skipped,
            "paid": format_usdc(report.paid),
            "txs": txs,
            "redeemed": format_usdc(status.redeemed),
            "pending": format_usdc(status.pending),
        }));
        return Ok(());
    }
    if report.submitted == 0 {
        printer.data("nothing to redeem");
    } else {
        printer.data(format!(
            "redeemed {} USDC from {} voucher(s)",
            format_usdc(report.paid),
            report.submitted
        ));
        for t in &txs {
            printer.data(format!("tx {t}"));
        }
    }
    if report.skipped > 0 {
        printer.status(format!(
            "{} voucher(s) could not be redeemed (see the log)",
            report.skipped
        ));
    }
    printer.data(format!(
        "redeemed in all {} USDC; pending {} USDC; `khachapuri escrow withdraw` takes the \
         escrow balance out",
        format_usdc(status.redeemed),
        format_usdc(status.pending)
    ));
    Ok(())
}

/// Prints earned, redeemed and pending from the ledger, and the operator's balances.
pub async fn status(args: StatusArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let o = open(args.config.as_deref(), home).await?;
    let s = o.ledger.run_blocking(|l| l.status()).await?;
    let me = o.chain.address().context("no operator address")?;
    let escrow_balance = o.escrow.balance_of(me).await?;
    let wallet = o.escrow.token().await?.balance_of(me).await?;
    if args.json {
        printer.json(&json!({
            "operator": me.to_string(),
            "earned": format_usdc(s.earned),
            "earned_micro": s.earned_micro.to_string(),
            "authorized": format_usdc(s.authorized),
            "redeemed": format_usdc(s.redeemed),
            "pending": format_usdc(s.pending),
            "escrow_balance": format_usdc(escrow_balance),
            "wallet_balance": format_usdc(wallet),
        }));
        return Ok(());
    }
    printer.data(format!("operator        {me}"));
    printer.data(format!("earned          {} USDC", format_usdc(s.earned)));
    printer.data(format!(
        "authorized      {} USDC",
        format_usdc(s.authorized)
    ));
    printer.data(format!("redeemed        {} USDC", format_usdc(s.redeemed)));
    printer.data(format!("pending         {} USDC", format_usdc(s.pending)));
    printer.data(format!(
        "escrow balance  {} USDC",
        format_usdc(escrow_balance)
    ));
    printer.data(format!("wallet balance  {} USDC", format_usdc(wallet)));
    Ok(())
}
