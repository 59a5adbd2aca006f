//! The block cache's bound: blocks fetched from remote sources live apart from the
//! blocks published here (`cache/` next to `blocks/`), are indexed in memory with their
//! sizes in least-recently-used order, and once their total passes the cap the coldest
//! are deleted, except any that a pinned DAG reaches.
//!
//! Deleting a block a walk still needs never returns wrong data: reads verify every
//! block, a read that finds the file gone is a local miss, and [`crate::Store`] then
//! fetches the block again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use khachapuri_types::Cid;
use lru::LruCache;

use crate::exporter::links_of;

/// Largest pinned DAG (in blocks) a collection protects block by block; a walk past it
/// stops, and the collection then keeps every cached block (safe, if not tidy).
const MAX_PINNED_WALK: usize = 1_000_000;

/// How full the block cache is and what collection has done (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCacheUsage {
    /// Bytes of cached (fetched, unpinned-by-origin) blocks on disk.
    pub bytes: u64,
    /// Cached blocks on disk.
    pub blocks: u64,
    /// The cap `bytes` is brought back under (0: the store has no cap).
    pub cap: u64,
    /// Collections run since start.
    pub gc_runs: u64,
    /// Blocks deleted by collection since start.
    pub collected_blocks: u64,
    /// Bytes deleted by collection since start.
    pub collected_bytes: u64,
}

/// The index of `cache/` and its cap.
#[derive(Debug)]
pub(crate) struct BlockCache {
    state: Mutex<State>,
    /// One collection at a time; other writers carry on meanwhile.
    collecting: AtomicBool,
}

#[derive(Debug)]
struct State {
    lru: LruCache<Cid, u64>,
    bytes: u64,
    cap: u64,
    /// Blocks reachable from pins, computed at the next collection after a pin changed.
    pinned: Option<HashSet<Cid>>,
    /// Bumped by every pin, so a walk that raced a pin is not trusted.
    pins_gen: u64,
    usage: BlockCacheUsage,
}

/// Where [`BlockCache`] finds blocks and pins on disk.
pub(crate) trait Layout {
    /// The file of `cid` in the cache directory.
    fn cache_path(&self, cid: &Cid) -> PathBuf;
    /// A block's bytes from either directory, if present.
    fn read_any(&self, cid: &Cid) -> Option<Vec<u8>>;
    /// The pins directory.
    fn pins_dir(&self) -> &Path;
}

impl BlockCache {
    /// Indexes the blocks under `cache_dir` (oldest modification first) with a cap of
    /// `cap` bytes. Blocking: reads the whole directory tree once.
    pub(crate) fn open(cache_dir: &Path, cap: u64) -> std::io::Result<Self> {
        let mut found = Vec::new();
        for shard in std::fs::read_dir(cache_dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let Some(cid) = name.to_str().and_then(|n| n.parse::<Cid>().ok()) else {
                    // Temp files of an interrupted write, or strays: not blocks.
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((at, cid, meta.len()));
            }
        }
        found.sort();
        let mut state = State {
            lru: LruCache::unbounded(),
            bytes: 0,
            cap,
            pinned: None,
            pins_gen: 0,
            usage: BlockCacheUsage::default(),
        };
        for (_, cid, len) in found {
            state.lru.push(cid, len);
            state.bytes = state.bytes.saturating_add(len);
        }
        Ok(Self {
            state: Mutex::new(state),
            collecting: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `cid` is indexed; marks it most recently used.
    pub(crate) fn touch(&self, cid: &Cid) -> bool {
        self.lock().lru.get(cid).is_some()
    }

    /// Records a block just written to the cache; true when the cap is passed.
    pub(crate) fn added(&self, cid: Cid, len: u64) -> bool {
        let mut s = self.lock();
        if s.lru.get(&cid).is_none() {
            s.lru.push(cid, len);
            s.bytes = s.bytes.saturating_add(len);
        }
        s.bytes > s.cap
    }

    /// Forgets a block whose cache file is gone (found missing or corrupt, or moved to
    /// the published blocks).
    pub(crate) fn forget(&self, cid: &Cid) {
        let mut s = self.lock();
        if let Some(len) = s.lru.pop(cid) {
            s.bytes = s.bytes.saturating_sub(len);
        }
    }

    /// A pin changed: recompute what pins reach at the next collection.
    pub(crate) fn pins_changed(&self) {
        let mut s = self.lock();
        s.pinned = None;
        s.pins_gen += 1;
    }

    /// Current figures.
    pub(crate) fn usage(&self) -> BlockCacheUsage {
        let s = self.lock();
        BlockCacheUsage {
            bytes: s.bytes,
            blocks: s.lru.len() as u64,
            cap: s.cap,
            ..s.usage
        }
    }

    /// Deletes least recently used cached blocks that no pin reaches until the total is
    /// a tenth under the cap (so a full cache does not collect on every write). Blocking;
    /// returns at once if another thread is collecting.
    pub(crate) fn collect(&self, layout: &impl Layout) {
        if self.collecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (stale, gen) = {
            let s = self.lock();
            (s.pinned.is_none(), s.pins_gen)
        };
        // Walked without the lock: reading pinned DAGs is I/O.
        let walked = stale.then(|| pinned_blocks(layout));
        let mut s = self.lock();
        match walked {
            None => {}
            Some(Some(p)) if s.pins_gen == gen => s.pinned = Some(p),
            Some(found) => {
                // A pin landed meanwhile (the next write collects), or the pinned DAGs are
                // too large to walk: keep everything rather than guess.
                drop(s);
                if found.is_none() {
                    tracing::warn!(
                        "pinned DAGs too large to walk; the block cache is not collected"
                    );
                }
                self.collecting.store(false, Ordering::Release);
                return;
            }
        }
        let target = s.cap - s.cap / 10;
        let mut kept = Vec::new();
        let (mut n, mut bytes) = (0u64, 0u64);
        while s.bytes > target {
            let Some((cid, len)) = s.lru.pop_lru() else {
                break;
            };
            if s.pinned.as_ref().is_some_and(|p| p.contains(&cid)) {
                kept.push((cid, len));
                continue;
            }
            s.bytes = s.bytes.saturating_sub(len);
            match std::fs::remove_file(layout.cache_path(&cid)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(%cid, error = %e, "cannot collect a cached block");
                    continue;
                }
            }
            n += 1;
            bytes = bytes.saturating_add(len);
        }
        for (cid, len) in kept {
            s.lru.push(cid, len);
        }
        s.usage.gc_runs += 1;
        s.usage.collected_blocks += n;
        s.usage.collected_bytes = s.usage.collected_bytes.saturating_add(bytes);
        let left = s.bytes;
        drop(s);
        self.collecting.store(false, Ordering::Release);
        tracing::debug!(blocks = n, bytes, left, "collected cached blocks");
    }
}

/// Every block reachable from a pin through the blocks stored locally; `None` if the
/// walk passes [`MAX_PINNED_WALK`].
fn pinned_blocks(layout: &impl Layout) -> Option<HashSet<Cid>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<Cid> = std::fs::read_dir(layout.pins_dir())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    while let Some(cid) = stack.pop() {
        let key = Cid::v1(cid.codec(), *cid.digest());
        if !seen.insert(key) {
            continue;
        }
        if seen.len() > MAX_PINNED_WALK {
            return None;
        }
        // A block not stored here is not ours to keep; one that fails to decode has no
        // links to follow.
        if let Some(data) = layout.read_any(&key).filter(|d| key.verify(d)) {
            stack.extend(links_of(&key, &data).unwrap_or_default());
        }
    }
    Some(seen)
}

#[cfg(test)]
mod tests {
    use crate::importer::import_bytes;
    use crate::Blockstore;
    use khachapuri_types::Cid;

    fn block(i: u32) -> (Cid, Vec<u8>) {
        let data = format!("block {i:04} {}", "x".repeat(90)).into_bytes();
        (Cid::raw(&data), data)
    }

    #[test]
    fn unpinned_blocks_go_least_recent_first_and_total_stays_under_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Blockstore::open(dir.path())
            .expect("open")
            .without_fsync()
            .with_cache_cap(1000)
            .expect("cap");
        let (hot, hot_data) = block(0);
        store.put_cached(&hot, &hot_data).expect("put");
        for i in 1..100 {
            let (cid, data) = block(i);
            store.put_cached(&cid, &data).expect("put");
            // Kept warm: read after every write.
            assert!(
                store.get(&hot).expect("get").is_some(),
                "hot block evicted at {i}"
            );
            assert!(store.usage().bytes <= 1000, "{:?}", store.usage());
        }
        let u = store.usage();
        assert!(u.gc_runs > 0 && u.collected_blocks > 0, "{u:?}");
        // Not a wholesale wipe: the most recent blocks are still there.
        assert!(store.has(&block(99).0) && store.has(&block(98).0));
        assert!(!store.has(&block(1).0), "the coldest block was collected");
        assert!(u.blocks > 5, "{u:?}");
        // The index is rebuilt on open from what is on disk.
        let reopened = Blockstore::open(dir.path())
            .expect("open")
            .with_cache_cap(1000)
            .expect("cap");
        assert_eq!(reopened.usage().bytes, u.bytes);
        assert_eq!(reopened.usage().blocks, u.blocks);
    }

    #[test]
    fn pinned_and_published_blocks_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = 2 * crate::CHUNK_SIZE as u64;
        let store = Blockstore::open(dir.path())
            .expect("open")
            .without_fsync()
            .with_cache_cap(cap)
            .expect("cap");
        // A multi-block file fetched (cached) and then pinned.
        let data = vec![7u8; crate::CHUNK_SIZE + 100];
        let (imported, blocks) = import_bytes(&data).expect("import");
        assert!(blocks.len() >= 3);
        for b in &blocks {
            store.put_cached(&b.cid, &b.data).expect("put");
        }
        store.pin(&imported.cid).expect("pin");
        // A published block: never in the cache at all.
        let (published, pdata) = block(9999);
        store.put(&published, &pdata).expect("put");
        let big = |i: u32| {
            let mut d = vec![0u8; 64 * 1024];
            d[..4].copy_from_slice(&i.to_le_bytes());
            (Cid::raw(&d), d)
        };
        for i in 0..40 {
            let (cid, data) = big(i);
            store.put_cached(&cid, &data).expect("put");
            assert!(store.usage().bytes <= cap, "{:?}", store.usage());
        }
        for b in &blocks {
            assert!(store.has(&b.cid), "pinned DAG lost block {}", b.cid);
        }
        assert!(store.get(&published).expect("get").is_some());
        let u = store.usage();
        assert!(u.collected_blocks > 10, "{u:?}");
        assert!(!store.has(&big(0).0), "unpinned blocks go");
        assert!(store.has(&big(39).0));
    }
}
