//! Compiled code on disk, keyed by artifact CID, guest kind and engine fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::GuestKind;

/// Compiled code of one artifact, ready to link.
pub(crate) enum Code {
    Component(Component),
    Module(Module),
}

/// A directory of `*.cwasm` files produced by this runtime.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    fingerprint: String,
}

impl DiskCache {
    pub(crate) fn new(dir: PathBuf, fingerprint: String) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(DiskCache { dir, fingerprint })
    }

    /// `{cid}-{kind}-{engine}.cwasm`; a CID that is not plain alphanumeric (every real
    /// CID string is) is hashed so it can never escape the directory.
    pub(crate) fn path(&self, cid: &str, kind: GuestKind) -> PathBuf {
        let safe =
            !cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric());
        let name = if safe {
            cid.to_owned()
        } else {
            Sha256::digest(cid.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
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
        if let Err(e) = &loaded {
            tracing::warn!(cid, path = %path.display(), error = %e, "ignoring unusable compiled-code cache entry");
        }
        loaded.ok()
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
        })
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
        })
    }
}
