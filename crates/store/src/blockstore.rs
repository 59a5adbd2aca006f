//! On-disk blockstore: one file per block under `blocks/XY/<cid>`, where `XY` are the two
//! characters before the last of the CID (like Kubo's flatfs `next-to-last/2`), so no
//! directory grows past a few thousand entries.
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
    pins: PathBuf,
    fsync: bool,
}

impl Blockstore {
    /// Opens (creating) a blockstore rooted at `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let blocks = dir.join("blocks");
        let pins = dir.join("pins");
        std::fs::create_dir_all(&blocks)?;
        std::fs::create_dir_all(&pins)?;
        Ok(Self {
            inner: Arc::new(Inner {
                blocks,
                pins,
                fsync: true,
            }),
        })
    }

    /// Same store without fsync per block (tests and benchmarks of the hashing path only).
    pub fn without_fsync(&self) -> Self {
        Self {
            inner: Arc::new(Inner {
                blocks: self.inner.blocks.clone(),
                pins: self.inner.pins.clone(),
                fsync: false,
            }),
        }
    }

    /// Where a block lives. CIDv0 and CIDv1 of the same dag-pb block share the file.
    fn path_of(&self, cid: &Cid) -> PathBuf {
        let name = Cid::v1(cid.codec(), *cid.digest()).to_string();
        let n = name.len();
        let shard = &name[n - 3..n - 1];
        self.inner.blocks.join(shard).join(name)
    }

    /// Whether the block is stored (not re-verified; [`Blockstore::get`] verifies).
    pub fn has(&self, cid: &Cid) -> bool {
        self.path_of(cid).is_file()
    }

    /// Reads and verifies a block; `None` if absent (or corrupt, which is then removed).
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        let path = self.path_of(cid);
        match std::fs::read(&path) {
            Ok(data) if cid.verify(&data) => Ok(Some(Bytes::from(data))),
            Ok(_) => {
                tracing::warn!(%cid, "removing corrupt block from the local store");
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Verifies `data` against `cid` and stores it.
    pub fn put(&self, cid: &Cid, data: &[u8]) -> Result<()> {
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
        self.put_trusted(cid, data)
    }

    /// Stores a block whose CID the caller has just computed from these very bytes.
    pub(crate) fn put_trusted(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        let path = self.path_of(cid);
        if path.is_file() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.inner.blocks);
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(data)?;
            if self.inner.fsync {
                file.sync_data()?;
            }
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(result?)
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

    /// Records that `cid` should be kept (the store never collects garbage yet, so a pin
    /// is a promise for later and a record of what was published here).
    pub fn pin(&self, cid: &Cid) -> Result<()> {
        std::fs::write(self.inner.pins.join(cid.to_string()), b"")?;
        Ok(())
    }

    /// Whether `cid` was pinned.
    pub fn is_pinned(&self, cid: &Cid) -> bool {
        self.inner.pins.join(cid.to_string()).is_file()
    }
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
