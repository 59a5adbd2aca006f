//! Batched on-chain settlement: for every channel whose calls consumed more than was
//! redeemed, claim what they cost with its best voucher, in one `redeemBatch`, then record
//! what the chain confirms.
//!
//! Exact billing: the claim is the ledger's consumed amount for that (payer, epoch), rounded
//! up to a base unit and capped by the voucher, never the unconsumed prepaid part. It only
//! ever submits vouchers the payers signed, and the escrow pays at most
//! `min(claim, amount, funds) - redeemed` per voucher, so settlement can never take more than
//! the calls cost or a voucher allows; re-submitting after a lost answer pays nothing twice,
//! which is what makes retrying through RPC outages safe.

use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::bindings::Escrow::EscrowEvents;
use khachapuri_chain::{Address, ChainError, Claim, EscrowClient, B256, U256};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::error::Result;
use crate::ledger::Ledger;

/// Exponential backoff for RPC errors (reverts are not retried: they would revert again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
    /// Attempts in all (at least one).
    pub attempts: u32,
}

impl Default for Backoff {
    /// 0.5 s doubling up to 30 s, 8 attempts (~1.5 min of outage per settlement round).
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            attempts: 8,
        }
    }
}

impl Backoff {
    /// Runs `op` until it succeeds, fails with a non-transient error, or attempts run out.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let mut wait = self.initial;
        let mut attempt = 1;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e @ (ChainError::Rpc(_) | ChainError::Timeout(..)))
                    if attempt < self.attempts.max(1) =>
                {
                    warn!(%e, attempt, ?wait, "{what} failed, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.max);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What one settlement round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Vouchers submitted on chain.
    pub submitted: usize,
    /// Base units the batches paid (as simulated just before sending).
    pub paid: U256,
    /// Transactions sent.
    pub txs: Vec<B256>,
    /// Vouchers left out because a simulation reverted on them (logged).
    pub skipped: usize,
}

/// Redeems the ledger's vouchers through an [`EscrowClient`] whose signer is the provider.
#[derive(Debug, Clone)]
pub struct Settler {
    ledger: Arc<Ledger>,
    escrow: EscrowClient,
    backoff: Backoff,
    max_batch: usize,
}

impl Settler {
    /// A settler with the default backoff and batches of at most 100 vouchers (well under
    /// the block gas limit).
    pub fn new(ledger: Arc<Ledger>, escrow: EscrowClient) -> Self {
        Self {
            ledger,
            escrow,
            backoff: Backoff::default(),
            max_batch: 100,
        }
    }

    /// Replaces the retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Replaces the batch size (at least 1).
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// One settlement round: flushes the ledger and collects the claims of every channel
    /// whose consumption is not yet redeemed, drops those the chain can no longer pay (closed
    /// epoch, nothing left to take), simulates, sends `redeemBatch`, and marks what the
    /// chain then shows as redeemed. Submits nothing when nothing is owed.
    pub async fn settle_once(&self) -> Result<SettleReport> {
        let me = self.escrow.chain().address().ok_or(ChainError::NoSigner)?;
        let claims = self.ledger.run_blocking(|l| l.claims()).await?;
        let mut candidates = Vec::new();
        for c in claims {
            if c.voucher.voucher.provider != me {
                warn!(provider = %c.voucher.voucher.provider, "ledger holds a voucher for another provider; skipped");
                continue;
            }
            if self.owed(&c, me).await? {
                candidates.push(c);
            }
        }
        let mut report = SettleReport::default();
        if candidates.is_empty() {
            debug!("settlement: nothing to redeem");
            return Ok(report);
        }
        for batch in candidates.chunks(self.max_batch) {
            let batch = self.simulate(batch, &mut report).await?;
            if batch.is_empty() {
                continue;
            }
            let paid = self
                .backoff
                .retry("simulate redeemBatch", || {
                    self.escrow.simulate_redeem_batch(&batch)
                })
                .await?;
            let tx = self
                .backoff
                .retry("redeemBatch", || self.escrow.redeem_batch(&batch))
                .await?;
            info!(vouchers = batch.len(), %paid, %tx, "redeemed a batch of claims");
            report.submitted += batch.len();
            report.paid += paid;
            report.txs.push(tx);
            for c in &batch {
                self.owed(c, me).await?;
            }
        }
        Ok(report)
    }

    /// Reads the channel of `c` and updates the ledger from it; whether the chain would
    /// still pay something for `c`: `min(claim, amount, funds) > redeemed`.
    async fn owed(&self, c: &Claim, me: Address) -> Result<bool> {
        let payer = c.voucher.voucher.payer;
        let epoch = c.voucher.voucher.epoch;
        let ch = self
            .backoff
            .retry("read channel", || self.escrow.channel(payer, me))
            .await?;
        if ch.epoch != epoch {
            if ch.epoch > epoch {
                warn!(%payer, epoch, "channel epoch is over; its unredeemed vouchers are lost");
                self.ledger
                    .run_blocking(move |l| l.close(payer, epoch))
                    .await?;
            }
            return Ok(false);
        }
        let redeemed = ch.redeemed;
        self.ledger
            .run_blocking(move |l| l.mark_redeemed(payer, epoch, redeemed))
            .await?;
        Ok(!c.payable(&ch).is_zero())
    }

    /// Keeps the claims of `batch` that a simulation accepts: the whole batch when it
    /// passes, otherwise each claim on its own (one bad voucher must not block the rest).
    async fn simulate(&self, batch: &[Claim], report: &mut SettleReport) -> Result<Vec<Claim>> {
        match self
            .backoff
            .retry("simulate redeemBatch", || {
                self.escrow.simulate_redeem_batch(batch)
            })
            .await
        {
            Ok(_) => return Ok(batch.to_vec()),
            Err(ChainError::Reverted { reason }) => {
                warn!(%reason, "batch simulation reverted; checking vouchers one by one");
            }
            Err(e) => return Err(e.into()),
        }
        let mut good = Vec::new();
        for v in batch {
            let one = std::slice::from_ref(v);
            match self
                .backoff
                .retry("simulate redeem", || self.escrow.simulate_redeem_batch(one))
                .await
            {
                Ok(_) => good.push(v.clone()),
                Err(ChainError::Reverted { reason }) => {
                    warn!(payer = %v.voucher.voucher.payer, epoch = v.voucher.voucher.epoch, %reason, "voucher cannot be redeemed; skipped");
                    report.skipped += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(good)
    }
}

/// When settlement runs on its own (see [`Settler::run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlePolicy {
    /// Settle whatever is pending at least this often.
    pub interval: Duration,
    /// Settle as soon as pending value (consumed, not yet redeemed) reaches this many base
    /// units.
    pub threshold: U256,
    /// How often the threshold is checked (a cheap ledger query).
    pub check_every: Duration,
}

impl Default for SettlePolicy {
    /// Hourly, or at 10 USDC pending, checked every 10 s.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3600),
            threshold: U256::from(10_000_000u64),
            check_every: Duration::from_secs(10),
        }
    }
}

/// What an escrow event means for this provider's payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Not about a channel to this provider.
    Ignore,
    /// The channel of this payer changed: drop it from the [`crate::ChannelCache`].
    Invalidate(Address),
    /// The payer asked to unlock: invalidate and settle at once, before the reclaim.
    SettleNow(Address),
}

/// Classifies an escrow event (from [`khachapuri_chain::EventPoller`]) for provider `me`.
pub fn classify_event(event: &EscrowEvents, me: Address) -> EventAction {
    let (payer, provider, settle) = match event {
        EscrowEvents::UnlockRequested(e) => (e.payer, e.provider, true),
        EscrowEvents::Funded(e) => (e.payer, e.provider, false),
        EscrowEvents::UnlockCancelled(e) => (e.payer, e.provider, false),
        EscrowEvents::Reclaimed(e) => (e.payer, e.provider, false),
        EscrowEvents::Redeemed(e) => (e.payer, e.provider, false),
        _ => return EventAction::Ignore,
    };
    match (provider == me, settle) {
        (false, _) => EventAction::Ignore,
        (true, true) => EventAction::SettleNow(payer),
        (true, false) => EventAction::Invalidate(payer),
    }
}

impl Settler {
    /// Settles forever: every `policy.interval` when anything is pending, as soon as
    /// pending value reaches `policy.threshold`, and at once when `wake` is notified (an
    /// unlock was seen, or `khachapuri provider settle`). Failures are logged and retried
    /// on the next occasion; returns when `shutdown` completes.
    pub async fn run(
        &self,
        policy: SettlePolicy,
        wake: Arc<Notify>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut last = tokio::time::Instant::now();
        loop {
            let forced = tokio::select! {
                () = &mut shutdown => return,
                () = wake.notified() => true,
                () = tokio::time::sleep(policy.check_every) => false,
            };
            let pending = match self.ledger.run_blocking(|l| l.status()).await {
                Ok(s) => s.pending,
                Err(e) => {
                    warn!(%e, "settlement: cannot read the ledger");
                    continue;
                }
            };
            let due = forced
                || pending >= policy.threshold
                || (!pending.is_zero() && last.elapsed() >= policy.interval);
            if !due {
                continue;
            }
            match self.settle_once().await {
                Ok(r) => {
                    last = tokio::time::Instant::now();
                    if r.submitted > 0 {
                        info!(vouchers = r.submitted, paid = %r.paid, "settled");
                    }
                }
                Err(e) => warn!(%e, "settlement failed; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_for_this_provider_are_classified() {
        use khachapuri_chain::bindings::Escrow;
        let me = Address::repeat_byte(2);
        let payer = Address::repeat_byte(1);
        let unlock = |provider| {
            EscrowEvents::UnlockRequested(Escrow::UnlockRequested {
                payer,
                provider,
                epoch: 0,
                unlockAt: 9,
            })
        };
        assert_eq!(
            classify_event(&unlock(me), me),
            EventAction::SettleNow(payer)
        );
        assert_eq!(
            classify_event(&unlock(Address::repeat_byte(3)), me),
            EventAction::Ignore
        );
        let funded = EscrowEvents::Funded(Escrow::Funded {
            payer,
            provider: me,
            epoch: 0,
            amount: U256::from(1),
            funds: U256::from(1),
        });
        assert_eq!(classify_event(&funded, me), EventAction::Invalidate(payer));
        let deposited = EscrowEvents::Deposited(Escrow::Deposited {
            payer,
            amount: U256::from(1),
            balance: U256::from(1),
        });
        assert_eq!(classify_event(&deposited, me), EventAction::Ignore);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_with_backoff_only() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(250),
            attempts: 4,
        };
        let mut calls = 0;
        let started = tokio::time::Instant::now();
        let r: Result<u32, ChainError> = b
            .retry("x", || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 4 {
                        Err(ChainError::Rpc("down".into()))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.ok(), Some(4));
        // 100 + 200 + 250 ms of backoff.
        assert_eq!(started.elapsed(), Duration::from_millis(550));

        let mut calls = 0;
        let r: Result<(), ChainError> = b
            .retry("x", || {
                calls += 1;
                async { Err(ChainError::Rpc("down".into())) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 4, "gives up after the attempts");

        let mut calls = 0;
        let r: Result<(), ChainError> = b
            .retry("x", || {
                calls += 1;
                async {
                    Err(ChainError::Reverted {
                        reason: "BadSignature".into(),
                    })
                }
            })
            .await;
        assert!(matches!(r, Err(ChainError::Reverted { .. })));
        assert_eq!(calls, 1, "reverts are not retried");
    }
}
