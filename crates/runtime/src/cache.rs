//! Compiled code on disk, keyed by artifact CID, guest kind and engine fingerprint,
//! bounded in bytes: an in-memory index (built from the directory on open, oldest
//! modification time first) evicts the least recently used files after each store, and a
//! load touches its file so the order survives a restart.
//!
//! Deleting a file another thread is loading is harmless: wasmtime maps it, and on Linux
//! a mapped or open file lives on after unlink; a load that finds it gone is a miss and
//! compiles again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::lru::{ByteLru, CacheUsage};
use crate::GuestKind;

/// Compiled code of one artifact, ready to link.
pub(crate) enum Code {
    Component(Component),
    Module(Module),
}

impl Code {
    /// Bytes of the compiled image in memory (what an `InstancePre` of it keeps alive).
    pub(crate) fn image_bytes(&self) -> u64 {
        let r = match self {
            Code::Component(c) => c.image_range(),
            Code::Module(m) => m.image_range(),
        };
        (r.end as usize).saturating_sub(r.start as usize) as u64
    }
}

/// A directory of `*.cwasm` files produced by this runtime, at most `cap` bytes of them.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
    /// Every `*.cwasm` file of the directory with its size, least recently used first
    /// (files of other engine fingerprints included: they age out first).
    index: Mutex<ByteLru<PathBuf, ()>>,
}

impl DiskCache {
    /// Opens (creating) the directory and indexes the files in it; past `cap` already
    /// (a lowered cap), the oldest go at once.
    pub(crate) fn new(dir: PathBuf, fingerprint: String, cap: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "cwasm") {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() {
                let at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((at, path, meta.len()));
            }
        }
        files.sort();
        let mut index = ByteLru::new(cap);
        let mut evicted = Vec::new();
        for (_, path, len) in files {
            evicted.extend(index.insert(path, (), len));
        }
        remove_files(evicted);
        Ok(DiskCache {
            dir,
            fingerprint,
            index: Mutex::new(index),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, ByteLru<PathBuf, ()>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How full the directory is, by the index.
    pub(crate) fn usage(&self) -> CacheUsage {
        self.index().usage()
    }

    /// `{cid}-{kind}-{engine}.cwasm`; a CID that is not plain alphanumeric (every real
    /// CID string is) is hashed so it can never escape the directory.
    pub(crate) fn path(&self, cid: &str, kind: GuestKind) -> PathBuf {
        let name = cid_file_name(cid);
        self.dir.join(format!(
            "{name}-{}-{}.cwasm",
            kind.as_str(),
            self.fingerprint
        ))
    }

    /// Loads compiled code if present and compatible; `None` on any miss or error
    /// (the caller then compiles and overwrites the file).
    pub(crate) fn load(&self, engine: &Engine, cid: &str, kind: GuestKind) -> Option<Code> {
        let path = self.path(cid, kind);
        if !path.is_file() {
            return None;
        }
        let loaded = load_file(engine, &path, kind);
        match &loaded {
            Ok(_) => self.touch(&path),
            Err(e) => {
                tracing::warn!(cid, path = %path.display(), error = %e, "ignoring unusable compiled-code cache entry")
            }
        }
        loaded.ok()
    }

    /// Marks a file just loaded as most recently used, in the index and on disk (its
    /// modification time orders the index built at the next start).
    fn touch(&self, path: &Path) {
        let known = self.index().get(path).is_some();
        if !known {
            // Written by an earlier process after this one indexed the directory.
            if let Ok(meta) = std::fs::metadata(path) {
                let evicted = self.index().insert(path.to_owned(), (), meta.len());
                remove_files(evicted.into_iter().filter(|(p, _)| p != path));
            }
        }
        if let Ok(f) = std::fs::File::open(path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Writes compiled code atomically (temp file + rename), so a crash never leaves a
    /// truncated entry that a later `load` would trust.
    pub(crate) fn store(&self, cid: &str, kind: GuestKind, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(cid, kind);
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(bytes)?;
        tmp.1.sync_all()?;
        drop(tmp.1);
        std::fs::rename(&tmp.0, &path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp.0);
        })?;
        let evicted = self.index().insert(path, (), bytes.len() as u64);
        remove_files(evicted);
        Ok(())
    }
}

/// Deletes evicted cache files (outside the index lock); one already gone is fine.
fn remove_files(evicted: impl IntoIterator<Item = (PathBuf, ())>) {
    for (path, ()) in evicted {
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "evicted compiled code from the disk cache")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot evict compiled code")
            }
        }
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

#[allow(unsafe_code)]
fn load_file(engine: &Engine, path: &Path, kind: GuestKind) -> wasmtime::Result<Code> {
    // SAFETY: `deserialize_file` trusts the file to be compiled code produced by a
    // compatible wasmtime. The cache directory is private to this runtime and only ever
    // written by `DiskCache::store` (atomically, via rename) with the output of
    // `Component::serialize`/`Module::serialize` of this same engine configuration; the
    // file name includes the engine's compatibility fingerprint and the guest kind, and
    // wasmtime additionally checks its version/config header and refuses a mismatch.
    unsafe {
        Ok(match kind {
            GuestKind::WasiHttp => Code::Component(Component::deserialize_file(engine, path)?),
            GuestKind::Wagi => Code::Module(Module::deserialize_file(engine, path)?),
            GuestKind::Process => wasmtime::bail!("a process artifact has no compiled code"),
        })
    }
}

/// A file name for `cid` that can never escape its directory: the CID itself when it is
/// plain alphanumeric (every real CID string is), else its SHA-256 in hex. Shared by the
/// compiled-code cache and the unpacked-archive cache.
pub(crate) fn cid_file_name(cid: &str) -> String {
    let safe =
        !cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric());
    if safe {
        return cid.to_owned();
    }
    Sha256::digest(cid.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_cache_evicts_least_recently_used_files_past_its_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("compiled");
        let cache = DiskCache::new(root.clone(), "fp".into(), 250).expect("open");
        let kind = GuestKind::WasiHttp;
        cache.store("a", kind, &[1; 100]).expect("store");
        cache.store("b", kind, &[2; 100]).expect("store");
        // A load of `a` touches it: `b` is now the coldest.
        cache.touch(&cache.path("a", kind));
        // File times come from the kernel's coarse clock; the touch used a precise one.
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.store("c", kind, &[3; 100]).expect("store");
        assert!(cache.path("a", kind).is_file());
        assert!(!cache.path("b", kind).is_file(), "the coldest file went");
        assert!(cache.path("c", kind).is_file(), "no wholesale wipe");
        assert_eq!(cache.usage().bytes, 200);
        assert_eq!(cache.usage().evictions, 1);
        // Reopened with a lower cap, the index is rebuilt from the files' times.
        let reopened = DiskCache::new(root, "fp".into(), 150).expect("reopen");
        assert_eq!(reopened.usage().bytes, 100);
        assert!(reopened.path("c", kind).is_file());
        assert!(!reopened.path("a", kind).is_file());
    }
}
