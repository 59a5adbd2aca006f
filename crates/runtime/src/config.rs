//! Configuration of the runtime and of each call.

use std::path::PathBuf;
use std::time::Duration;

/// Which guest interface an artifact implements (the spec's `runtime` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestKind {
    /// A component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy` world).
    WasiHttp,
    /// A WASI preview1 command module speaking CGI on stdin/stdout.
    Wagi,
    /// A native x86-64 Linux program (`main` in a tar or zip) speaking CGI, run under
    /// bubblewrap; only when the runtime has a [`ProcessConfig`].
    Process,
}

impl GuestKind {
    /// The spec's spelling, also used in cache file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestKind::WasiHttp => "wasi-http",
            GuestKind::Wagi => "wagi",
            GuestKind::Process => "process",
        }
    }

    /// Parses the spec's `runtime` field; `None` for runtimes this crate does not run.
    pub fn parse(s: &str) -> Option<GuestKind> {
        match s {
            "wasi-http" => Some(GuestKind::WasiHttp),
            "wagi" => Some(GuestKind::Wagi),
            "process" => Some(GuestKind::Process),
            _ => None,
        }
    }
}

impl std::fmt::Display for GuestKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-call limits: what a spec asks for, capped by the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget for the whole call (instantiate, run, collect the response).
    pub timeout: Duration,
    /// Maximum size of each linear memory of the guest, in bytes.
    pub memory_bytes: usize,
    /// Maximum request body size; larger bodies are refused before the guest runs.
    pub max_request_bytes: usize,
    /// Maximum response body size; a guest writing more gets a 5xx answer instead.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    /// DESIGN defaults: 10 s, 128 MiB memory, 10 MiB request and response bodies.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10),
            memory_bytes: 128 << 20,
            max_request_bytes: 10 << 20,
            max_response_bytes: 10 << 20,
        }
    }
}

impl Limits {
    /// Caps every field of `self` (what a spec asks) by `cap` (what the provider allows).
    pub fn capped_by(self, cap: &Limits) -> Limits {
        Limits {
            timeout: self.timeout.min(cap.timeout),
            memory_bytes: self.memory_bytes.min(cap.memory_bytes),
            max_request_bytes: self.max_request_bytes.min(cap.max_request_bytes),
            max_response_bytes: self.max_response_bytes.min(cap.max_response_bytes),
        }
    }
}

/// Engine-wide settings, fixed for the life of a [`crate::Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled code is cached across restarts; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Concurrent guest instances; further calls get [`crate::RuntimeError::Busy`].
    pub max_instances: u32,
    /// The provider's caps on per-call limits; also sizes the pooling allocator's memory slots.
    pub max_limits: Limits,
    /// Bytes of each linear memory reset with memset instead of madvise when an instance
    /// ends: cheaper for the small memories typical functions use (fewer page faults and
    /// TLB shootdowns), costs RSS.
    pub memory_keep_resident: usize,
    /// Granularity of deadlines: how often the epoch ticker advances.
    pub epoch_tick: Duration,
    /// Bytes of compiled code kept linked in memory (least recently used out first):
    /// every distinct artifact a caller names costs its image here, so without a bound
    /// strangers could grow the node's memory one deployment at a time.
    pub max_memory_cache_bytes: u64,
    /// Bytes of `*.cwasm` files kept in the disk cache (least recently used deleted
    /// first), so the compiled code of many artifacts cannot fill the disk.
    pub max_disk_cache_bytes: u64,
    /// The `process` runtime (native programs under bubblewrap); `None` leaves it off,
    /// and preparing a `process` artifact is refused.
    pub process: Option<ProcessConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_instances: 64,
            max_limits: Limits::default(),
            memory_keep_resident: 2 << 20,
            epoch_tick: Duration::from_millis(10),
            max_memory_cache_bytes: 512 << 20,
            max_disk_cache_bytes: 4 << 30,
            process: None,
        }
    }
}

/// How native programs are unpacked and sandboxed. Every bound is here so an operator
/// can tighten it; the defaults suit a small CGI program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessConfig {
    /// The bubblewrap binary (Debian package `bubblewrap`).
    pub bwrap: PathBuf,
    /// Where artifacts are unpacked, one read-only directory per artifact CID, reused
    /// across calls and restarts.
    pub dir: PathBuf,
    /// Bytes of unpacked artifacts kept under `dir` (least recently used deleted first),
    /// so strangers naming many archives cannot fill the disk.
    pub max_disk_bytes: u64,
    /// Bounds on one archive (bytes unpacked, entries): a zip bomb stops here.
    pub unpack: crate::UnpackLimits,
    /// Size of the private `/tmp` of one call (a tmpfs, i.e. memory): the only writable
    /// place a program has.
    pub tmp_bytes: u64,
    /// `RLIMIT_NPROC` of a call's sandbox (bubblewrap's own processes included): a fork
    /// bomb stops here. It counts per uid, hence [`ProcessConfig::uid_base`].
    pub max_processes: u64,
    /// `RLIMIT_NOFILE` of each sandboxed process.
    pub max_open_files: u64,
    /// First of the uids sandboxes run as (outside their user namespace). Each call takes
    /// its own from `uid_base .. uid_base + uids`, so one call's processes never count
    /// against another's `RLIMIT_NPROC` and no sandbox can signal another; they must be
    /// uids nothing else on the host uses, below 2^31 (bubblewrap maps them one to one).
    pub uid_base: u32,
    /// How many uids from `uid_base` (at least `max_instances`; more delays reuse).
    pub uids: u32,
    /// Host directories bound read-only at the same path (e.g. `/usr`, `/lib`, `/lib64`
    /// for dynamically linked programs or scripts). Empty by default: the program sees
    /// nothing of the host, so artifacts must be static.
    pub host_dirs: Vec<PathBuf>,
    /// Sandboxes kept started ahead of their request per program (and limits), once the
    /// program has been called: each serves exactly one request, so this only moves
    /// sandbox start-up off the request's path. 0 turns the pool off.
    pub warm_per_program: usize,
    /// Started-ahead sandboxes in all, across programs: each holds a uid and a few
    /// processes' memory while it waits.
    pub max_warm: usize,
    /// How long a started-ahead sandbox may wait for a request before the next call that
    /// finds it stops it (checked lazily; `max_warm` bounds them meanwhile), so
    /// a program called once does not keep sandboxes forever.
    pub warm_idle: std::time::Duration,
}

impl ProcessConfig {
    /// Where artifacts are really unpacked: `dir` when every directory above it lets
    /// other users through (bubblewrap, running as the sandbox's uid, resolves the
    /// artifact's path itself), else a directory of the system's temp dir named after
    /// `dir`. Artifacts are public content (fetched by CID), so being readable there
    /// discloses nothing; the node's data dir stays closed.
    pub fn reachable_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let open = self.dir.ancestors().skip(1).all(|a| {
            a.as_os_str().is_empty()
                || std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
        });
        if open {
            return self.dir.clone();
        }
        use sha2::{Digest, Sha256};
        let tag: String = Sha256::digest(self.dir.as_os_str().as_encoded_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        std::env::temp_dir().join(format!("khachapuri-unpacked-{tag}"))
    }
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            bwrap: PathBuf::from("bwrap"),
            dir: PathBuf::from("unpacked"),
            max_disk_bytes: 4 << 30,
            unpack: crate::UnpackLimits::default(),
            tmp_bytes: 16 << 20,
            max_processes: 32,
            max_open_files: 64,
            uid_base: 1_800_000_000,
            uids: 1024,
            host_dirs: Vec::new(),
            warm_per_program: 0,
            max_warm: 16,
            warm_idle: std::time::Duration::from_secs(60),
        }
    }
}

/// What one call may use and see, besides the request itself.
///
/// Its `Debug` output shows env names but not their values (secrets of a sealed spec).
#[derive(Clone, Copy)]
pub struct CallOptions<'a> {
    /// Environment variables from the (decrypted) spec: the only env the guest sees.
    pub env: &'a [(String, String)],
    /// Limits for this call (already capped by the caller, see [`Limits::capped_by`]).
    pub limits: Limits,
    /// The path the guest sees: the request path after `/{cid}`, e.g. `/users/7`;
    /// empty means `/`. The query string is taken from the request URI.
    pub path: &'a str,
}

impl std::fmt::Debug for CallOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, _)| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("CallOptions")
            .field("env", &env)
            .field("limits", &self.limits)
            .field("path", &self.path)
            .finish()
    }
}

impl Default for CallOptions<'_> {
    fn default() -> Self {
        CallOptions {
            env: &[],
            limits: Limits::default(),
            path: "/",
        }
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn call_options_debug_never_shows_env_values() {
        let env = [("TOKEN".to_string(), "ghp_secret_value".to_string())];
        let opts = CallOptions {
            env: &env,
            ..CallOptions::default()
        };
        let out = format!("{opts:?}");
        assert!(!out.contains("ghp_secret_value"), "secret leaked: {out}");
        assert!(out.contains("TOKEN") && out.contains("<redacted>"), "{out}");
    }
}
