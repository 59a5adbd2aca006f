//! Voucher checks before a voucher is recorded: who signed it, for whom, for which epoch and
//! whether the channel can cover it; plus a per-payer cache of channel state so a call does
//! not wait for an RPC round trip (settlement and the event watcher invalidate it).

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use khachapuri_chain::{Address, ChainError, ChannelState, SignedVoucher};
use lru::LruCache;

use crate::error::{PaymentError, Result};

/// Checks vouchers addressed to one provider of one escrow on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoucherVerifier {
    /// Chain id of the EIP-712 domain.
    pub chain_id: u64,
    /// Escrow address (the domain's `verifyingContract`).
    pub escrow: Address,
    /// This provider's address.
    pub provider: Address,
}

impl VoucherVerifier {
    /// Checks what needs no chain state: the payer signed this voucher for this chain and
    /// escrow, and it names this provider. A voucher signed over another domain (chain or
    /// escrow) recovers to another address and is reported as [`PaymentError::BadSignature`].
    pub fn check_signature(&self, voucher: &SignedVoucher) -> Result<()> {
        if voucher.voucher.provider != self.provider {
            return Err(PaymentError::WrongProvider {
                expected: self.provider,
                got: voucher.voucher.provider,
            });
        }
        match voucher.verify(self.chain_id, self.escrow) {
            Ok(()) => Ok(()),
            Err(ChainError::WrongSigner { payer, signer }) => Err(PaymentError::BadSignature(
                format!("recovers to {signer}, not the payer {payer}: signed by someone else, or for another chain or escrow (this is chain {}, escrow {})", self.chain_id, self.escrow),
            )),
            Err(e) => Err(PaymentError::BadSignature(e.to_string())),
        }
    }

    /// Checks the voucher against the payer's channel to this provider as read from chain:
    /// same epoch, not being unlocked, and an amount the channel was funded for.
    pub fn check_channel(&self, voucher: &SignedVoucher, channel: &ChannelState) -> Result<()> {
        let v = &voucher.voucher;
        if v.epoch != channel.epoch {
            return Err(PaymentError::WrongEpoch {
                voucher: v.epoch,
                channel: channel.epoch,
            });
        }
        if channel.unlock_at != 0 {
            return Err(PaymentError::ChannelUnlocking {
                unlock_at: channel.unlock_at,
            });
        }
        if v.amount > channel.funds {
            return Err(PaymentError::AboveFunds {
                amount: v.amount,
                funds: channel.funds,
            });
        }
        Ok(())
    }

    /// Both checks.
    pub fn verify(&self, voucher: &SignedVoucher, channel: &ChannelState) -> Result<()> {
        self.check_signature(voucher)?;
        self.check_channel(voucher, channel)
    }
}

/// Channel state per payer (the provider side is fixed), cached for `ttl`. Channel funds
/// only grow within an epoch, so a stale entry can only refuse a voucher the chain would
/// accept (then [`ChannelCache::get_fresh`] retries once), never accept a bad one; except
/// after an unlock or reclaim, which is why the event watcher must call
/// [`ChannelCache::invalidate`].
///
/// Bounded in entries (least recently used out first): every voucher from a fresh key
/// names a new payer, so an unbounded map would grow with a stranger's key generator.
/// An evicted payer's state is just read from chain again.
#[derive(Debug)]
pub struct ChannelCache {
    ttl: Duration,
    entries: Mutex<LruCache<Address, (Instant, ChannelState)>>,
}

/// Payers whose channel state [`ChannelCache::new`] keeps at most.
pub const DEFAULT_MAX_CACHED_CHANNELS: usize = 100_000;

impl ChannelCache {
    /// An empty cache whose entries live for `ttl`, holding at most
    /// [`DEFAULT_MAX_CACHED_CHANNELS`] payers.
    pub fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, DEFAULT_MAX_CACHED_CHANNELS)
    }

    /// An empty cache whose entries live for `ttl`, holding at most `max` payers.
    pub fn bounded(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// Changes the bound (the oldest entries go if it shrinks), for a node whose
    /// configuration sets it after the gate is built.
    pub fn set_max_entries(&self, max: usize) {
        self.map()
            .resize(NonZeroUsize::new(max).unwrap_or(NonZeroUsize::MIN));
    }

    /// Payers cached now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no payer is cached.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, LruCache<Address, (Instant, ChannelState)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached state of `payer`'s channel, if fresh.
    pub fn cached(&self, payer: Address) -> Option<ChannelState> {
        let mut map = self.map();
        map.get(&payer)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| *s)
    }

    /// Stores a state just read from chain (or from an event); past the bound the least
    /// recently used payer is forgotten.
    pub fn insert(&self, payer: Address, state: ChannelState) {
        self.map().put(payer, (Instant::now(), state));
    }

    /// Forgets `payer`'s channel: the next lookup reads the chain.
    pub fn invalidate(&self, payer: Address) {
        self.map().pop(&payer);
    }

    /// Forgets everything (after an RPC switch or a reorg).
    pub fn clear(&self) {
        self.map().clear();
    }

    /// The fresh cached state, or `fetch`ed (and cached) when missing or expired. `fetch`
    /// is typically `escrow.channel(payer, provider)` with its timeout.
    pub async fn get<F, Fut>(&self, payer: Address, fetch: F) -> Result<ChannelState>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ChannelState, ChainError>>,
    {
        if let Some(s) = self.cached(payer) {
            return Ok(s);
        }
        self.get_fresh(payer, fetch).await
    }

    /// Reads the chain regardless of the cache and caches the answer: for a voucher the
    /// cached state refuses (the payer may just have funded the channel).
    pub async fn get_fresh<F, Fut>(&self, payer: Address, fetch: F) -> Result<ChannelState>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<ChannelState, ChainError>>,
    {
        let state = fetch().await?;
        self.insert(payer, state);
        Ok(state)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use khachapuri_chain::{PrivateKeySigner, Voucher, U256};
    use khachapuri_devnet::dev_signer;

    use super::*;

    const CHAIN: u64 = 31337;
    const ESCROW: Address = Address::repeat_byte(0xEE);

    fn verifier() -> VoucherVerifier {
        VoucherVerifier {
            chain_id: CHAIN,
            escrow: ESCROW,
            provider: dev_signer(2).address(),
        }
    }

    fn voucher(signer: &PrivateKeySigner, epoch: u64, amount: u64) -> Voucher {
        Voucher {
            payer: signer.address(),
            provider: dev_signer(2).address(),
            epoch,
            amount: U256::from(amount),
        }
    }

    fn channel(funds: u64, epoch: u64) -> ChannelState {
        ChannelState {
            funds: U256::from(funds),
            redeemed: U256::ZERO,
            epoch,
            unlock_at: 0,
        }
    }

    #[test]
    fn accepts_a_good_voucher() {
        let payer = PrivateKeySigner::random();
        let sv = voucher(&payer, 4, 100).sign(&payer, CHAIN, ESCROW).unwrap();
        verifier().verify(&sv, &channel(100, 4)).unwrap();
    }

    #[test]
    fn each_fault_has_its_own_error() {
        let payer = PrivateKeySigner::random();
        let good = voucher(&payer, 4, 100);
        let ch = channel(100, 4);
        let v = verifier();

        // Forged: signed by someone else.
        let forged = good
            .sign(&PrivateKeySigner::random(), CHAIN, ESCROW)
            .unwrap();
        assert!(matches!(
            v.verify(&forged, &ch),
            Err(PaymentError::BadSignature(_))
        ));
        // Garbage signature bytes.
        let mut garbage = good.sign(&payer, CHAIN, ESCROW).unwrap();
        garbage.signature = vec![0xAB; 65];
        assert!(matches!(
            v.verify(&garbage, &ch),
            Err(PaymentError::BadSignature(_))
        ));
        // Another chain or escrow.
        for (chain, escrow) in [(1, ESCROW), (CHAIN, Address::repeat_byte(0xEF))] {
            let other = good.sign(&payer, chain, escrow).unwrap();
            match v.verify(&other, &ch) {
                Err(PaymentError::BadSignature(m)) => {
                    assert!(m.contains("another chain or escrow"))
                }
                other => panic!("expected BadSignature, got {other:?}"),
            }
        }
        // Another provider (correctly signed).
        let mut to_other = good;
        to_other.provider = dev_signer(3).address();
        let sv = to_other.sign(&payer, CHAIN, ESCROW).unwrap();
        assert!(matches!(
            v.verify(&sv, &ch),
            Err(PaymentError::WrongProvider { .. })
        ));
        // Wrong epoch.
        let sv = voucher(&payer, 3, 100).sign(&payer, CHAIN, ESCROW).unwrap();
        assert!(matches!(
            v.verify(&sv, &ch),
            Err(PaymentError::WrongEpoch {
                voucher: 3,
                channel: 4
            })
        ));
        // Above funds.
        let sv = voucher(&payer, 4, 101).sign(&payer, CHAIN, ESCROW).unwrap();
        assert!(matches!(
            v.verify(&sv, &ch),
            Err(PaymentError::AboveFunds { .. })
        ));
        // Unlocking channel.
        let sv = good.sign(&payer, CHAIN, ESCROW).unwrap();
        let unlocking = ChannelState {
            unlock_at: 99,
            ..ch
        };
        assert!(matches!(
            v.verify(&sv, &unlocking),
            Err(PaymentError::ChannelUnlocking { unlock_at: 99 })
        ));
        // More funding would make it pay.
        assert!(PaymentError::AboveFunds {
            amount: U256::ZERO,
            funds: U256::ZERO
        }
        .wants_payment());
    }

    #[tokio::test]
    async fn cache_hits_expires_and_invalidates() {
        let cache = ChannelCache::new(Duration::from_millis(200));
        let counter = AtomicUsize::new(0);
        let calls = &counter;
        let payer = Address::repeat_byte(9);
        let fetch = move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u64;
            Ok(channel(100 + n, 0))
        };
        assert_eq!(
            cache.get(payer, fetch).await.unwrap().funds,
            U256::from(100)
        );
        assert_eq!(
            cache.get(payer, fetch).await.unwrap().funds,
            U256::from(100)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate(payer);
        assert_eq!(
            cache.get(payer, fetch).await.unwrap().funds,
            U256::from(101)
        );
        assert_eq!(
            cache.get_fresh(payer, fetch).await.unwrap().funds,
            U256::from(102)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(cache.cached(payer).is_none());
        assert_eq!(
            cache.get(payer, fetch).await.unwrap().funds,
            U256::from(103)
        );
        // Errors are not cached.
        cache.clear();
        let failing = || async { Err(ChainError::Rpc("down".into())) };
        assert!(matches!(
            cache.get(payer, failing).await,
            Err(PaymentError::Chain(_))
        ));
        assert!(cache.cached(payer).is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_oldest_payer() {
        let cache = ChannelCache::bounded(Duration::from_secs(60), 3);
        let payers: Vec<Address> = (1..=4u8).map(Address::repeat_byte).collect();
        for p in &payers[..3] {
            cache.insert(*p, channel(1, 1));
        }
        // Payer 1 is used again, so payer 2 is now the oldest.
        assert!(cache.cached(payers[0]).is_some());
        cache.insert(payers[3], channel(1, 1));
        assert_eq!(cache.len(), 3);
        assert!(cache.cached(payers[1]).is_none(), "the oldest payer went");
        for p in [payers[0], payers[2], payers[3]] {
            assert!(cache.cached(p).is_some(), "no wholesale wipe");
        }
        cache.set_max_entries(1);
        assert_eq!(cache.len(), 1);
        for i in 0..1000u32 {
            let mut bytes = [0u8; 20];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(Address::from(bytes), channel(1, 1));
        }
        assert_eq!(cache.len(), 1);
    }
}
