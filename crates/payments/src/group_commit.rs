//! Group commit of fresh vouchers: concurrent calls that each carry a new voucher share one
//! SQLite transaction, hence one fsync, instead of queueing for an fsync each.
//!
//! Each voucher is still durable before the call it pays for runs: a caller's future
//! resolves only after the transaction holding its voucher (or a higher voucher of the same
//! channel, which dominates it) has committed with `synchronous=FULL`. One dedicated thread
//! owns the writing; while it waits on an fsync, new vouchers queue up and the next commit
//! takes them all (up to [`MAX_BATCH`]). The queue is bounded ([`QUEUE`]): when it is full,
//! callers wait for room rather than piling up memory.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use khachapuri_chain::SignedVoucher;
use tokio::sync::oneshot;

use crate::error::{PaymentError, Result};
use crate::ledger::Ledger;

/// Most vouchers one transaction takes.
pub const MAX_BATCH: usize = 256;
/// Vouchers waiting for the writer at most (then callers wait for room).
pub const QUEUE: usize = 1024;

type Job = (SignedVoucher, oneshot::Sender<Result<bool>>);

/// Handle to the group-commit thread of one ledger. Dropping the last handle ends the
/// thread after it wrote what was queued.
#[derive(Debug, Clone)]
pub struct VoucherWriter {
    tx: SyncSender<Job>,
}

impl VoucherWriter {
    /// Starts the writer thread for `ledger`. Should the OS refuse a thread, the error is
    /// logged and every [`VoucherWriter::record`] fails cleanly (the node answers 500s
    /// for fresh vouchers instead of crashing).
    pub fn start(ledger: Arc<Ledger>) -> Self {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("voucher-writer".into())
            .spawn(move || run(&ledger, &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the voucher writer");
        }
        Self { tx }
    }

    /// Records `voucher` durably (see [`Ledger::record_voucher`]); resolves once it is
    /// committed. Cancelling the future does not cancel the write.
    pub async fn record(&self, voucher: SignedVoucher) -> Result<bool> {
        let (reply, done) = oneshot::channel();
        let mut job = (voucher, reply);
        loop {
            match self.tx.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(PaymentError::Task("the voucher writer stopped".into()))
                }
            }
        }
        done.await
            .map_err(|_| PaymentError::Task("the voucher writer dropped a voucher".into()))?
    }
}

fn run(ledger: &Ledger, rx: &Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let vouchers: Vec<SignedVoucher> = jobs.iter().map(|(v, _)| v.clone()).collect();
        match ledger.record_vouchers(&vouchers) {
            Ok(improved) => {
                for ((_, reply), improved) in jobs.into_iter().zip(improved) {
                    let _ = reply.send(Ok(improved));
                }
            }
            // The batch failed as a whole: each voucher alone, so each caller gets its
            // own answer.
            Err(_) => {
                for (voucher, reply) in jobs {
                    let _ = reply.send(ledger.record_voucher(&voucher));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use khachapuri_chain::{Address, Voucher, U256};
    use khachapuri_devnet::dev_signer;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_vouchers_are_all_durable_and_the_best_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let ledger = Arc::new(Ledger::open(&path).unwrap());
        let writer = VoucherWriter::start(ledger.clone());
        let payers: Vec<_> = (1..4).map(dev_signer).collect();
        let mut tasks = Vec::new();
        for amount in 1..=40u64 {
            for key in &payers {
                let v = Voucher {
                    payer: key.address(),
                    provider: Address::repeat_byte(2),
                    epoch: 0,
                    amount: U256::from(amount),
                }
                .sign(key, 1, Address::ZERO)
                .unwrap();
                let w = writer.clone();
                tasks.push(tokio::spawn(async move { w.record(v).await }));
            }
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // Reopened from disk: each channel holds its highest voucher.
        drop(writer);
        let reopened = Ledger::open(&path).unwrap();
        for key in &payers {
            let row = reopened.channel(key.address(), 0).unwrap().unwrap();
            assert_eq!(row.best.voucher.amount, U256::from(40u64));
        }
        // Replaying an old voucher changes nothing.
        let old = Voucher {
            payer: payers[0].address(),
            provider: Address::repeat_byte(2),
            epoch: 0,
            amount: U256::from(3u64),
        }
        .sign(&payers[0], 1, Address::ZERO)
        .unwrap();
        let w = VoucherWriter::start(ledger.clone());
        assert!(!w.record(old).await.unwrap());
    }
}
