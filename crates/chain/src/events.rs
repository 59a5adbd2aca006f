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

/// Polls one contract's logs from a starting block, decoding them as `E`
/// (`EscrowEvent` or `RegistryEvent`). Logs it cannot decode are skipped.
#[derive(Debug)]
pub struct EventPoller<E> {
    chain: Chain,
    address: Address,
    next_block: u64,
    _event: PhantomData<fn() -> E>,
}

impl<E: SolEventInterface> EventPoller<E> {
    /// Starts at `from_block` (inclusive).
    pub fn new(chain: &Chain, address: Address, from_block: u64) -> Self {
        Self {
            chain: chain.clone(),
            address,
            next_block: from_block,
            _event: PhantomData,
        }
    }

    /// The first block the next poll will read (persist it to resume after a restart).
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Events from `next_block` to the latest block, oldest first.
    pub async fn poll(&mut self) -> Result<Vec<ChainEvent<E>>> {
        let latest = self.chain.block_number().await?;
        if latest < self.next_block {
            return Ok(Vec::new());
        }
        let filter = Filter::new()
            .address(self.address)
            .from_block(self.next_block)
            .to_block(latest);
        let logs = self
            .chain
            .timed("eth_getLogs", self.chain.provider().get_logs(&filter))
            .await?
            .map_err(rpc_err)?;
        self.next_block = latest + 1;
        Ok(logs
            .iter()
            .filter_map(|log| {
                let event = E::decode_raw_log(log.topics(), &log.data().data).ok()?;
                Some(ChainEvent {
                    block: log.block_number.unwrap_or(latest),
                    tx: log.transaction_hash,
                    event,
                })
            })
            .collect())
    }
}

/// Spawns a task that polls every `interval` and sends each event (or a poll error, after
/// which it keeps polling) to the returned channel; it stops when the receiver is dropped.
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
