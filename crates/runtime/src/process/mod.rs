//! The `process` runtime: a native x86-64 Linux program, unpacked from its tar or zip
//! artifact, run once per request under bubblewrap with the CGI convention of `wagi`.
//!
//! What a program gets (see [`sandbox`] for the exact bubblewrap arguments): an empty
//! read-only root, its artifact read-only at `/app` (also its working directory), a
//! private size-capped `/tmp`, a fresh `/proc` and a minimal read-only `/dev`; new user, pid,
//! network (loopback only, nothing listening), IPC, UTS and cgroup namespaces; no
//! capabilities, no new privileges, no nested user namespaces, a new session; rlimits on
//! CPU time, address space, processes and open files; an unprivileged uid of its own. The
//! call's deadline kills the whole sandbox: bubblewrap dies, its pid namespace with it.
//! Env comes only from the spec, plus the CGI meta-variables.

mod dirs;
mod pre_exec;
mod sandbox;
mod warm;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{CallOptions, GuestKind, ProcessConfig, RuntimeError};
use dirs::ArtifactDirs;
use sandbox::Start;
use warm::{WarmKey, WarmPool};

/// The launcher of warm sandboxes (`launch/launch.c`, built by `build.rs`).
const LAUNCHER_BYTES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/khachapuri-launch"));

/// An unpacked program ready to run: its read-only directory.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    pub(crate) dir: PathBuf,
}

impl Program {
    /// Whether its directory is still on disk (the unpack cache may have deleted it).
    pub(crate) fn present(&self) -> bool {
        self.dir.join(khachapuri_archive::MAIN).is_file()
    }
}

/// Unpacked artifacts, the uid pool and the sandbox settings.
#[derive(Debug)]
pub(crate) struct ProcessRuntime {
    config: Arc<ProcessConfig>,
    dirs: ArtifactDirs,
    uids: Arc<UidPool>,
    /// Sandboxes started ahead of their request; `None` when `warm_per_program` is 0.
    warm: Option<Arc<Warm>>,
}

/// The warm pool and the launcher its sandboxes run.
#[derive(Debug)]
struct Warm {
    pool: WarmPool,
    /// A private directory holding only the launcher, bound read-only into each warm
    /// sandbox by descriptor (deleted with the runtime).
    _dir: tempfile::TempDir,
    /// That directory, open: handed to bubblewrap like the artifact's.
    launcher: std::fs::File,
}

impl Warm {
    /// Writes the launcher into a fresh private directory. Blocking.
    fn new(config: &ProcessConfig) -> Result<Self, RuntimeError> {
        use std::os::unix::fs::PermissionsExt;
        if LAUNCHER_BYTES.is_empty() {
            return Err(RuntimeError::Internal(
                "warm sandboxes need x86-64 Linux (set process warm_per_program = 0)".into(),
            ));
        }
        let fail = |e: std::io::Error| {
            RuntimeError::Internal(format!("cannot write the warm-sandbox launcher: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("khachapuri-launch-")
            .tempdir()
            .map_err(fail)?;
        let path = dir.path().join(sandbox::LAUNCHER);
        std::fs::write(&path, LAUNCHER_BYTES).map_err(fail)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555)).map_err(fail)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(fail)?;
        let launcher = std::fs::File::open(dir.path()).map_err(fail)?;
        Ok(Warm {
            pool: WarmPool::new(config.warm_per_program, config.max_warm, config.warm_idle),
            _dir: dir,
            launcher,
        })
    }
}

impl ProcessRuntime {
    /// Checks that bubblewrap runs and opens the unpack directory. Blocking.
    pub(crate) fn new(config: ProcessConfig) -> Result<Self, RuntimeError> {
        let version = std::process::Command::new(&config.bwrap)
            .arg("--version")
            .output();
        match version {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(RuntimeError::Internal(format!(
                    "the process runtime needs bubblewrap; `{} --version` failed: {}",
                    config.bwrap.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
            Err(e) => {
                return Err(RuntimeError::Internal(format!(
                    "the process runtime needs bubblewrap (Debian package `bubblewrap`, see scripts/setup): cannot run {}: {e}",
                    config.bwrap.display()
                )))
            }
        }
        if config.uids == 0 || u64::from(config.uid_base) + u64::from(config.uids) > 1 << 31 {
            return Err(RuntimeError::Internal(
                "process uids must be at least 1 and end below 2^31".into(),
            ));
        }
        let dir = config.reachable_dir();
        if dir != config.dir {
            tracing::info!(
                wanted = %config.dir.display(),
                using = %dir.display(),
                "the sandbox uids cannot reach the unpack dir (a closed parent directory): unpacking under the temp dir instead"
            );
        }
        let dirs = ArtifactDirs::new(dir.clone(), config.max_disk_bytes, config.unpack)
            .map_err(|e| RuntimeError::Internal(format!("unpack dir {}: {e}", dir.display())))?;
        // Other users (the sandbox uids) pass through but cannot list it.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
        let warm = match config.warm_per_program {
            0 => None,
            _ => Some(Arc::new(Warm::new(&config)?)),
        };
        Ok(ProcessRuntime {
            uids: Arc::new(UidPool::new(config.uid_base, config.uids)),
            config: Arc::new(config),
            dirs,
            warm,
        })
    }

    /// How full the unpack directory is.
    pub(crate) fn usage(&self) -> crate::CacheUsage {
        self.dirs.usage()
    }

    /// Blocking: the program of `cid` if it is already unpacked.
    pub(crate) fn lookup(&self, cid: &str) -> Option<Program> {
        self.dirs.lookup(cid).map(|dir| Program { dir })
    }

    /// Blocking: unpacks `archive` (the artifact `cid`) unless it already is.
    pub(crate) fn unpack(&self, cid: &str, archive: &[u8]) -> Result<Program, RuntimeError> {
        self.dirs
            .unpack(cid, archive)
            .map(|dir| Program { dir })
            .map_err(|reason| RuntimeError::InvalidArtifact {
                kind: GuestKind::Process,
                reason,
            })
    }

    /// Runs one request through `program` in a fresh sandbox: started now, or started
    /// ahead for it by the warm pool (which is then refilled in the background).
    pub(crate) async fn call(
        &self,
        program: &Program,
        req: http::Request<Bytes>,
        opts: &CallOptions<'_>,
    ) -> Result<http::Response<Bytes>, RuntimeError> {
        let limits = opts.limits;
        let (parts, body) = req.into_parts();
        let env = sandbox::env(opts, &parts, body.len())?;
        let rlimits = sandbox::rlimits(&self.config, &limits);
        let Some(warm) = &self.warm else {
            let uid = self.uid()?;
            let sb = sandbox::spawn(&self.config, program, uid, rlimits, Start::Direct(&env))?;
            return sandbox::serve(sb, None, body, limits).await;
        };
        let block = sandbox::env_block(&env)?;
        let key = WarmKey {
            dir: program.dir.clone(),
            rlimits,
        };
        let sb = match warm.pool.take(&key) {
            Some(sb) => sb,
            None => {
                let uid = self.uid()?;
                let launcher = Start::Launcher(&warm.launcher);
                sandbox::spawn(&self.config, program, uid, rlimits, launcher)?
            }
        };
        self.refill(warm, key, program);
        sandbox::serve(sb, Some(block), body, limits).await
    }

    /// A uid for a call; when none is free, one idle warm sandbox gives its up.
    fn uid(&self) -> Result<UidLease, RuntimeError> {
        if let Some(u) = self.uids.take() {
            return Ok(u);
        }
        if self.warm.as_ref().is_some_and(|w| w.pool.evict_one()) {
            if let Some(u) = self.uids.take() {
                return Ok(u);
            }
        }
        Err(RuntimeError::Busy(self.config.uids))
    }

    /// Starts sandboxes for `key` in the background up to its target. They are spawned
    /// from a runtime worker thread, which lives as long as the runtime: bubblewrap's
    /// `--die-with-parent` watches the thread that forked it.
    fn refill(&self, warm: &Arc<Warm>, key: WarmKey, program: &Program) {
        let n = warm.pool.reserve(&key);
        if n == 0 {
            return;
        }
        let (config, uids, warm) = (self.config.clone(), self.uids.clone(), warm.clone());
        let program = program.clone();
        tokio::spawn(async move {
            for started in 0..n {
                let sb = uids
                    .take()
                    .ok_or(RuntimeError::Busy(config.uids))
                    .and_then(|uid| {
                        let launcher = Start::Launcher(&warm.launcher);
                        sandbox::spawn(&config, &program, uid, key.rlimits, launcher)
                    });
                match sb {
                    Ok(sb) => warm.pool.put(&key, sb),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not start a warm sandbox");
                        warm.pool.cancel(&key, n - started);
                        return;
                    }
                }
            }
        });
    }
}

/// The uids sandboxes run as: one per running call, handed out oldest-returned first so
/// a uid is reused as late as possible (a killed sandbox's last processes may take a
/// moment to be reaped).
#[derive(Debug)]
struct UidPool {
    free: Mutex<VecDeque<u32>>,
}

/// A uid in use; back to the pool when dropped.
pub(crate) struct UidLease {
    pool: Arc<UidPool>,
    pub(crate) uid: u32,
}

impl UidPool {
    fn new(base: u32, n: u32) -> Self {
        UidPool {
            free: Mutex::new((0..n).map(|i| base + i).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u32>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(self: &Arc<Self>) -> Option<UidLease> {
        let uid = self.lock().pop_front()?;
        Some(UidLease {
            pool: self.clone(),
            uid,
        })
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        self.pool.lock().push_back(self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_leased_one_per_call_and_reused_last() {
        let pool = Arc::new(UidPool::new(100, 2));
        let a = pool.take().expect("a");
        let b = pool.take().expect("b");
        assert_ne!(a.uid, b.uid);
        assert!(pool.take().is_none(), "all in use");
        let first = a.uid;
        drop(a);
        drop(b);
        let c = pool.take().expect("c");
        assert_eq!(c.uid, first, "oldest returned first");
    }
}
