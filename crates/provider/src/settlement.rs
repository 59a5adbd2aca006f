//! The settlement service started with a paid node: the payments [`Settler`] (threshold and
//! timer), plus an escrow event watcher that settles at once when a payer we hold vouchers
//! for asks to unlock, and drops cached channel state when a channel is funded, reclaimed or
//! redeemed. Both survive RPC outages (backoff) and stop on the shutdown future.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use khachapuri_chain::{Address, Chain, EscrowClient, EscrowEvent, EventPoller};
use khachapuri_payments::{classify_event, EventAction, Gate, SettlePolicy, Settler};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use crate::ProviderError;

/// How often charges booked in memory are written to the ledger: the most a crash can
/// forget of the provider's own bookkeeping (never of a voucher).
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Longest wait between event polls while the RPC node is down.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(30);

/// Background settlement of one paid node; see the module docs.
#[derive(Debug)]
pub struct Settlement {
    settler: Settler,
    gate: Arc<Gate>,
    chain: Chain,
    escrow: Address,
    me: Address,
    policy: SettlePolicy,
    poll: Duration,
    cursor_file: Option<PathBuf>,
    max_range: u64,
    confirmations: u64,
    wake: Arc<Notify>,
}

impl Settlement {
    /// Settles through `escrow` (whose chain must carry the operator's signer) and
    /// invalidates `gate`'s channel cache on events, polling the escrow every `poll`.
    pub fn new(
        settler: Settler,
        gate: Arc<Gate>,
        escrow: &EscrowClient,
        policy: SettlePolicy,
        poll: Duration,
    ) -> Result<Self, ProviderError> {
        let me = escrow
            .chain()
            .address()
            .ok_or_else(|| ProviderError::Config("settlement needs the operator's key".into()))?;
        Ok(Self {
            settler,
            gate,
            chain: escrow.chain().clone(),
            escrow: escrow.address(),
            me,
            policy,
            poll: poll.max(Duration::from_millis(50)),
            cursor_file: None,
            max_range: khachapuri_chain::DEFAULT_MAX_RANGE,
            confirmations: 0,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Persists the next block to watch in `path`, so events that happen while the node is
    /// down (an unlock request) are still seen after a restart.
    pub fn with_cursor_file(mut self, path: PathBuf) -> Self {
        self.cursor_file = Some(path);
        self
    }

    /// Reads escrow events at most `max_range` blocks per RPC call and only once
    /// `confirmations` blocks deep, so catching up after downtime stays under the RPC
    /// provider's range limit and a shallow reorg cannot hide an event.
    pub fn with_event_window(mut self, max_range: u64, confirmations: u64) -> Self {
        self.max_range = max_range.max(1);
        self.confirmations = confirmations;
        self
    }

    /// Notifying it forces a settlement round now.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs the settler and the event watcher until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        let settle = self
            .settler
            .run(self.policy, self.wake.clone(), stopped(stop_rx.clone()));
        let events = self.watch_events(stopped(stop_rx.clone()));
        let flush = self.flush_charges(stopped(stop_rx));
        let stop = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(settle, events, flush, stop);
        info!("settlement service stopped");
    }

    /// Writes in-memory charges every [`FLUSH_EVERY`], and once more on shutdown.
    async fn flush_charges(&self, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        loop {
            let stopping = tokio::select! {
                () = &mut stopped => true,
                () = tokio::time::sleep(FLUSH_EVERY) => false,
            };
            if let Err(e) = self.gate.ledger().run_blocking(|l| l.flush()).await {
                warn!(error = %e, "cannot write charges to the ledger; retrying");
            }
            if stopping {
                return;
            }
        }
    }

    async fn start_block(&self) -> Option<u64> {
        if let Some(path) = &self.cursor_file {
            if let Ok(text) = tokio::fs::read_to_string(path).await {
                if let Ok(n) = text.trim().parse() {
                    return Some(n);
                }
            }
        }
        self.chain.block_number().await.ok()
    }

    async fn watch_events(&self, stopped: impl Future<Output = ()>) {
        tokio::pin!(stopped);
        let mut wait = self.poll;
        let from = loop {
            if let Some(b) = self.start_block().await {
                break b;
            }
            warn!(?wait, "cannot read the block number; retrying");
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(MAX_POLL_BACKOFF);
        };
        let mut poller = EventPoller::<EscrowEvent>::new(&self.chain, self.escrow, from)
            .with_max_range(self.max_range)
            .with_confirmations(self.confirmations);
        let mut saved = from;
        wait = self.poll;
        loop {
            let pause = match poller.poll().await {
                Ok(events) => {
                    wait = self.poll;
                    for e in events {
                        self.handle(&e.event).await;
                    }
                    if poller.next_block() != saved {
                        saved = poller.next_block();
                        self.save_cursor(saved).await;
                    }
                    // Catching up after downtime: the next range at once, not after a poll
                    // interval (the cursor was saved for this range just above).
                    if poller.is_behind() {
                        Duration::ZERO
                    } else {
                        wait
                    }
                }
                Err(e) => {
                    warn!(%e, ?wait, "cannot poll escrow events; retrying");
                    wait = (wait * 2).min(MAX_POLL_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn handle(&self, event: &EscrowEvent) {
        match classify_event(event, self.me) {
            EventAction::Ignore => {}
            EventAction::Invalidate(payer) => {
                debug!(%payer, "channel changed; cache invalidated");
                self.gate.cache().invalidate(payer);
            }
            EventAction::SettleNow(payer) => {
                self.gate.cache().invalidate(payer);
                let epoch = match event {
                    EscrowEvent::UnlockRequested(e) => e.epoch,
                    _ => return,
                };
                // Only a channel we hold unredeemed vouchers for is worth a transaction.
                let row = self
                    .gate
                    .ledger()
                    .run_blocking(move |l| l.channel(payer, epoch))
                    .await;
                match row {
                    Ok(Some(row)) if row.best.voucher.amount > row.redeemed => {
                        info!(%payer, epoch, "unlock requested; settling now");
                        self.wake.notify_one();
                    }
                    Ok(_) => debug!(%payer, epoch, "unlock requested; nothing to redeem"),
                    Err(e) => {
                        warn!(%e, %payer, "cannot read the ledger; settling now to be safe");
                        self.wake.notify_one();
                    }
                }
            }
        }
    }

    async fn save_cursor(&self, next: u64) {
        let Some(path) = &self.cursor_file else {
            return;
        };
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, next.to_string()).await?;
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if let Err(e) = written {
            warn!(%e, path = %path.display(), "cannot save the event cursor");
        }
    }
}
