//! `khachapuri registry list|resolve NAME|tables`: read the on-chain provider registry.

use clap::{Args, Subcommand};
use khachapuri_chain::{alloy_hex, format_usdc, PricingTable, ProviderRecord};
use serde_json::{json, Value};

use super::chainctx;
use crate::home::Home;
use crate::output::{hint, Printer};

/// Arguments of `registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// `registry` subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Every registered provider.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One provider's record.
    Resolve {
        /// Registered name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Providers ranked for your preferences (what `deploy` picks without --provider).
    Select(SelectArgs),
    /// Every pricing table (prices in USDC base units × 1e6).
    Tables {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `registry select`.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// Only providers listing this region.
    #[arg(long)]
    pub region: Option<String>,
    /// Most a typical call (one request, 100 ms, 0.1 MB) may cost, in USDC.
    #[arg(long, value_name = "USDC")]
    pub max_price: Option<String>,
    /// Fewest reputation points.
    #[arg(long, default_value_t = 0)]
    pub min_reputation: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl SelectArgs {
    /// The preferences these flags ask for.
    pub fn preferences(&self) -> anyhow::Result<khachapuri_gateway::Preferences> {
        let max_price =
            match &self.max_price {
                None => None,
                Some(p) => Some(khachapuri_chain::parse_micro_usdc(p).map_err(|e| {
                    hint(format!("--max-price {p:?}: {e}"), "write USDC, e.g. 0.001")
                })?),
            };
        Ok(khachapuri_gateway::Preferences {
            region: self.region.clone(),
            max_price,
            min_reputation: self.min_reputation,
        })
    }
}

/// Prints the ranking of `registry select`.
async fn select(
    args: &SelectArgs,
    registry: &khachapuri_chain::RegistryClient,
    printer: &Printer,
) -> anyhow::Result<()> {
    let (ranked, excluded) =
        khachapuri_gateway::rank_registry(registry, &args.preferences()?).await?;
    if args.json {
        printer.json(&json!({"ranked": ranked, "excluded": excluded}));
        return Ok(());
    }
    for (i, r) in ranked.iter().enumerate() {
        printer.data(format!("{}. {}\t{}\t{}", i + 1, r.name, r.url, r.reason));
    }
    for e in &excluded {
        printer.status(format!("left out {}: {}", e.name, e.why));
    }
    if ranked.is_empty() {
        return Err(hint(
            "no provider matches these preferences",
            "relax --region, --max-price or --min-reputation",
        ));
    }
    Ok(())
}

/// Runs a `registry` subcommand.
pub async fn run(args: RegistryArgs, home: &Home, printer: &Printer) -> anyhow::Result<()> {
    let (_, net) = chainctx::active(home)?;
    let chain = net.connect(None).await?;
    let registry = net.registry(&chain)?;
    match args.command {
        RegistryCommand::List { json } => {
            let records = registry.list().await?;
            if json {
                let list: Vec<Value> = records.iter().map(record_json).collect();
                printer.json(&Value::Array(list));
            } else if records.is_empty() {
                printer.status("no provider registered yet");
            } else {
                for r in &records {
                    printer.data(format!(
                        "{}\t{}\t{}\t{}\treputation {} ({} payers, {} USDC redeemed)",
                        r.name,
                        r.url,
                        r.operator,
                        r.regions.join(","),
                        r.reputation,
                        r.payers,
                        format_usdc(r.value_redeemed)
                    ));
                }
            }
        }
        RegistryCommand::Resolve { name, json } => {
            let Some(r) = registry.resolve(&name).await? else {
                return Err(hint(
                    format!("no provider named {name:?}"),
                    "list them with `khachapuri registry list`",
                ));
            };
            if json {
                printer.json(&record_json(&r));
            } else {
                printer.data(format!("name:        {}", r.name));
                printer.data(format!("node:        {}", r.node));
                printer.data(format!("url:         {}", r.url));
                printer.data(format!("operator:    {}", r.operator));
                printer.data(format!("owner:       {}", r.owner));
                printer.data(format!("pubkey:      0x{}", alloy_hex::encode(r.pubkey)));
                printer.data(format!("regions:     {}", r.regions.join(",")));
                printer.data(format!("contact:     {}", r.contact));
                printer.data(format!("attestation: {}", r.attestation));
                printer.data(format!("pricing:     {}", r.pricing_table));
                printer.data(format!("reputation:  {}", r.reputation));
                printer.data(format!("payers:      {}", r.payers));
                printer.data(format!(
                    "redeemed:    {} USDC",
                    format_usdc(r.value_redeemed)
                ));
            }
        }
        RegistryCommand::Select(select_args) => select(&select_args, &registry, printer).await?,
        RegistryCommand::Tables { json } => {
            let tables = registry.tables().await?;
            if json {
                let list: Vec<Value> = tables.iter().map(table_json).collect();
                printer.json(&Value::Array(list));
            } else if tables.is_empty() {
                printer.status("no pricing table yet");
            } else {
                printer.data("id\tper_request\tper_ms\tper_mb\tsubscribers\tcreator");
                for t in &tables {
                    printer.data(format!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        t.id, t.per_request, t.per_ms, t.per_mb, t.subscribers, t.creator
                    ));
                }
            }
        }
    }
    Ok(())
}

fn record_json(r: &ProviderRecord) -> Value {
    json!({
        "name": r.name,
        "node": r.node,
        "url": r.url,
        "operator": r.operator,
        "owner": r.owner,
        "pubkey": format!("0x{}", alloy_hex::encode(r.pubkey)),
        "regions": r.regions,
        "contact": r.contact,
        "attestation": r.attestation,
        "pricing_table": r.pricing_table.to_string(),
        "reputation": r.reputation.to_string(),
        "payers": r.payers.to_string(),
        "value_redeemed": format_usdc(r.value_redeemed),
    })
}

fn table_json(t: &PricingTable) -> Value {
    json!({
        "id": t.id.to_string(),
        "per_request": t.per_request.to_string(),
        "per_ms": t.per_ms.to_string(),
        "per_mb": t.per_mb.to_string(),
        "creator": t.creator,
        "subscribers": t.subscribers.to_string(),
    })
}
