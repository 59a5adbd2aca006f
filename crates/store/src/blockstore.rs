//! On-disk blockstore: one file per block under `blocks/XY/<cid>`, where `XY` are the two
//! characters before the last of the CID (like Kubo's flatfs `next-to-last/2`), so no
//! directory grows past a few thousand entries.
//!
//! Blocks fetched from remote sources are a cache: they live under `cache/XY/<cid>` and,
//! once a cap is set ([`Blockstore::with_cache_cap`]), the least recently used of them are
//! garbage-collected (see `gc.rs`). Blocks stored by publishing (`put`, the importer)
//! live under `blocks/` and are never collected; neither is any block a pin reaches.
//!
//! Writes go to a temp file that is fsynced and then renamed into place, so a crash leaves
//! either the whole block or nothing. Reads verify the hash too: a block rotted on disk is
//! reported missing (and removed) rather than served.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use khachapuri_types::Cid;

use crate::error::{Result, StoreError};
use crate::gc::{BlockCache, BlockCacheUsage, Layout};
use crate::importer::Block;

/// Largest block we store or serve (Kubo's bitswap limit is 2 MiB).
pub const MAX_BLOCK_SIZE: usize = 2 << 20;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of verified blocks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Blockstore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    blocks: PathBuf,
    cache: PathBuf,
    pins: PathBuf,
    fsync: bool,
    /// The cache's index and cap, once [`Blockstore::with_cache_cap`] set one.
    gc: Option<Arc<BlockCache>>,
}

impl Blockstore {
    /// Opens (creating) a blockstore rooted at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let blocks = dir.join("blocks");
        let pins = dir.join("pins");
        std::fs::create_dir_all(&blocks)?;
        std::fs::create_dir_all(&pins)?;
        let cache = dir.join("cache");
        std::fs::create_dir_all(&cache)?;
        Ok(Self {
            inner: Arc::new(Inner {
                blocks,
                cache,
                pins,
                fsync: true,
                gc: None,
            }),
        })
    }

    /// Same store without fsync per block (tests and benchmarks of the hashing path only).
    pub fn without_fsync(&self) -> Self {
        Self {
            inner: Arc::new(Inner {
                blocks: self.inner.blocks.clone(),
                cache: self.inner.cache.clone(),
                pins: self.inner.pins.clone(),
                fsync: false,
                gc: self.inner.gc.clone(),
            }),
        }
    }

    /// Same store with the cached (fetched) blocks bounded to `cap` bytes: a node that
    /// fetches whatever strangers name must not fill its disk. Indexes the cache
    /// directory (blocking) and collects at once if it is already past the cap.
    pub fn with_cache_cap(&self, cap: u64) -> Result<Self> {
        let gc = Arc::new(BlockCache::open(&self.inner.cache, cap)?);
        let this = Self {
            inner: Arc::new(Inner {
                blocks: self.inner.blocks.clone(),
                cache: self.inner.cache.clone(),
                pins: self.inner.pins.clone(),
                fsync: self.inner.fsync,
                gc: Some(gc.clone()),
            }),
        };
        if gc.usage().bytes > cap {
            gc.collect(&this);
        }
        Ok(this)
    }

    /// How full the block cache is (all zero without a cap: nothing is tracked).
    pub fn usage(&self) -> BlockCacheUsage {
        self.inner
            .gc
            .as_ref()
            .map(|g| g.usage())
            .unwrap_or_default()
    }

    /// `root/XY/<cidv1>`: CIDv0 and CIDv1 of the same dag-pb block share the file.
    fn sharded(root: &Path, cid: &Cid) -> PathBuf {
        let name = Cid::v1(cid.codec(), *cid.digest()).to_string();
        let n = name.len();
        let shard = &name[n - 3..n - 1];
        root.join(shard).join(name)
    }

    /// Where a published block lives.
    fn path_of(&self, cid: &Cid) -> PathBuf {
        Self::sharded(&self.inner.blocks, cid)
    }

    /// Where a cached (fetched) block lives.
    fn cache_path_of(&self, cid: &Cid) -> PathBuf {
        Self::sharded(&self.inner.cache, cid)
    }

    /// Whether the block is stored (not re-verified; [`Blockstore::get`] verifies).
    pub fn has(&self, cid: &Cid) -> bool {
        self.path_of(cid).is_file() || self.cache_path_of(cid).is_file()
    }

    /// Reads and verifies a block, published first, then cached; `None` if absent (or
    /// corrupt, which is then removed).
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        if let Some(b) = read_verified(&self.path_of(cid), cid)? {
            return Ok(Some(b));
        }
        let found = read_verified(&self.cache_path_of(cid), cid)?;
        if let Some(gc) = &self.inner.gc {
            let key = Cid::v1(cid.codec(), *cid.digest());
            if found.is_some() {
                if !gc.touch(&key) {
                    gc.added(key, found.as_ref().map_or(0, |b| b.len() as u64));
                }
            } else {
                gc.forget(&key);
            }
        }
        Ok(found)
    }

    /// Verifies a block fetched from a remote source and stores it in the cache, which
    /// the cap bounds. Blocking, and may run a collection: call it off the reactor
    /// ([`Blockstore::put_cached_async`]).
    pub fn put_cached(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        check_block(cid, data)?;
        let key = Cid::v1(cid.codec(), *cid.digest());
        if self.path_of(&key).is_file() {
            return Ok(());
        }
        if let Some(gc) = &self.inner.gc {
            if gc.touch(&key) {
                return Ok(());
            }
        }
        let path = self.cache_path_of(&key);
        // A cached block is re-fetched if a crash truncates it (reads verify): no fsync.
        write_atomic(&path, &self.inner.cache, data, false)?;
        if let Some(gc) = &self.inner.gc {
            if gc.added(key, data.len() as u64) {
                gc.collect(self);
            }
        }
        Ok(())
    }

    /// [`Blockstore::put_cached`] on the blocking pool.
    pub async fn put_cached_async(&self, cid: Cid, data: Bytes) -> Result<()> {
        let this = self.clone();
        blocking(move || this.put_cached(&cid, &data)).await
    }

    /// Verifies `data` against `cid` and stores it as published (never collected).
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        check_block(cid, data)?;
        self.put_trusted(cid, data)
    }

    /// Stores a published block whose CID the caller has just computed from these very
    /// bytes; a cached copy of it leaves the cache (it is kept now).
    pub(crate) fn put_trusted(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        let path = self.path_of(cid);
        if path.is_file() {
            return Ok(());
        }
        write_atomic(&path, &self.inner.blocks, data, self.inner.fsync)?;
        if let Some(gc) = &self.inner.gc {
            let key = Cid::v1(cid.codec(), *cid.digest());
            gc.forget(&key);
            let _ = std::fs::remove_file(self.cache_path_of(&key));
        }
        Ok(())
    }

    /// [`Blockstore::get`] on the blocking pool.
    pub async fn get_async(&self, cid: Cid) -> Result<Option<Bytes>> {
        let this = self.clone();
        blocking(move || this.get(&cid)).await
    }

    /// [`Blockstore::put`] on the blocking pool.
    pub async fn put_async(&self, cid: Cid, data: Bytes) -> Result<()> {
        let this = self.clone();
        blocking(move || this.put(&cid, &data)).await
    }

    /// Stores blocks produced by the importer (already hashed) on the blocking pool.
    pub(crate) async fn put_many_trusted(&self, blocks: Vec<Block>) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        blocking(move || {
            blocks
                .iter()
                .try_for_each(|b| this.put_trusted(&b.cid, &b.data))
        })
        .await
    }

    /// Records that the DAG under `cid` is kept: collection of the block cache never
    /// deletes a block a pin reaches.
    pub fn pin(&self, cid: &Cid) -> Result<()> {
        std::fs::write(self.inner.pins.join(cid.to_string()), b"")?;
        if let Some(gc) = &self.inner.gc {
            gc.pins_changed();
        }
        Ok(())
    }

    /// Whether `cid` was pinned.
    pub fn is_pinned(&self, cid: &Cid) -> bool {
        self.inner.pins.join(cid.to_string()).is_file()
    }
}

impl Layout for Blockstore {
    fn cache_path(&self, cid: &Cid) -> PathBuf {
        self.cache_path_of(cid)
    }
    fn read_any(&self, cid: &Cid) -> Option<Vec<u8>> {
        std::fs::read(self.path_of(cid))
            .or_else(|_| std::fs::read(self.cache_path_of(cid)))
            .ok()
    }
    fn pins_dir(&self) -> &Path {
        &self.inner.pins
    }
}

/// Refuses a block that is too large or does not hash to `cid`.
fn check_block(cid: &Cid, data: &[u8]) -> Result<()> {
    if data.len() > MAX_BLOCK_SIZE {
        return Err(StoreError::TooLarge {
            what: "block",
            limit: MAX_BLOCK_SIZE as u64,
        });
    }
    if !cid.verify(data) {
        return Err(StoreError::HashMismatch {
            cid: *cid,
            source_name: "put".into(),
        });
    }
    Ok(())
}

/// Reads a block file and checks its hash; a corrupt file is removed and reads as absent.
fn read_verified(path: &Path, cid: &Cid) -> Result<Option<Bytes>> {
    match std::fs::read(path) {
        Ok(data) if cid.verify(&data) => Ok(Some(Bytes::from(data))),
        Ok(_) => {
            tracing::warn!(%cid, "removing corrupt block from the local store");
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `data` to `path` through a temp file in its directory and a rename, so a crash
/// leaves the whole file or none.
fn write_atomic(path: &Path, root: &Path, data: &[u8], fsync: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        if fsync {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Runs filesystem work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_verifies_and_get_detects_rot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Blockstore::open(dir.path()).expect("open");
        let cid = Cid::raw(b"block");
        assert!(matches!(
            store.put(&cid, b"other"),
            Err(StoreError::HashMismatch { .. })
        ));
        assert!(!store.has(&cid));
        store.put(&cid, b"block").expect("put");
        assert!(store.has(&cid));
        assert_eq!(
            store.get(&cid).expect("get").as_deref(),
            Some(&b"block"[..])
        );
        std::fs::write(store.path_of(&cid), b"rotten").expect("rot");
        assert_eq!(store.get(&cid).expect("get"), None);
        assert!(!store.has(&cid));
    }
}
