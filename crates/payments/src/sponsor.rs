//! Budgets of `sponsored` deployments: what the callers of one deployment may draw from
//! its owner's channel.
//!
//! A sponsored spec carries the owner's voucher, and vouchers are cumulative for the whole
//! channel `(payer, epoch)`: the same signed amount also covers the owner's own paid calls
//! and every other deployment the owner sponsors with that provider. The ledger alone would
//! let a deployment's callers draw all of it. So each deployment also has a budget, kept
//! here per `(deployment, payer, epoch)`:
//!
//! - the **grant**: the owner-signed budget of the spec (`sponsor_budget`, or for specs from
//!   before that field the carried voucher's amount), which applies to the epoch of the
//!   carried voucher only. A channel of a later epoch is a new deposit: the spec says
//!   nothing about it, so there the deployment has only what top-ups naming it credited.
//! - **top-ups**: the increase of a voucher posted to `/.well-known/khachapuri/voucher`
//!   *naming the deployment* over the channel's previous best voucher ([`top_up_increase`]).
//!   A replayed or lower voucher adds nothing.
//!
//! Admission holds a call's maximum cost against both the channel (the ledger) and the
//! budget ([`SponsorBudgets::reserve`]); the charge books the actual cost on both.
//!
//! The deployment is identified by the hash of its spec (what the owner signed), not by a
//! callable CID: one spec can sit under many CIDs (a public envelope's JSON can be
//! re-spaced, a spec can be sealed again), and a CID key would give each copy a fresh
//! budget.
//!
//! Durability: the table lives in the ledger's SQLite file. Credits are written with
//! `synchronous=FULL` before the top-up is answered; consumption is written through on
//! every charge with `synchronous=NORMAL` (a power loss can forget the last few charges,
//! which only favours the owner, as in the ledger). Holds of calls in flight live in
//! memory. The in-memory cache is bounded: rows without holds are dropped when it is full
//! (they are all on disk).
//!
//! Methods block on SQLite: call them through [`SponsorBudgets::run_blocking`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use khachapuri_chain::{Address, SignedVoucher, U256};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{PaymentError, Result};
use crate::pricing::base_to_micro;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sponsor_budgets (
    deployment TEXT NOT NULL,
    payer      TEXT NOT NULL,
    epoch      TEXT NOT NULL,
    topped     TEXT NOT NULL DEFAULT '0',
    consumed   TEXT NOT NULL DEFAULT '0',
    PRIMARY KEY (deployment, payer, epoch)
);
";

/// Rows kept in memory before idle ones are dropped.
const DEFAULT_CAPACITY: usize = 4096;

/// One deployment's budget in one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// SHA-256 of the deployment's spec (`Spec::hash`): what its owner signed.
    pub deployment: [u8; 32],
    /// The owner, who pays.
    pub payer: Address,
    /// The channel's epoch.
    pub epoch: u64,
}

/// The spec's own budget: `amount` base units in channel epoch `epoch` (the carried
/// voucher's), nothing in any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Epoch of the voucher the spec carries.
    pub epoch: u64,
    /// Base units the owner signed for this deployment.
    pub amount: U256,
}

impl Grant {
    /// Micro-units the grant gives in `epoch`.
    pub fn in_epoch(&self, epoch: u64) -> U256 {
        if epoch == self.epoch {
            base_to_micro(self.amount)
        } else {
            U256::ZERO
        }
    }
}

/// Where a deployment's budget stands (micro-units unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Grant plus top-ups.
    pub authorized: U256,
    /// Base units credited by top-ups naming the deployment.
    pub topped: U256,
    /// Charged to the deployment's callers so far.
    pub consumed: U256,
    /// Held by calls in flight.
    pub reserved: U256,
}

impl Budget {
    /// What new calls may still hold.
    pub fn available(&self) -> U256 {
        self.authorized
            .saturating_sub(self.consumed)
            .saturating_sub(self.reserved)
    }
}

/// `max_cost` held against a deployment's budget until [`SponsorBudgets::settle`]. Not
/// `Clone`: it is settled exactly once.
#[derive(Debug, PartialEq, Eq)]
pub struct BudgetHold {
    key: BudgetKey,
    grant: Grant,
    amount: U256,
}

impl BudgetHold {
    /// Whose budget.
    pub fn key(&self) -> BudgetKey {
        self.key
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Row {
    topped: U256,
    consumed: U256,
    reserved: U256,
}

impl Row {
    fn budget(&self, grant: &Grant, epoch: u64) -> Budget {
        Budget {
            authorized: grant
                .in_epoch(epoch)
                .saturating_add(base_to_micro(self.topped)),
            topped: self.topped,
            consumed: self.consumed,
            reserved: self.reserved,
        }
    }
}

/// The budgets, on disk and cached. Lock order: `db` before `mem`.
pub struct SponsorBudgets {
    db: Mutex<Connection>,
    mem: Mutex<HashMap<BudgetKey, Row>>,
    capacity: usize,
}

impl std::fmt::Debug for SponsorBudgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SponsorBudgets").finish_non_exhaustive()
    }
}

fn num(s: &str) -> Result<U256> {
    U256::from_str_radix(s, 10).map_err(|e| PaymentError::Corrupt(format!("number {s:?}: {e}")))
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Base units a top-up naming a deployment credits it: how far `submitted` raised the
/// channel's best voucher over `before` (the best before it was recorded). Nothing when
/// it did not become the best (a replay, a lower voucher, or one a concurrent higher
/// voucher overtook).
pub fn top_up_increase(
    before: Option<U256>,
    best_after: &SignedVoucher,
    submitted: &SignedVoucher,
) -> U256 {
    if best_after != submitted {
        return U256::ZERO;
    }
    submitted
        .voucher
        .amount
        .saturating_sub(before.unwrap_or(U256::ZERO))
}

impl SponsorBudgets {
    /// Opens (creating if needed) the budgets table in the SQLite file at `path` (the
    /// ledger's file: a second connection, in WAL mode like the ledger's).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_capacity(path, DEFAULT_CAPACITY)
    }

    /// [`SponsorBudgets::open`] keeping at most about `capacity` idle rows in memory.
    pub fn open_with_capacity(path: impl AsRef<Path>, capacity: usize) -> Result<Self> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PaymentError::Corrupt(format!(
                "cannot switch the ledger to WAL (journal_mode={mode})"
            )));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Mutex::new(conn),
            mem: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mem(&self) -> MutexGuard<'_, HashMap<BudgetKey, Row>> {
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The row of `key`, read from disk when not cached (the caller holds `db`).
    fn load<'m>(
        conn: &Connection,
        mem: &'m mut HashMap<BudgetKey, Row>,
        capacity: usize,
        key: BudgetKey,
    ) -> Result<&'m mut Row> {
        if !mem.contains_key(&key) {
            let raw: Option<(String, String)> = conn
                .query_row(
                    "SELECT topped, consumed FROM sponsor_budgets WHERE deployment = ?1 AND payer = ?2 AND epoch = ?3",
                    params![hex(&key.deployment), key.payer.to_string().to_lowercase(), key.epoch.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let row = match raw {
                Some((topped, consumed)) => Row {
                    topped: num(&topped)?,
                    consumed: num(&consumed)?,
                    reserved: U256::ZERO,
                },
                None => Row::default(),
            };
            if mem.len() >= capacity {
                // Every row is on disk; only holds live nowhere else.
                mem.retain(|_, r| !r.reserved.is_zero());
            }
            mem.insert(key, row);
        }
        mem.get_mut(&key)
            .ok_or_else(|| PaymentError::Corrupt("a budget row vanished".into()))
    }

    fn write(conn: &Connection, key: &BudgetKey, row: &Row, full: bool) -> Result<()> {
        conn.execute_batch(if full {
            "PRAGMA synchronous=FULL"
        } else {
            "PRAGMA synchronous=NORMAL"
        })?;
        conn.execute(
            "INSERT INTO sponsor_budgets (deployment, payer, epoch, topped, consumed) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (deployment, payer, epoch) DO UPDATE SET topped = excluded.topped, consumed = excluded.consumed",
            params![
                hex(&key.deployment),
                key.payer.to_string().to_lowercase(),
                key.epoch.to_string(),
                row.topped.to_string(),
                row.consumed.to_string()
            ],
        )?;
        Ok(())
    }

    /// Where `key`'s budget stands under `grant`.
    pub fn budget(&self, key: BudgetKey, grant: Grant) -> Result<Budget> {
        let conn = self.db();
        let mut mem = self.mem();
        let row = Self::load(&conn, &mut mem, self.capacity, key)?;
        Ok(row.budget(&grant, key.epoch))
    }

    /// Holds `max_cost` micro-units against `key`'s budget (grant plus top-ups, minus what
    /// was consumed and is held), or refuses with `InsufficientCredit` (a 402).
    pub fn reserve(&self, key: BudgetKey, grant: Grant, max_cost: U256) -> Result<BudgetHold> {
        let conn = self.db();
        let mut mem = self.mem();
        let row = Self::load(&conn, &mut mem, self.capacity, key)?;
        let available = row.budget(&grant, key.epoch).available();
        if available < max_cost {
            return Err(PaymentError::InsufficientCredit {
                needed: max_cost,
                available,
            });
        }
        row.reserved += max_cost;
        Ok(BudgetHold {
            key,
            grant,
            amount: max_cost,
        })
    }

    /// Charges `actual_cost` (capped at the hold) and releases the rest; `0` releases a
    /// call that did not run. Written through before it returns.
    pub fn settle(&self, hold: BudgetHold, actual_cost: U256) -> Result<Budget> {
        let conn = self.db();
        let cost = actual_cost.min(hold.amount);
        let row = {
            let mut mem = self.mem();
            let row = Self::load(&conn, &mut mem, self.capacity, hold.key)?;
            row.reserved = row.reserved.saturating_sub(hold.amount);
            row.consumed = row.consumed.saturating_add(cost);
            *row
        };
        if !cost.is_zero() {
            Self::write(&conn, &hold.key, &row, false)?;
        }
        Ok(row.budget(&hold.grant, hold.key.epoch))
    }

    /// Adds `base_units` to what top-ups credited `key` (fsync'd before it returns).
    pub fn credit(&self, key: BudgetKey, base_units: U256) -> Result<U256> {
        let conn = self.db();
        let mut row = {
            let mut mem = self.mem();
            *Self::load(&conn, &mut mem, self.capacity, key)?
        };
        if base_units.is_zero() {
            return Ok(row.topped);
        }
        row.topped = row.topped.saturating_add(base_units);
        Self::write(&conn, &key, &row, true)?;
        if let Some(r) = self.mem().get_mut(&key) {
            r.topped = row.topped;
        }
        Ok(row.topped)
    }

    /// Runs blocking work on tokio's blocking pool.
    pub async fn run_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&SponsorBudgets) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| PaymentError::Task(e.to_string()))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use khachapuri_chain::Voucher;
    use khachapuri_devnet::dev_signer;

    fn key(d: u8, epoch: u64) -> BudgetKey {
        BudgetKey {
            deployment: [d; 32],
            payer: Address::repeat_byte(1),
            epoch,
        }
    }

    fn micro(base: u64) -> U256 {
        base_to_micro(U256::from(base))
    }

    const GRANT: Grant = Grant {
        epoch: 0,
        amount: U256::from_limbs([100, 0, 0, 0]),
    };

    #[test]
    fn a_budget_stops_its_callers_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        {
            let b = SponsorBudgets::open(&path).unwrap();
            let hold = b.reserve(key(1, 0), GRANT, micro(60)).unwrap();
            // Held: a second call of 60 does not fit in 100.
            assert!(matches!(
                b.reserve(key(1, 0), GRANT, micro(60)),
                Err(PaymentError::InsufficientCredit { .. })
            ));
            // Another deployment has its own budget.
            let other = b.reserve(key(2, 0), GRANT, micro(60)).unwrap();
            b.settle(other, U256::ZERO).unwrap();
            let after = b.settle(hold, micro(70)).unwrap();
            assert_eq!(after.consumed, micro(60), "capped at the hold");
            assert_eq!(after.available(), micro(40));
        }
        let b = SponsorBudgets::open(&path).unwrap();
        assert_eq!(b.budget(key(1, 0), GRANT).unwrap().consumed, micro(60));
        assert!(b.reserve(key(1, 0), GRANT, micro(41)).is_err());
        assert_eq!(b.budget(key(2, 0), GRANT).unwrap().consumed, U256::ZERO);
        // The grant is for the carried voucher's epoch only.
        assert!(b.reserve(key(1, 1), GRANT, micro(1)).is_err());
        // Top-ups raise only the named deployment's budget, durably.
        assert_eq!(
            b.credit(key(1, 0), U256::from(50u64)).unwrap(),
            U256::from(50u64)
        );
        drop(b);
        let b = SponsorBudgets::open(&path).unwrap();
        let budget = b.budget(key(1, 0), GRANT).unwrap();
        assert_eq!(budget.authorized, micro(150));
        assert_eq!(budget.available(), micro(90));
        assert_eq!(b.budget(key(2, 0), GRANT).unwrap().authorized, micro(100));
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_holds() {
        let dir = tempfile::tempdir().unwrap();
        let b = SponsorBudgets::open_with_capacity(dir.path().join("l.sqlite"), 4).unwrap();
        let hold = b.reserve(key(0, 0), GRANT, micro(10)).unwrap();
        for d in 1..40u8 {
            let h = b.reserve(key(d, 0), GRANT, micro(1)).unwrap();
            b.settle(h, micro(1)).unwrap();
        }
        assert!(b.mem().len() <= 5, "{}", b.mem().len());
        // The hold survived eviction, and evicted rows come back from disk.
        assert_eq!(b.budget(key(0, 0), GRANT).unwrap().reserved, micro(10));
        assert_eq!(b.budget(key(1, 0), GRANT).unwrap().consumed, micro(1));
        b.settle(hold, U256::ZERO).unwrap();
    }

    #[test]
    fn a_top_up_credits_only_its_increase_once() {
        let s = dev_signer(1);
        let v = |amount: u64| {
            Voucher {
                payer: s.address(),
                provider: Address::repeat_byte(2),
                epoch: 0,
                amount: U256::from(amount),
            }
            .sign(&s, 31337, Address::repeat_byte(3))
            .unwrap()
        };
        let (v5, v8) = (v(5), v(8));
        assert_eq!(top_up_increase(None, &v5, &v5), U256::from(5u64));
        assert_eq!(
            top_up_increase(Some(U256::from(5u64)), &v8, &v8),
            U256::from(3u64)
        );
        // Replayed: the best did not move.
        assert_eq!(
            top_up_increase(Some(U256::from(8u64)), &v8, &v8),
            U256::ZERO
        );
        // Lower than the best: not the best after recording.
        assert_eq!(
            top_up_increase(Some(U256::from(8u64)), &v8, &v5),
            U256::ZERO
        );
    }
}
