//! Caches bounded in bytes, least recently used out first: the node's memory must not
//! grow with the number of distinct CIDs strangers name, and a full cache must shed one
//! cold entry at a time rather than start over (a wholesale wipe under load turns every
//! hot entry into a miss at once).
//!
//! [`ByteLru`] is the plain map; [`OnceLru`] adds once-per-key loading for values that
//! are expensive to make (compiled code, opened specs): concurrent first calls share one
//! load, and entries being loaded live apart from the bounded part, so evicting an entry
//! never disturbs a load in flight.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use tokio::sync::OnceCell;

/// How full a bounded cache is: for `/metrics` and for tests that check the caps hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes of the entries held (as estimated when each was inserted).
    pub bytes: u64,
    /// Entries held.
    pub entries: u64,
    /// The cap `bytes` stays under.
    pub cap: u64,
    /// Entries evicted since start.
    pub evictions: u64,
}

/// A map bounded in bytes: each entry carries its size, and inserting past the cap
/// evicts least recently used entries (possibly the new one, if it alone is larger than
/// the cap) until the total is under it again.
#[derive(Debug)]
pub struct ByteLru<K: Hash + Eq, V> {
    map: LruCache<K, (V, u64)>,
    bytes: u64,
    cap: u64,
    evictions: u64,
}

impl<K: Hash + Eq, V> ByteLru<K, V> {
    /// An empty map whose entries' sizes sum to at most `cap` bytes.
    pub fn new(cap: u64) -> Self {
        Self {
            map: LruCache::unbounded(),
            bytes: 0,
            cap,
            evictions: 0,
        }
    }

    /// The value under `key`, marked most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The value under `key`, without touching its recency.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.peek(key).map(|(v, _)| v)
    }

    /// Whether `key` is held (recency untouched).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains(key)
    }

    /// Inserts (or replaces) `key` as most recently used with its size in bytes, then
    /// evicts until under the cap; returns what was evicted, oldest first, so the caller
    /// can drop or delete it outside any lock.
    pub fn insert(&mut self, key: K, value: V, size: u64) -> Vec<(K, V)> {
        if let Some((_, (_, old))) = self.map.push(key, (value, size)) {
            // `push` on an unbounded map only returns the value it replaced.
            self.bytes = self.bytes.saturating_sub(old);
        }
        self.bytes = self.bytes.saturating_add(size);
        let mut evicted = Vec::new();
        while self.bytes > self.cap {
            let Some((k, (v, s))) = self.map.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(s);
            self.evictions += 1;
            evicted.push((k, v));
        }
        evicted
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (v, s) = self.map.pop(key)?;
        self.bytes = self.bytes.saturating_sub(s);
        Some(v)
    }

    /// The least recently used entry, removed (for callers that evict by their own rule).
    pub fn pop_lru(&mut self) -> Option<(K, V, u64)> {
        let (k, (v, s)) = self.map.pop_lru()?;
        self.bytes = self.bytes.saturating_sub(s);
        Some((k, v, s))
    }

    /// Bytes held, entries held, the cap and evictions so far.
    pub fn usage(&self) -> CacheUsage {
        CacheUsage {
            bytes: self.bytes,
            entries: self.map.len() as u64,
            cap: self.cap,
            evictions: self.evictions,
        }
    }
}

/// A string-keyed [`ByteLru`] of values loaded at most once per key at a time. Cheap
/// values to clone (`Arc`s) only: lookups hand out clones.
#[derive(Debug)]
pub struct OnceLru<V> {
    inner: Mutex<Parts<V>>,
}

#[derive(Debug)]
struct Parts<V> {
    /// Loaded values, bounded.
    ready: ByteLru<String, V>,
    /// Loads in flight: at most one cell per key, dropped when its load ends. Bounded by
    /// the callers' own concurrency limits (a load holds a fetch or compile permit).
    loading: HashMap<String, Arc<OnceCell<V>>>,
}

impl<V: Clone> OnceLru<V> {
    /// An empty cache of at most `cap` bytes of loaded values.
    pub fn new(cap: u64) -> Self {
        Self {
            inner: Mutex::new(Parts {
                ready: ByteLru::new(cap),
                loading: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Parts<V>> {
        // A poisoned lock only means a thread panicked mid-update; the maps are still a
        // valid cache.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded value under `key`, marked most recently used: the hot path, no I/O.
    pub fn get(&self, key: &str) -> Option<V> {
        self.lock().ready.get(key).cloned()
    }

    /// The loaded value under `key` without touching its recency.
    pub fn peek(&self, key: &str) -> Option<V> {
        self.lock().ready.peek(key).cloned()
    }

    /// The value under `key`, loading it with `init` if absent; concurrent callers for
    /// one key share one load. A loaded value enters the bounded part with `size(&value)`
    /// bytes (and may push older entries out, or itself if larger than the cap); a failed
    /// load leaves nothing behind, so the next call tries again.
    pub async fn get_or_try_init<E, F, Fut>(
        &self,
        key: &str,
        size: impl FnOnce(&V) -> u64,
        init: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let cell = {
            let mut parts = self.lock();
            if let Some(v) = parts.ready.get(key) {
                return Ok(v.clone());
            }
            parts.loading.entry(key.to_owned()).or_default().clone()
        };
        let result = cell.get_or_try_init(init).await.cloned();
        let mut evicted = Vec::new();
        {
            let mut parts = self.lock();
            // The first caller to finish moves the value over; later ones find the cell
            // gone (or replaced by a newer load) and leave things as they are.
            if parts
                .loading
                .get(key)
                .is_some_and(|c| Arc::ptr_eq(c, &cell))
            {
                parts.loading.remove(key);
                if let Ok(v) = &result {
                    evicted = parts.ready.insert(key.to_owned(), v.clone(), size(v));
                }
            }
        }
        // Dropped outside the lock: freeing compiled code unmaps memory.
        drop(evicted);
        result
    }

    /// Drops `key`'s loaded value (a load in flight still finishes for its callers).
    pub fn remove(&self, key: &str) {
        let removed = self.lock().ready.remove(key);
        drop(removed);
    }

    /// How full the bounded part is.
    pub fn usage(&self) -> CacheUsage {
        self.lock().ready.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_one_at_a_time() {
        let mut c = ByteLru::new(10);
        assert!(c.insert("a", 1, 4).is_empty());
        assert!(c.insert("b", 2, 4).is_empty());
        assert_eq!(c.get("a"), Some(&1)); // b is now the oldest
        let out = c.insert("c", 3, 4);
        assert_eq!(out, vec![("b", 2)], "only the coldest entry goes");
        assert_eq!(c.usage().bytes, 8);
        assert_eq!(c.usage().entries, 2);
        assert_eq!(c.usage().evictions, 1);
        assert!(c.contains("a") && c.contains("c"));
    }

    #[test]
    fn replacing_adjusts_bytes_and_oversize_is_not_kept() {
        let mut c = ByteLru::new(10);
        c.insert("a", 1, 6);
        c.insert("a", 2, 3);
        assert_eq!(c.usage().bytes, 3);
        assert_eq!(c.peek("a"), Some(&2));
        let out = c.insert("huge", 9, 11);
        assert_eq!(out, vec![("a", 2), ("huge", 9)]);
        assert_eq!(c.usage().bytes, 0);
        assert_eq!(c.remove("a"), None);
    }

    #[test]
    fn never_over_cap_under_many_inserts() {
        let mut c = ByteLru::new(1000);
        for i in 0..10_000u64 {
            c.insert(i, i, 1 + i % 97);
            assert!(c.usage().bytes <= 1000);
        }
        // The most recent entries are the ones kept, not a fresh start.
        assert!(c.contains(&9_999) && c.contains(&9_998));
        assert!(c.usage().entries > 10);
    }

    #[tokio::test]
    async fn once_lru_loads_once_and_eviction_spares_loads_in_flight() {
        let c = Arc::new(OnceLru::<Arc<u32>>::new(2));
        let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let (c, loads) = (c.clone(), loads.clone());
            tokio::spawn(async move {
                c.get_or_try_init(
                    "slow",
                    |_| 1,
                    || async move {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = gate_rx.await;
                        Ok::<_, ()>(Arc::new(7))
                    },
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        // Filling the bounded part meanwhile evicts ready entries only.
        for k in ["a", "b", "c"] {
            let v = c
                .get_or_try_init(k, |_| 1, || async { Ok::<_, ()>(Arc::new(1)) })
                .await;
            assert!(v.is_ok());
        }
        assert_eq!(c.usage().entries, 2);
        let _ = gate_tx.send(());
        assert_eq!(*slow.await.expect("joined").expect("loaded"), 7);
        assert_eq!(c.get("slow").as_deref(), Some(&7));
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A failed load leaves nothing behind.
        let e = c
            .get_or_try_init("bad", |_| 1, || async { Err::<Arc<u32>, _>("no") })
            .await;
        assert!(e.is_err());
        assert!(c.peek("bad").is_none() && c.lock().loading.is_empty());
    }
}
