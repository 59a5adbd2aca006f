//! Event watching by polling `eth_getLogs` (works with any node, survives restarts when the
//! caller persists `next_block`).

use std::marker::PhantomData;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEventInterface;
use tokio::sync::mpsc;

use crate::bindings::{Escrow, Registry};
use crate::client::{rpc_err, Chain};
use crate::error::Result;

/// Every `Escrow` event (decoded).
pub type EscrowEvent = Escrow::EscrowEvents;
/// Every `Registry` event (decoded).
pub type RegistryEvent = Registry::RegistryEvents;

/// A decoded event with where it happened.
#[derive(Debug, Clone)]
pub struct ChainEvent<E> {
    /// Block number.
    pub block: u64,
    /// Transaction hash.
    pub tx: Option<B256>,
    /// The event.
    pub event: E,
}

/// Default widest block range one `eth_getLogs` asks for: public RPC providers commonly
/// refuse ranges above a few thousand blocks, so a node that was down for a day must catch
/// up in steps instead of retrying one oversized query forever.
pub const DEFAULT_MAX_RANGE: u64 = 2000;

/// Polls one contract's logs from a starting block, decoding them as `E`
/// (`EscrowEvent` or `RegistryEvent`). Logs it cannot decode are skipped.
///
/// Each [`EventPoller::poll`] reads at most `max_range` blocks from the cursor and never past
/// `latest - confirmations`, then advances the cursor past what it read: callers persist
/// [`EventPoller::next_block`] after every poll, so progress survives a crash mid catch-up,
/// and poll again at once while [`EventPoller::is_behind`] says the head is further on.
#[derive(Debug)]
pub struct EventPoller<E> {
    chain: Chain,
    address: Address,
    next_block: u64,
    max_range: u64,
    confirmations: u64,
    behind: bool,
    _event: PhantomData<fn() -> E>,
}

impl<E: SolEventInterface> EventPoller<E> {
    /// Starts at `from_block` (inclusive), reading up to [`DEFAULT_MAX_RANGE`] blocks a poll
    /// and up to the latest block (no confirmations).
    pub fn new(chain: &Chain, address: Address, from_block: u64) -> Self {
        Self {
            chain: chain.clone(),
            address,
            next_block: from_block,
            max_range: DEFAULT_MAX_RANGE,
            confirmations: 0,
            behind: false,
            _event: PhantomData,
        }
    }

    /// Reads at most `blocks` blocks per `eth_getLogs` (at least 1), to stay under the RPC
    /// provider's range limit.
    pub fn with_max_range(mut self, blocks: u64) -> Self {
        self.max_range = blocks.max(1);
        self
    }

    /// Leaves the newest `blocks` blocks unread until they are that deep, so a shallow reorg
    /// cannot make the poller skip an event it read from a block that was later replaced.
    pub fn with_confirmations(mut self, blocks: u64) -> Self {
        self.confirmations = blocks;
        self
    }

    /// The first block the next poll will read (persist it to resume after a restart).
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Whether the last poll stopped at its range cap short of the confirmed head: the caller
    /// should poll again now rather than wait for its interval (catching up after downtime).
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// Events of the next range, oldest first: from `next_block` to the confirmed head
    /// (`latest - confirmations`), capped at `max_range` blocks. Empty, with the cursor
    /// unmoved, when no new block is confirmed yet.
    pub async fn poll(&mut self) -> Result<Vec<ChainEvent<E>>> {
        let latest = self.chain.block_number().await?;
        let Some(safe) = latest.checked_sub(self.confirmations) else {
            self.behind = false;
            return Ok(Vec::new());
        };
        if safe < self.next_block {
            // Nothing confirmed past the cursor (or the node is behind us: a reset dev chain
            // or a lagging replica). Wait rather than read backwards.
            self.behind = false;
            return Ok(Vec::new());
        }
        let to = safe.min(self.next_block.saturating_add(self.max_range - 1));
        let filter = Filter::new()
            .address(self.address)
            .from_block(self.next_block)
            .to_block(to);
        let logs = self
            .chain
            .timed("eth_getLogs", self.chain.provider().get_logs(&filter))
            .await?
            .map_err(rpc_err)?;
        self.next_block = to.saturating_add(1);
        self.behind = to < safe;
        Ok(logs
            .iter()
            .filter_map(|log| {
                let event = E::decode_raw_log(log.topics(), &log.data().data).ok()?;
                Some(ChainEvent {
                    block: log.block_number.unwrap_or(to),
                    tx: log.transaction_hash,
                    event,
                })
            })
            .collect())
    }
}

/// Spawns a task that polls every `interval` (at once again while the poller is behind) and
/// sends each event (or a poll error, after which it keeps polling) to the returned channel;
/// it stops when the receiver is dropped.
pub fn watch<E>(
    mut poller: EventPoller<E>,
    interval: Duration,
) -> mpsc::Receiver<Result<ChainEvent<E>>>
where
    E: SolEventInterface + Send + 'static,
{
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            match poller.poll().await {
                Ok(events) => {
                    for e in events {
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    if poller.is_behind() {
                        continue;
                    }
                }
                Err(err) => {
                    if tx.send(Err(err)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}
