//! The provider's durable voucher ledger, on embedded SQLite.
//!
//! Per channel `(payer, epoch)` it keeps the best voucher seen (highest cumulative amount,
//! with its signature: that is what settlement submits), what calls consumed (micro-units)
//! and what settlement confirmed on chain (base units). A new best voucher is committed with
//! `synchronous=FULL` (fsync'd) before the call it pays for runs, so a crash or power loss
//! never loses money the node already served. Consumption is committed with
//! `synchronous=NORMAL` (durable across process crashes; at power loss it can lag by the last
//! few calls, which only ever favours the payer). In-flight reservations live in memory: a
//! crash ends those calls anyway.
//!
//! All methods block on SQLite (microseconds to an fsync): from async code call them inside
//! `tokio::task::spawn_blocking` (the ledger is `Send + Sync`; share it in an `Arc`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use khachapuri_chain::{Address, Claim, SignedVoucher, U256};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{PaymentError, Result};
use crate::pricing::micro_to_base_ceil;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    payer     TEXT NOT NULL,
    epoch     TEXT NOT NULL,
    provider  TEXT NOT NULL,
    amount    TEXT NOT NULL,
    voucher   TEXT NOT NULL,
    consumed  TEXT NOT NULL DEFAULT '0',
    redeemed  TEXT NOT NULL DEFAULT '0',
    closed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (payer, epoch)
);
";

#[path = "ledger_rows.rs"]
mod rows;
pub use rows::{claimable, ChannelRow, Charge, LedgerStatus, Reservation};

/// The in-memory side of the ledger, behind its own lock so the hot path of a prepaid call
/// never waits for another thread's SQLite I/O (that lock is only ever held for a few
/// field updates).
#[derive(Default)]
struct Mem {
    /// Write-through cache of the rows calls touch (and their in-memory reservations), so
    /// a prepaid call costs no SELECT or JSON parsing.
    rows: HashMap<(Address, u64), ChannelRow>,
    /// Channels whose in-memory `consumed` is ahead of the database: charged by
    /// [`Ledger::settle_reservation_cached`], written by [`Ledger::flush`].
    dirty: HashSet<(Address, u64)>,
}

/// The durable ledger. See the module docs: every method blocks, except the two `_cached`
/// / `_known` hot-path methods.
///
/// Lock order: `db` before `mem`, and `mem` is never held across database work. Every
/// database write happens under `db`, so a flush's snapshot taken under `db` is never
/// older than what another writer already stored.
pub struct Ledger {
    db: Mutex<Connection>,
    mem: Mutex<Mem>,
}

impl Drop for Ledger {
    /// A graceful stop writes what was charged in memory.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "cannot write the last charges to the ledger");
        }
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

fn key(payer: Address) -> String {
    payer.to_string().to_lowercase()
}

fn num(s: &str) -> Result<U256> {
    U256::from_str_radix(s, 10).map_err(|e| PaymentError::Corrupt(format!("number {s:?}: {e}")))
}

fn voucher_of(json: &str) -> Result<SignedVoucher> {
    serde_json::from_str(json).map_err(|e| PaymentError::Corrupt(format!("voucher: {e}")))
}

fn set_sync(conn: &Connection, full: bool) -> Result<()> {
    conn.execute_batch(if full {
        "PRAGMA synchronous=FULL"
    } else {
        "PRAGMA synchronous=NORMAL"
    })?;
    Ok(())
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, in WAL mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PaymentError::Corrupt(format!(
                "cannot switch the ledger to WAL (journal_mode={mode})"
            )));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        set_sync(&conn, true)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            db: Mutex::new(conn),
            mem: Mutex::new(Mem::default()),
        })
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        // Only plain field updates happen under this lock: a panic cannot leave them torn.
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `voucher` (already verified by the caller) durably, keeping only the best
    /// per channel. Returns whether it improved on what the ledger had; replaying the same
    /// or an older, lower voucher changes nothing.
    pub fn record_voucher(&self, voucher: &SignedVoucher) -> Result<bool> {
        Ok(self.record_vouchers(std::slice::from_ref(voucher))?[0])
    }

    /// [`Ledger::record_voucher`] for many vouchers with one transaction, so one fsync
    /// makes all of them durable (group commit: see [`crate::VoucherWriter`]). Returns,
    /// per voucher, whether it was the channel's best when its turn came.
    pub fn record_vouchers(&self, vouchers: &[SignedVoucher]) -> Result<Vec<bool>> {
        let mut conn = self.db();
        let mut improved = vec![false; vouchers.len()];
        // Best amount per channel as the batch goes (the database's, or this batch's).
        let mut best: HashMap<(Address, u64), U256> = HashMap::new();
        for (i, voucher) in vouchers.iter().enumerate() {
            let v = &voucher.voucher;
            let k = (v.payer, v.epoch);
            let current = match best.get(&k) {
                Some(a) => Some(*a),
                None => Self::load(&conn, &mut self.mem(), v.payer, v.epoch)?
                    .map(|row| row.best.voucher.amount),
            };
            if current.is_none_or(|a| v.amount > a) {
                best.insert(k, v.amount);
                improved[i] = true;
            }
        }
        if !improved.contains(&true) {
            return Ok(improved);
        }
        // Only the last improving voucher of each channel is written: it dominates the rest.
        let mut last: HashMap<(Address, u64), usize> = HashMap::new();
        for (i, v) in vouchers.iter().enumerate() {
            if improved[i] {
                last.insert((v.voucher.payer, v.voucher.epoch), i);
            }
        }
        set_sync(&conn, true)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for &i in last.values() {
            let voucher = &vouchers[i];
            let v = &voucher.voucher;
            let json = serde_json::to_string(voucher)
                .map_err(|e| PaymentError::Corrupt(format!("voucher: {e}")))?;
            tx.execute(
                "INSERT INTO channels (payer, epoch, provider, amount, voucher) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (payer, epoch) DO UPDATE SET amount = excluded.amount, voucher = excluded.voucher",
                params![key(v.payer), v.epoch.to_string(), key(v.provider), v.amount.to_string(), json],
            )?;
        }
        tx.commit()?;
        let mut mem = self.mem();
        for &i in last.values() {
            let voucher = &vouchers[i];
            let k = (voucher.voucher.payer, voucher.voucher.epoch);
            match mem.rows.get_mut(&k) {
                Some(row) => row.best = voucher.clone(),
                None => {
                    mem.rows.insert(
                        k,
                        ChannelRow {
                            best: voucher.clone(),
                            consumed: U256::ZERO,
                            reserved: U256::ZERO,
                            redeemed: U256::ZERO,
                            closed: false,
                        },
                    );
                }
            }
        }
        Ok(improved)
    }

    /// The ledger's view of channel `(payer, epoch)`, if it holds a voucher for it.
    pub fn channel(&self, payer: Address, epoch: u64) -> Result<Option<ChannelRow>> {
        let conn = self.db();
        Ok(Self::load(&conn, &mut self.mem(), payer, epoch)?.cloned())
    }

    /// The cached row, loaded from the database on first use (the caller holds both
    /// locks, `db` first).
    fn load<'m>(
        conn: &Connection,
        mem: &'m mut Mem,
        payer: Address,
        epoch: u64,
    ) -> Result<Option<&'m mut ChannelRow>> {
        let k = (payer, epoch);
        match mem.rows.entry(k) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(Some(e.into_mut())),
            std::collections::hash_map::Entry::Vacant(e) => {
                Ok(Self::read_row(conn, payer, epoch)?.map(|row| e.insert(row)))
            }
        }
    }

    fn read_row(conn: &Connection, payer: Address, epoch: u64) -> Result<Option<ChannelRow>> {
        let raw: Option<(String, String, String, bool)> = conn
            .query_row(
                "SELECT voucher, consumed, redeemed, closed FROM channels WHERE payer = ?1 AND epoch = ?2",
                params![key(payer), epoch.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((voucher, consumed, redeemed, closed)) = raw else {
            return Ok(None);
        };
        Ok(Some(ChannelRow {
            best: voucher_of(&voucher)?,
            consumed: num(&consumed)?,
            reserved: U256::ZERO,
            redeemed: num(&redeemed)?,
            closed,
        }))
    }

    /// The hot path of a prepaid call: when `(payer, epoch)` is already in memory and its
    /// best voucher is exactly `voucher`, runs `check` (the gate's cached channel check)
    /// and admits like [`Ledger::try_consume`] without any database work (it only takes
    /// the in-memory lock, never held across I/O), so the async gate can call it inline.
    /// `None`: take the slow path.
    pub fn try_consume_known(
        &self,
        voucher: &SignedVoucher,
        max_cost: U256,
        check: impl FnOnce() -> Result<()>,
    ) -> Option<Result<Reservation>> {
        let mut mem = self.mem();
        let (payer, epoch) = (voucher.voucher.payer, voucher.voucher.epoch);
        let row = mem.rows.get_mut(&(payer, epoch))?;
        if row.best != *voucher {
            return None;
        }
        if let Err(e) = check() {
            return Some(Err(e));
        }
        Some(Self::reserve(row, payer, epoch, max_cost))
    }

    /// [`Ledger::try_consume`] on a row already in memory, taking only the in-memory lock:
    /// the gate calls it inline right after the blocking step that loaded the row, so no
    /// `.await` sits between holding credit and handing the reservation to the caller (a
    /// caller that gives up mid-admission cannot leak a hold). `None`: row not in memory.
    pub fn try_consume_cached(
        &self,
        payer: Address,
        epoch: u64,
        max_cost: U256,
    ) -> Option<Result<Reservation>> {
        let mut mem = self.mem();
        let row = mem.rows.get_mut(&(payer, epoch))?;
        Some(Self::reserve(row, payer, epoch, max_cost))
    }

    /// Holds `max_cost` on `row` when its open credit covers it.
    fn reserve(
        row: &mut ChannelRow,
        payer: Address,
        epoch: u64,
        max_cost: U256,
    ) -> Result<Reservation> {
        let available = if row.closed {
            U256::ZERO
        } else {
            row.available()
        };
        if available < max_cost {
            return Err(PaymentError::InsufficientCredit {
                needed: max_cost,
                available,
            });
        }
        row.reserved += max_cost;
        Ok(Reservation {
            payer,
            epoch,
            amount: max_cost,
        })
    }

    /// Admits a call atomically when the best voucher minus consumed minus reserved covers
    /// `max_cost` (micro-units), holding `max_cost` until the reservation is settled.
    pub fn try_consume(&self, payer: Address, epoch: u64, max_cost: U256) -> Result<Reservation> {
        let conn = self.db();
        let mut mem = self.mem();
        match Self::load(&conn, &mut mem, payer, epoch)? {
            Some(row) => Self::reserve(row, payer, epoch, max_cost),
            None => Err(PaymentError::InsufficientCredit {
                needed: max_cost,
                available: U256::ZERO,
            }),
        }
    }

    /// Charges the call's actual cost (capped at what was reserved, so consumption never
    /// passes the voucher) and releases the rest. `actual_cost = 0` releases a call that did
    /// not run.
    pub fn settle_reservation(&self, res: Reservation, actual_cost: U256) -> Result<Charge> {
        let conn = self.db();
        let cost = actual_cost.min(res.amount);
        let (consumed, authorized) = {
            let mut mem = self.mem();
            let row = Self::load(&conn, &mut mem, res.payer, res.epoch)?.ok_or_else(|| {
                PaymentError::Corrupt("reservation for a channel the ledger does not hold".into())
            })?;
            row.reserved = row.reserved.saturating_sub(res.amount);
            row.consumed = row.consumed.saturating_add(cost);
            let out = (row.consumed, row.authorized_micro());
            if !cost.is_zero() {
                // Written just below (with any earlier in-memory charges it includes).
                mem.dirty.remove(&(res.payer, res.epoch));
            }
            out
        };
        if !cost.is_zero() {
            set_sync(&conn, false)?;
            let written = conn.execute(
                "UPDATE channels SET consumed = ?3 WHERE payer = ?1 AND epoch = ?2",
                params![key(res.payer), res.epoch.to_string(), consumed.to_string()],
            );
            if let Err(e) = written {
                // Still charged in memory: let the next flush try again.
                self.mem().dirty.insert((res.payer, res.epoch));
                return Err(e.into());
            }
        }
        Ok(Charge {
            cost,
            consumed,
            authorized,
        })
    }

    /// Charges a call in memory, without touching the database, when its channel row is
    /// cached (only the in-memory lock is taken); `None` means "take the blocking path"
    /// ([`Ledger::settle_reservation`]). The consumed total reaches disk with the next
    /// [`Ledger::flush`] (the provider flushes a few times a second and on shutdown).
    ///
    /// Why this is safe: vouchers, the payer's commitments and what settlement redeems,
    /// are still fsync'd before their call runs. `consumed` is the provider's own
    /// bookkeeping for admission; a crash between flushes forgets at most the charges of
    /// that interval, which only lets the payer's prepaid part stretch a little further (and
    /// settlement, which claims what was consumed, under-claims them). It can never make
    /// settlement claim more than the calls cost or a voucher allows.
    pub fn settle_reservation_cached(
        &self,
        res: &Reservation,
        actual_cost: U256,
    ) -> Option<Charge> {
        let mut mem = self.mem();
        let k = (res.payer, res.epoch);
        let row = mem.rows.get_mut(&k)?;
        let cost = actual_cost.min(res.amount);
        row.reserved = row.reserved.saturating_sub(res.amount);
        row.consumed = row.consumed.saturating_add(cost);
        let charge = Charge {
            cost,
            consumed: row.consumed,
            authorized: row.authorized_micro(),
        };
        if !cost.is_zero() {
            mem.dirty.insert(k);
        }
        Some(charge)
    }

    /// Writes the consumed totals charged in memory since the last flush, in one
    /// transaction. Returns how many channels were written.
    pub fn flush(&self) -> Result<usize> {
        let mut conn = self.db();
        // Snapshot under `db`: no other writer can store a newer figure before ours.
        let snapshot: Vec<((Address, u64), U256)> = {
            let mut mem = self.mem();
            let Mem { rows, dirty } = &mut *mem;
            dirty
                .drain()
                .filter_map(|k| rows.get(&k).map(|row| (k, row.consumed)))
                .collect()
        };
        if snapshot.is_empty() {
            return Ok(0);
        }
        let written = (|| -> Result<()> {
            set_sync(&conn, false)?;
            let tx = conn.transaction()?;
            for ((payer, epoch), consumed) in &snapshot {
                tx.execute(
                    "UPDATE channels SET consumed = ?3 WHERE payer = ?1 AND epoch = ?2",
                    params![key(*payer), epoch.to_string(), consumed.to_string()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = written {
            // Nothing was written: keep the charges for the next flush.
            self.mem().dirty.extend(snapshot.iter().map(|(k, _)| *k));
            return Err(e);
        }
        Ok(snapshot.len())
    }

    /// The latest epoch of `payer` with an open channel row: where a sponsor's top-ups for
    /// a newer epoch live after a restart (the spec still carries the older voucher).
    pub fn latest_open_epoch(&self, payer: Address) -> Result<Option<u64>> {
        let conn = self.db();
        let mut stmt =
            conn.prepare("SELECT epoch FROM channels WHERE payer = ?1 AND closed = 0")?;
        let epochs = stmt.query_map(params![key(payer)], |r| r.get::<_, String>(0))?;
        let mut latest = None;
        for e in epochs {
            let e = e?;
            let e: u64 = e
                .parse()
                .map_err(|_| PaymentError::Corrupt(format!("epoch {e:?}")))?;
            latest = latest.max(Some(e));
        }
        Ok(latest)
    }

    /// What settlement should submit: for every open channel whose calls consumed more than
    /// was redeemed, its best voucher with the claim [`claimable`] (consumed rounded up to a
    /// base unit, capped by the voucher). Flushes write-behind charges first, so calls
    /// served in the last flush interval are claimed too.
    pub fn claims(&self) -> Result<Vec<Claim>> {
        self.flush()?;
        let conn = self.db();
        let mut stmt =
            conn.prepare("SELECT voucher, consumed, redeemed FROM channels WHERE closed = 0")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (voucher, consumed, redeemed) = row?;
            let voucher = voucher_of(&voucher)?;
            let claim = claimable(&voucher, num(&consumed)?);
            if claim > num(&redeemed)? {
                out.push(Claim::new(voucher, claim));
            }
        }
        Ok(out)
    }

    /// Records that the chain shows `amount` base units redeemed in `(payer, epoch)`
    /// (monotonic: a lower figure never lowers it).
    pub fn mark_redeemed(&self, payer: Address, epoch: u64, amount: U256) -> Result<()> {
        let mut conn = self.db();
        set_sync(&conn, true)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let cur: Option<String> = tx
            .query_row(
                "SELECT redeemed FROM channels WHERE payer = ?1 AND epoch = ?2",
                params![key(payer), epoch.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(cur) = cur {
            if amount > num(&cur)? {
                tx.execute(
                    "UPDATE channels SET redeemed = ?3 WHERE payer = ?1 AND epoch = ?2",
                    params![key(payer), epoch.to_string(), amount.to_string()],
                )?;
                tx.commit()?;
                if let Some(row) = self.mem().rows.get_mut(&(payer, epoch)) {
                    row.redeemed = amount;
                }
            }
        }
        Ok(())
    }

    /// Marks `(payer, epoch)` closed: the chain moved to a later epoch, so its vouchers can
    /// no longer be redeemed and new calls cannot be admitted on it.
    pub fn close(&self, payer: Address, epoch: u64) -> Result<()> {
        let conn = self.db();
        set_sync(&conn, true)?;
        conn.execute(
            "UPDATE channels SET closed = 1 WHERE payer = ?1 AND epoch = ?2",
            params![key(payer), epoch.to_string()],
        )?;
        if let Some(row) = self.mem().rows.get_mut(&(payer, epoch)) {
            row.closed = true;
        }
        Ok(())
    }

    /// Totals over every channel.
    pub fn status(&self) -> Result<LedgerStatus> {
        self.flush()?;
        let conn = self.db();
        let mut stmt = conn.prepare("SELECT amount, consumed, redeemed, closed FROM channels")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        let mut s = LedgerStatus::default();
        for row in rows {
            let (amount, consumed, redeemed, closed) = row?;
            let (amount, consumed, redeemed) = (num(&amount)?, num(&consumed)?, num(&redeemed)?);
            s.authorized += amount;
            s.earned_micro += consumed;
            s.redeemed += redeemed;
            if !closed {
                s.pending += micro_to_base_ceil(consumed)
                    .min(amount)
                    .saturating_sub(redeemed);
            }
        }
        s.earned = micro_to_base_ceil(s.earned_micro);
        Ok(s)
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;

impl Ledger {
    /// Runs blocking ledger work on tokio's blocking pool: SQLite calls (and their
    /// fsyncs) must never stall the reactor. Shared by the gate and the settler.
    pub async fn run_blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Ledger) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let ledger = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&ledger))
            .await
            .map_err(|e| PaymentError::Task(e.to_string()))?
    }
}
