//! `khachapuri escrow deposit|withdraw|fund|unlock|reclaim|status`: the caller's money in
//! the escrow and its payment channels to providers. Amounts are USDC (`1.25`).

use clap::{Args, Subcommand};
use khachapuri_chain::{format_usdc, parse_usdc, Address, ChannelState, U256};
use khachapuri_payments::{micro_to_base_ceil, ChannelKey, PayerStore};
use serde_json::{json, Value};

use super::chainctx::{self, Network};
use super::pay::format_micro;
use crate::home::Home;
use crate::output::{hint, Printer};

/// Arguments of `escrow`.
#[derive(Debug, Args)]
pub struct EscrowArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: EscrowCommand,
}

/// `escrow` subcommands.
#[derive(Debug, Subcommand)]
pub enum EscrowCommand {
    /// Move USDC from the wallet into the escrow (approves the escrow as needed).
    Deposit {
        /// Amount in USDC, e.g. 10 or 1.25.
        amount: String,
    },
    /// Move free escrow balance back to the wallet.
    Withdraw {
        /// Amount in USDC.
        amount: String,
    },
    /// Put free balance into the channel to a provider (registry name or 0x address).
    Fund {
        /// Provider name or address.
        provider: String,
        /// Amount in USDC.
        amount: String,
    },
    /// Ask to close the channel to a provider; `reclaim` works after the unlock delay.
    Unlock {
        /// Provider name or address.
        provider: String,
    },
    /// Take back what a channel still holds once its unlock delay has passed.
    Reclaim {
        /// Provider name or address.
        provider: String,
    },
    /// Wallet, free balance and channels.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `escrow` subcommand.
pub async fn run(args: EscrowArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let (profile, net) = chainctx::active(home)?;
    if let EscrowCommand::Status { json } = args.command {
        let me = chainctx::wallet_address(home, &profile)?;
        let store = PayerStore::new(home.root().join("payments").join("vouchers.json"));
        return status(&net, &profile, &store, me, json, printer).await;
    }
    let signer = chainctx::load_signer(home, &profile)?;
    let me = signer.address();
    let chain = net.connect(Some(signer)).await?;
    let escrow = net.escrow(&chain)?;
    match args.command {
        EscrowCommand::Deposit { amount } => {
            let units = parse_usdc(&amount)?;
            let token = escrow.token().await?;
            let have = token.balance_of(me).await?;
            if have < units {
                return Err(hint(
                    format!(
                        "the wallet holds {} USDC, less than {}",
                        format_usdc(have),
                        format_usdc(units)
                    ),
                    "fund the wallet first (on `khachapuri dev`, dev wallets start with MockUSDC)",
                ));
            }
            let tx = escrow.deposit(units).await?;
            printer.status(format!("tx {tx}"));
            let bal = escrow.balance_of(me).await?;
            printer.data(format!(
                "deposited {} USDC; free balance {} USDC",
                format_usdc(units),
                format_usdc(bal)
            ));
        }
        EscrowCommand::Withdraw { amount } => {
            let units = parse_usdc(&amount)?;
            let tx = escrow.withdraw(units).await?;
            printer.status(format!("tx {tx}"));
            let bal = escrow.balance_of(me).await?;
            printer.data(format!(
                "withdrew {} USDC; free balance {} USDC",
                format_usdc(units),
                format_usdc(bal)
            ));
        }
        EscrowCommand::Fund { provider, amount } => {
            let units = parse_usdc(&amount)?;
            let to = chainctx::resolve_provider(&net, &chain, &provider).await?;
            let free = escrow.balance_of(me).await?;
            if free < units {
                return Err(hint(
                    format!(
                        "free escrow balance is {} USDC, less than {}",
                        format_usdc(free),
                        format_usdc(units)
                    ),
                    format!("deposit first: `khachapuri escrow deposit {amount}`"),
                ));
            }
            let tx = escrow.fund(to, units).await?;
            printer.status(format!("tx {tx}"));
            let ch = escrow.channel(me, to).await?;
            printer.data(format!(
                "funded {provider} ({to}) with {} USDC; channel holds {} USDC",
                format_usdc(units),
                format_usdc(ch.remaining())
            ));
        }
        EscrowCommand::Unlock { provider } => {
            let to = chainctx::resolve_provider(&net, &chain, &provider).await?;
            let tx = escrow.request_unlock(to).await?;
            printer.status(format!("tx {tx}"));
            let ch = escrow.channel(me, to).await?;
            printer.data(format!(
                "unlock requested for {provider}; `khachapuri escrow reclaim {provider}` works from unix time {} (in {} s)",
                ch.unlock_at,
                escrow.unlock_delay().await?
            ));
        }
        EscrowCommand::Reclaim { provider } => {
            let to = chainctx::resolve_provider(&net, &chain, &provider).await?;
            let before = escrow.channel(me, to).await?;
            let tx = escrow.reclaim(to).await.map_err(|e| {
                hint(
                    format!("cannot reclaim from {provider}: {e}"),
                    "request an unlock first (`khachapuri escrow unlock`), then wait out the delay",
                )
            })?;
            printer.status(format!("tx {tx}"));
            printer.data(format!(
                "reclaimed {} USDC from {provider}; free balance {} USDC",
                format_usdc(before.remaining()),
                format_usdc(escrow.balance_of(me).await?)
            ));
        }
        EscrowCommand::Status { .. } => {}
    }
    Ok(())
}

/// What the provider signed for in the receipts this wallet holds for channel `ch`
/// (micro-units), and how many base units it redeemed beyond that, if any.
struct Signed {
    consumed: U256,
    over: Option<U256>,
}

fn signed_for(store: &PayerStore, key: ChannelKey, ch: &ChannelState) -> Signed {
    let consumed = match store.load(&key) {
        Ok(Some(r)) if r.epoch == ch.epoch => r.signed_consumed,
        _ => U256::ZERO,
    };
    let honest = micro_to_base_ceil(consumed);
    Signed {
        consumed,
        over: (ch.redeemed > honest).then(|| ch.redeemed - honest),
    }
}

async fn status(
    net: &Network,
    profile: &crate::home::Profile,
    store: &PayerStore,
    me: Address,
    as_json: bool,
    printer: &Printer,
) -> anyhow::Result<()> {
    let chain = net.connect(None).await?;
    let escrow = net.escrow(&chain)?;
    let token = net.token(&chain).await?;
    let wallet_usdc = token.balance_of(me).await?;
    let free = escrow.balance_of(me).await?;

    // Channels to every provider we know of: the registry's and the profile's.
    let mut known: Vec<(String, Address)> = Vec::new();
    if net.registry.is_some() {
        for r in net.registry(&chain)?.list().await? {
            known.push((r.name, r.operator));
        }
    }
    for p in &profile.providers {
        if let Some(addr) = p.address.as_deref().and_then(|a| a.parse::<Address>().ok()) {
            if !known.iter().any(|(_, a)| *a == addr) {
                known.push((p.name.clone(), addr));
            }
        }
    }
    let mut channels: Vec<(String, Address, ChannelState, Signed)> = Vec::new();
    for (name, addr) in known {
        let ch = escrow.channel(me, addr).await?;
        if ch.funds.is_zero() && ch.epoch == 0 {
            continue;
        }
        let key = ChannelKey {
            chain_id: chain.chain_id(),
            escrow: escrow.address(),
            provider: addr,
            payer: me,
        };
        let signed = signed_for(store, key, &ch);
        channels.push((name, addr, ch, signed));
    }

    if as_json {
        let chans: Vec<Value> = channels
            .iter()
            .map(|(name, addr, ch, signed)| {
                json!({
                    "provider": name,
                    "address": addr,
                    "funds": format_usdc(ch.funds),
                    "redeemed": format_usdc(ch.redeemed),
                    "consumed_signed": format_micro(signed.consumed),
                    "redeemed_beyond_signed": signed.over.map(format_usdc),
                    "remaining": format_usdc(ch.remaining()),
                    "epoch": ch.epoch,
                    "unlock_at": ch.unlock_at,
                })
            })
            .collect();
        printer.json(&json!({
            "address": me,
            "chain_id": chain.chain_id(),
            "escrow": escrow.address(),
            "wallet_usdc": format_usdc(wallet_usdc),
            "balance": format_usdc(free),
            "channels": chans,
        }));
        return Ok(());
    }
    printer.data(format!("wallet:   {me}"));
    printer.data(format!(
        "USDC:     {} (in the wallet)",
        format_usdc(wallet_usdc)
    ));
    printer.data(format!("escrow:   {} (free balance)", format_usdc(free)));
    if channels.is_empty() {
        printer.data("channels: none (fund one with `khachapuri escrow fund PROVIDER AMOUNT`)");
    }
    for (name, addr, ch, signed) in channels {
        let unlock = if ch.unlock_at == 0 {
            String::new()
        } else {
            format!(", unlocking at unix time {}", ch.unlock_at)
        };
        printer.data(format!(
            "channel:  {name} ({addr}): {} USDC left of {} funded, {} redeemed, {} consumed as signed, epoch {}{unlock}",
            format_usdc(ch.remaining()),
            format_usdc(ch.funds),
            format_usdc(ch.redeemed),
            format_micro(signed.consumed),
            ch.epoch
        ));
        if let Some(over) = signed.over {
            printer.status(format!(
                "warning: {name} redeemed {} USDC more than it signed for in the receipts this wallet holds (calls of deployments you sponsor, or by clients that do not ask for signed receipts, also draw on it)",
                format_usdc(over)
            ));
        }
    }
    Ok(())
}
