//! Provider selection from what the registry publishes (seed 004: "select a provider
//! based on the client's preferences: region, pricing, points"). `registry select` prints
//! the ranking and `deploy` without a provider takes its first entry; both call [`rank`],
//! so what a user sees listed is what deploy picks.
//!
//! Filters: region, a cap on the per-request price, a minimum of reputation points, an
//! X25519 key (nothing can be sealed otherwise). Order: reputation points (they cost real
//! redeemed money to earn), then a typical call's price (per request + 100 ms + 0.1 MB),
//! then distinct paying payers, then the name (a stable tie-break).

use std::collections::HashMap;

use khachapuri_chain::{PricingTable, ProviderRecord, U256};
use serde::Serialize;

/// What the caller wants.
#[derive(Debug, Clone, Default)]
pub struct Preferences {
    /// Only providers listing this region.
    pub region: Option<String>,
    /// Most a typical call may cost, in the tables' unit (millionths of a token base
    /// unit); providers with no table are kept (they set their prices in their node).
    pub max_price: Option<U256>,
    /// Fewest reputation points.
    pub min_reputation: u64,
}

/// A provider that passed the filters, with why it ranks where it does.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// Registry name.
    pub name: String,
    /// Endpoint URL.
    pub url: String,
    /// Operator address.
    pub operator: String,
    /// Regions it lists.
    pub regions: Vec<String>,
    /// Reputation points.
    pub reputation: u64,
    /// Distinct payers that paid it.
    pub payers: u64,
    /// A typical call's price in the tables' unit, `None` without a pricing table.
    #[serde(skip)]
    pub typical_price: Option<U256>,
    /// The same in USDC, for people and JSON readers.
    pub typical_price_usdc: Option<String>,
    /// One line a human can read: why this provider is here.
    pub reason: String,
}

/// A provider the filters removed, and which filter.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    /// Registry name.
    pub name: String,
    /// Why it is not eligible.
    pub why: String,
}

/// The price of a typical call (one request, 100 ms, 0.1 MB out) under `table`.
pub fn typical_price(table: &PricingTable) -> U256 {
    table.per_request + table.per_ms * U256::from(100u64) + table.per_mb / U256::from(10u64)
}

fn small(v: U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Filters and orders `records` by `prefs`; `tables` by id.
pub fn rank(
    records: &[ProviderRecord],
    tables: &HashMap<U256, PricingTable>,
    prefs: &Preferences,
) -> (Vec<Ranked>, Vec<Excluded>) {
    let mut ranked = Vec::new();
    let mut excluded = Vec::new();
    for r in records {
        let exclude = |why: String| Excluded {
            name: r.name.clone(),
            why,
        };
        if let Some(region) = &prefs.region {
            if !r.regions.iter().any(|x| x == region) {
                excluded.push(exclude(format!(
                    "not in region {region} (lists {})",
                    r.regions.join(",")
                )));
                continue;
            }
        }
        let reputation = small(r.reputation);
        if reputation < prefs.min_reputation {
            excluded.push(exclude(format!(
                "{reputation} reputation points < {}",
                prefs.min_reputation
            )));
            continue;
        }
        if r.pubkey == [0; 32] {
            excluded.push(exclude("no X25519 key: nothing can be sealed to it".into()));
            continue;
        }
        let price = tables.get(&r.pricing_table).map(typical_price);
        if let (Some(cap), Some(p)) = (prefs.max_price, price) {
            if p > cap {
                excluded.push(exclude(format!(
                    "a typical call costs {} USDC > {}",
                    khachapuri_chain::format_micro_usdc(p),
                    khachapuri_chain::format_micro_usdc(cap)
                )));
                continue;
            }
        }
        let payers = small(r.payers);
        let price_text = match price {
            Some(p) => format!(
                "{} USDC a typical call",
                khachapuri_chain::format_micro_usdc(p)
            ),
            None => "prices set by its node (no pricing table)".into(),
        };
        ranked.push(Ranked {
            name: r.name.clone(),
            url: r.url.clone(),
            operator: format!("{:#x}", r.operator),
            regions: r.regions.clone(),
            reputation,
            payers,
            typical_price: price,
            typical_price_usdc: price.map(khachapuri_chain::format_micro_usdc),
            reason: format!(
                "{reputation} reputation points from {payers} paying payers, {price_text}, regions {}",
                r.regions.join(",")
            ),
        });
    }
    ranked.sort_by(|a, b| {
        b.reputation
            .cmp(&a.reputation)
            .then_with(|| match (a.typical_price, b.typical_price) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| b.payers.cmp(&a.payers))
            .then_with(|| a.name.cmp(&b.name))
    });
    (ranked, excluded)
}

/// Reads every record and pricing table from `registry` and ranks them.
pub async fn rank_registry(
    registry: &khachapuri_chain::RegistryClient,
    prefs: &Preferences,
) -> Result<(Vec<Ranked>, Vec<Excluded>), khachapuri_chain::ChainError> {
    let records = registry.list().await?;
    let tables: HashMap<U256, PricingTable> = registry
        .tables()
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    Ok(rank(&records, &tables, prefs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use khachapuri_chain::Address;

    fn record(name: &str, region: &str, table: u64, reputation: u64) -> ProviderRecord {
        ProviderRecord {
            name: name.into(),
            node: khachapuri_chain::node_of(name),
            owner: Address::ZERO,
            operator: Address::repeat_byte(1),
            url: format!("https://{name}.example"),
            pubkey: [1; 32],
            regions: vec![region.into()],
            contact: String::new(),
            attestation: String::new(),
            pricing_table: U256::from(table),
            reputation: U256::from(reputation),
            payers: U256::from(reputation * 2),
            value_redeemed: U256::ZERO,
        }
    }

    fn table(id: u64, per_request: u64) -> (U256, PricingTable) {
        (
            U256::from(id),
            PricingTable {
                id: U256::from(id),
                per_request: U256::from(per_request),
                per_ms: U256::ZERO,
                per_mb: U256::ZERO,
                creator: Address::ZERO,
                subscribers: U256::from(1u64),
            },
        )
    }

    #[test]
    fn filters_then_orders_by_points_then_price() {
        let records = vec![
            record("cheap", "eu", 1, 1),
            record("dear", "eu", 2, 1),
            record("famous", "eu", 2, 9),
            record("far", "us", 1, 50),
            record("novice", "eu", 1, 0),
        ];
        let tables: HashMap<_, _> = [table(1, 100), table(2, 1000)].into_iter().collect();
        let prefs = Preferences {
            region: Some("eu".into()),
            max_price: None,
            min_reputation: 1,
        };
        let (ranked, excluded) = rank(&records, &tables, &prefs);
        let names: Vec<&str> = ranked.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["famous", "cheap", "dear"]);
        let out: Vec<&str> = excluded.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(out, ["far", "novice"]);
        assert!(
            ranked[0].reason.contains("9 reputation points"),
            "{}",
            ranked[0].reason
        );

        let capped = Preferences {
            max_price: Some(U256::from(500u64)),
            ..Preferences::default()
        };
        let (ranked, excluded) = rank(&records, &tables, &capped);
        assert!(ranked
            .iter()
            .all(|r| r.typical_price <= Some(U256::from(500u64))));
        assert!(excluded
            .iter()
            .any(|e| e.name == "dear" && e.why.contains("typical call")));
    }
}
