//! Unpacked artifacts on disk: one read-only directory per artifact CID, unpacked once
//! (into a temporary name, then renamed: a directory under its CID is always complete)
//! and reused across calls and restarts, bounded in bytes with the least recently used
//! deleted first. The index is rebuilt from the directories' modification times at
//! start; a lookup touches its directory so that order survives a restart.
//!
//! Deleting a directory a running call uses does not disturb the program already
//! started (its executable stays mapped); the next call finds it gone and unpacks again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::lru::{ByteLru, CacheUsage};
use khachapuri_archive::{remove_tree, unpack, UnpackLimits};

/// Prefix of directories being unpacked; leftovers of a crash are deleted at start.
const TMP_PREFIX: &str = ".unpacking-";

/// The directory of unpacked artifacts.
#[derive(Debug)]
pub(crate) struct ArtifactDirs {
    root: PathBuf,
    limits: UnpackLimits,
    index: Mutex<ByteLru<PathBuf, ()>>,
    seq: AtomicU64,
}

impl ArtifactDirs {
    /// Opens (creating) `root`, deletes unfinished unpacks and indexes the rest; past
    /// `cap` already, the oldest go at once.
    pub(crate) fn new(root: PathBuf, cap: u64, limits: UnpackLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&root)?.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TMP_PREFIX) {
                remove_tree(&path);
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                found.push((at, path.clone(), tree_bytes(&path)));
            }
        }
        found.sort();
        let mut index = ByteLru::new(cap);
        let mut evicted = Vec::new();
        for (_, path, bytes) in found {
            evicted.extend(index.insert(path, (), bytes));
        }
        for (p, ()) in evicted {
            remove_tree(&p);
        }
        Ok(ArtifactDirs {
            root,
            limits,
            index: Mutex::new(index),
            seq: AtomicU64::new(0),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, ByteLru<PathBuf, ()>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How full the directory is (bytes of file contents).
    pub(crate) fn usage(&self) -> CacheUsage {
        self.index().usage()
    }

    /// `root/{cid}`; a CID that is not plain alphanumeric (every real CID string is) is
    /// hashed so it can never escape the directory.
    pub(crate) fn path(&self, cid: &str) -> PathBuf {
        self.root.join(crate::cache::cid_file_name(cid))
    }

    /// Blocking: the unpacked directory of `cid` if it is on disk (marked recently used).
    pub(crate) fn lookup(&self, cid: &str) -> Option<PathBuf> {
        let path = self.path(cid);
        if !path.join(khachapuri_archive::MAIN).is_file() {
            self.index().remove(&path);
            return None;
        }
        let known = self.index().get(&path).is_some();
        if !known {
            // Unpacked by an earlier process after this one indexed the directory.
            let evicted = self.index().insert(path.clone(), (), tree_bytes(&path));
            remove_all(evicted.into_iter().filter(|(p, _)| *p != path));
        }
        touch(&path);
        Some(path)
    }

    /// Blocking: unpacks `archive` as `cid` (or finds it already there) and returns its
    /// directory and the bytes it holds. Errors name what the archive did wrong.
    pub(crate) fn unpack(&self, cid: &str, archive: &[u8]) -> Result<PathBuf, String> {
        if let Some(p) = self.lookup(cid) {
            return Ok(p);
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .root
            .join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let bytes = match unpack(archive, &tmp, &self.limits) {
            Ok(b) => b,
            Err(e) => {
                remove_tree(&tmp);
                return Err(e.0);
            }
        };
        let cap = self.index().usage().cap;
        if bytes > cap {
            // Never inserted: it would only push every other artifact out on its way.
            remove_tree(&tmp);
            return Err(format!(
                "the artifact unpacks to {bytes} bytes, more than the whole unpack cache holds ({cap})"
            ));
        }
        let path = self.path(cid);
        if let Err(e) = std::fs::rename(&tmp, &path) {
            remove_tree(&tmp);
            // Another thread (or process) finished the same unpack first.
            if path.join(khachapuri_archive::MAIN).is_file() {
                return Ok(path);
            }
            return Err(format!("cannot store the unpacked artifact: {e}"));
        }
        let evicted = self.index().insert(path.clone(), (), bytes);
        remove_all(evicted);
        Ok(path)
    }
}

fn remove_all(evicted: impl IntoIterator<Item = (PathBuf, ())>) {
    for (p, ()) in evicted {
        tracing::debug!(dir = %p.display(), "evicting unpacked artifact");
        remove_tree(&p);
    }
}

fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Bytes of regular files under `dir` (links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total = total.saturating_add(m.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(payload: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        // A minimal x86-64 ELF header, padded to `payload` bytes.
        let mut main = vec![0u8; payload.max(64)];
        main[..4].copy_from_slice(b"\x7fELF");
        main[4] = 2;
        main[18] = 62;
        let mut h = tar::Header::new_gnu();
        h.set_size(main.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "main", main.as_slice())
            .expect("append");
        b.into_inner().expect("tar")
    }

    #[test]
    fn unpacks_once_reuses_and_evicts_the_coldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("unpacked");
        let dirs = ArtifactDirs::new(root.clone(), 250, UnpackLimits::default()).expect("open");
        let a = dirs.unpack("a", &archive(100)).expect("a");
        assert!(a.join("main").is_file());
        assert_eq!(dirs.unpack("a", b"not even an archive").expect("cached"), a);
        dirs.unpack("b", &archive(100)).expect("b");
        assert!(dirs.lookup("a").is_some(), "a is now the warmest");
        std::thread::sleep(std::time::Duration::from_millis(20));
        dirs.unpack("c", &archive(100)).expect("c");
        assert!(dirs.lookup("b").is_none(), "the coldest went");
        assert!(dirs.lookup("a").is_some() && dirs.lookup("c").is_some());
        assert_eq!(dirs.usage().bytes, 200);
        assert!(
            dirs.unpack("big", &archive(300)).is_err(),
            "larger than the cache"
        );
        // Reopened: leftovers of an interrupted unpack go, the rest is indexed again.
        std::fs::create_dir(root.join(".unpacking-1-1")).expect("leftover");
        let again = ArtifactDirs::new(root.clone(), 250, UnpackLimits::default()).expect("reopen");
        assert!(!root.join(".unpacking-1-1").exists());
        assert_eq!(again.usage().bytes, 200);
        let names: Vec<_> = std::fs::read_dir(&root).expect("ls").flatten().collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
