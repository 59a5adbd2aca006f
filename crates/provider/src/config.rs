//! The provider node's typed configuration, resolved once by the CLI
//! (defaults → file → env → flags) and validated before anything binds a port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{P2pSection, PaymentsConfig, ProviderError};

/// Everything the node needs; every field says why it exists.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where to listen; loopback by default so a fresh node is not exposed by accident.
    pub listen: SocketAddr,
    /// Registry name, shown at `/.well-known/khachapuri`.
    pub name: String,
    /// Operator address (0x-hex) once a wallet is configured; specs sealed to another
    /// address are refused.
    pub address: Option<String>,
    /// The node's X25519 secret key (hex file written by `provider register` / `dev`):
    /// without it, specs sealed to this node's address cannot be opened.
    pub x25519_key_file: Option<PathBuf>,
    /// Blocks fetched from gateways and compiled code live here.
    pub data_dir: PathBuf,
    /// Trustless gateways to fetch specs and artifacts from, after the local store.
    pub gateways: Vec<String>,
    /// Serve every call without payment (dev `--free`, or a free public provider).
    pub free: bool,
    /// Concurrent guest instances; beyond it callers get 503 + Retry-After.
    pub max_instances: usize,
    /// Cap on a spec's requested timeout, and the default when it asks none.
    pub max_timeout_ms: u64,
    /// Default timeout when the spec asks none.
    pub default_timeout_ms: u64,
    /// Cap on linear memory per instance (MiB).
    pub max_memory_mb: u64,
    /// Default memory when the spec asks none (MiB).
    pub default_memory_mb: u64,
    /// Time a connection has to send a request's head (ms); slower ones are closed.
    pub header_read_timeout_ms: u64,
    /// Time a request body has to arrive in full (ms).
    pub body_read_timeout_ms: u64,
    /// On shutdown, how long in-flight calls may still finish (ms).
    pub drain_timeout_ms: u64,
    /// Cap on request bodies (bytes); larger gets 413.
    pub max_request_bytes: u64,
    /// Cap on response bodies (bytes); larger is a guest fault.
    pub max_response_bytes: u64,
    /// How long (ms) the node waits for a complete answer before streaming it: quick
    /// answers go out whole with their receipt in a header, slow ones (server-sent
    /// events, long downloads) reach the client as the guest writes them.
    pub stream_after_ms: u64,
    /// Most bytes of one answer held in memory before it streams instead.
    pub stream_after_bytes: u64,
    /// Past the call's own time budget, how long (ms) a streamed answer may take to reach
    /// a slow client before the node gives up on it.
    pub stream_write_timeout_ms: u64,
    /// Cap on an artifact fetched by CID (bytes).
    pub max_artifact_bytes: u64,
    /// Cap on an envelope/spec fetched by CID (bytes): read before payment, so it is
    /// small, not the artifact's cap.
    pub max_spec_bytes: u64,
    /// Bytes of opened (decrypted) specs kept in memory, least recently used out first:
    /// anyone can name a fresh deployment, so the cache must not grow with their number.
    pub max_cached_spec_bytes: u64,
    /// Envelope/spec fetches running at once: they happen before payment, so a stranger
    /// naming many fresh CIDs gets 503 + Retry-After past it instead of unbounded fetches.
    pub max_concurrent_spec_fetches: usize,
    /// Bytes of linked compiled code kept in memory (least recently used out first):
    /// each artifact's image costs memory for as long as it stays hot.
    pub max_compiled_memory_bytes: u64,
    /// Bytes of compiled code cached on disk under `data_dir/compiled` (least recently
    /// used deleted first), so many artifacts cannot fill the disk.
    pub max_compiled_disk_bytes: u64,
    /// Bytes of blocks fetched from gateways cached under `data_dir/blocks` (least
    /// recently used collected first; pinned blocks are never collected).
    pub max_block_cache_bytes: u64,
    /// Timeout of each fetch from a gateway.
    pub fetch_timeout_ms: u64,
    /// Links one walk of untrusted content may follow, duplicates included.
    pub max_walk_blocks: u64,
    /// Deepest DAG nesting a walk accepts.
    pub max_walk_depth: u32,
    /// Deadline of one whole DAG fetch or walk (ms).
    pub walk_timeout_ms: u64,
    /// Artifact fetch + compiles running at once (each takes a core).
    pub max_concurrent_compiles: usize,
    /// Calls waiting for a compile slot; beyond it they get 503 + Retry-After.
    pub max_queued_compiles: usize,
    /// Budget from a call's arrival at the compile gate to prepared code (ms).
    pub compile_timeout_ms: u64,
    /// The runtimes this node runs and advertises (`wasi-http`, `wagi`, `process`); a
    /// spec asking for another gets 501. `process` (native programs under bubblewrap)
    /// is opt-in: it runs code compiled by strangers on the host kernel, so an operator
    /// enables it deliberately (`khachapuri dev` does, on the developer's own machine).
    pub runtimes: Vec<String>,
    /// The bubblewrap binary the `process` runtime sandboxes programs with.
    pub bwrap: PathBuf,
    /// Bytes of unpacked `process` artifacts kept under `data_dir/unpacked` (least
    /// recently used deleted first), so many archives cannot fill the disk.
    pub max_unpacked_disk_bytes: u64,
    /// Bytes one `process` archive may unpack to (counted as decompressed): a zip bomb
    /// stops here.
    pub max_unpacked_bytes: u64,
    /// Entries one `process` archive may hold.
    pub max_archive_entries: u64,
    /// Size of the private `/tmp` of one `process` call (tmpfs: memory).
    pub process_tmp_bytes: u64,
    /// Processes one `process` call may have at once (`RLIMIT_NPROC`): stops fork bombs.
    pub process_max_processes: u64,
    /// Open files per sandboxed process (`RLIMIT_NOFILE`).
    pub process_max_open_files: u64,
    /// First of the otherwise unused uids `process` sandboxes run as, one per running
    /// call (below 2^31); see `process_uids`.
    pub process_uid_base: u32,
    /// How many uids from `process_uid_base` (at least `max_instances`).
    pub process_uids: u32,
    /// Host directories bound read-only into every `process` sandbox (e.g. `/usr`,
    /// `/lib`, `/lib64` to allow dynamically linked programs); none by default, so
    /// programs must be static and see nothing of the host.
    pub process_host_dirs: Vec<PathBuf>,
    /// `process` sandboxes started ahead of their request per called program (each still
    /// serves one request; this only moves bubblewrap's start-up off the request's path,
    /// see bench/README.md: at low load it halves p50 and doubles req/s). 0 starts each
    /// on arrival.
    pub process_warm_per_program: usize,
    /// Started-ahead `process` sandboxes in all (each holds a uid and a little memory).
    pub process_max_warm: usize,
    /// How long a started-ahead sandbox waits for a request before it is stopped (ms),
    /// checked lazily at the next `process` call.
    pub process_warm_idle_ms: u64,
    /// How calls are paid (chain, escrow, prices, operator key); absent or `free = true`
    /// means every call is free.
    pub payments: Option<PaymentsConfig>,
    /// Publisher ↔ provider over libp2p beside HTTP; absent means off.
    pub p2p: Option<P2pSection>,
}

/// The runtimes a node can run; `process` only when listed in [`NodeConfig::runtimes`].
pub const KNOWN_RUNTIMES: [&str; 3] = ["wasi-http", "wagi", "process"];

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            name: "local".into(),
            address: None,
            x25519_key_file: None,
            data_dir: PathBuf::from("provider"),
            gateways: Vec::new(),
            free: false,
            max_instances: 64,
            max_timeout_ms: 60_000,
            default_timeout_ms: 10_000,
            max_memory_mb: 512,
            default_memory_mb: 128,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            drain_timeout_ms: 30_000,
            max_request_bytes: 10 * 1024 * 1024,
            max_response_bytes: 32 * 1024 * 1024,
            stream_after_ms: 100,
            stream_after_bytes: 256 * 1024,
            stream_write_timeout_ms: 30_000,
            max_artifact_bytes: 256 * 1024 * 1024,
            max_spec_bytes: 256 * 1024,
            max_cached_spec_bytes: 64 << 20,
            max_concurrent_spec_fetches: 16,
            max_compiled_memory_bytes: 512 << 20,
            max_compiled_disk_bytes: 4 << 30,
            max_block_cache_bytes: 10 << 30,
            fetch_timeout_ms: 30_000,
            max_walk_blocks: 100_000,
            max_walk_depth: 32,
            walk_timeout_ms: 60_000,
            max_concurrent_compiles: 2,
            max_queued_compiles: 32,
            compile_timeout_ms: 120_000,
            runtimes: vec!["wasi-http".into(), "wagi".into()],
            bwrap: PathBuf::from("bwrap"),
            max_unpacked_disk_bytes: 4 << 30,
            max_unpacked_bytes: 512 << 20,
            max_archive_entries: 10_000,
            process_tmp_bytes: 16 << 20,
            process_max_processes: 32,
            process_max_open_files: 64,
            process_uid_base: 1_800_000_000,
            process_uids: 1024,
            process_host_dirs: Vec::new(),
            process_warm_per_program: 2,
            process_max_warm: 16,
            process_warm_idle_ms: 60_000,
            payments: None,
            p2p: None,
        }
    }
}

impl NodeConfig {
    /// Rejects configurations that would only fail later, before any port is bound.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let bad = |m: &str| Err(ProviderError::Config(m.to_string()));
        if let Some(p2p) = &self.p2p {
            p2p.to_p2p_config()?;
        }
        if self.max_instances == 0 {
            return bad("max_instances must be at least 1");
        }
        if self.default_timeout_ms == 0 || self.default_timeout_ms > self.max_timeout_ms {
            return bad("default_timeout_ms must be between 1 and max_timeout_ms");
        }
        if self.default_memory_mb == 0 || self.default_memory_mb > self.max_memory_mb {
            return bad("default_memory_mb must be between 1 and max_memory_mb");
        }
        if self.max_memory_mb > 4096 {
            return bad("max_memory_mb cannot exceed 4096 (32-bit linear memory)");
        }
        if self.max_spec_bytes == 0 || self.max_spec_bytes > self.max_artifact_bytes {
            return bad("max_spec_bytes must be between 1 and max_artifact_bytes");
        }
        if self.max_walk_blocks == 0 || self.max_walk_depth == 0 || self.walk_timeout_ms == 0 {
            return bad("max_walk_blocks, max_walk_depth and walk_timeout_ms must be at least 1");
        }
        if self.header_read_timeout_ms == 0 || self.body_read_timeout_ms == 0 {
            return bad("header_read_timeout_ms and body_read_timeout_ms must be at least 1");
        }
        if self.stream_after_bytes == 0 || self.stream_write_timeout_ms == 0 {
            return bad("stream_after_bytes and stream_write_timeout_ms must be at least 1");
        }
        if self.max_concurrent_compiles == 0 || self.compile_timeout_ms == 0 {
            return bad("max_concurrent_compiles and compile_timeout_ms must be at least 1");
        }
        if self.max_concurrent_spec_fetches == 0 {
            return bad("max_concurrent_spec_fetches must be at least 1");
        }
        if self.max_cached_spec_bytes == 0
            || self.max_compiled_memory_bytes == 0
            || self.max_compiled_disk_bytes == 0
        {
            return bad("max_cached_spec_bytes, max_compiled_memory_bytes and max_compiled_disk_bytes must be at least 1");
        }
        // Every artifact fetch passes through the block cache: smaller than one artifact,
        // a fetch would collect its own blocks before reading them.
        if self.max_block_cache_bytes < self.max_artifact_bytes.saturating_mul(2) {
            return bad("max_block_cache_bytes must be at least twice max_artifact_bytes");
        }
        for r in &self.runtimes {
            if !KNOWN_RUNTIMES.contains(&r.as_str()) {
                return Err(ProviderError::Config(format!(
                    "unknown runtime {r:?} in runtimes (known: {})",
                    KNOWN_RUNTIMES.join(", ")
                )));
            }
        }
        if self.runs("process") {
            if self.process_warm_per_program > 0
                && (self.process_uids as usize) < self.max_instances + self.process_max_warm
            {
                return bad(
                    "process_uids must be at least max_instances + process_max_warm (one uid per running call or waiting sandbox)",
                );
            }
            if self.process_warm_per_program > 0 && self.process_warm_idle_ms == 0 {
                return bad(
                    "process_warm_idle_ms must be at least 1 when process_warm_per_program is set",
                );
            }
            if (self.process_uids as usize) < self.max_instances {
                return bad(
                    "process_uids must be at least max_instances (one uid per running call)",
                );
            }
            if u64::from(self.process_uid_base) + u64::from(self.process_uids) > 1 << 31 {
                return bad("process_uid_base + process_uids must stay below 2^31");
            }
            if self.process_tmp_bytes == 0
                || self.process_max_processes == 0
                || self.process_max_open_files < 8
            {
                return bad("process_tmp_bytes and process_max_processes must be at least 1, process_max_open_files at least 8");
            }
        }
        if let (Some(p), false) = (&self.payments, self.free) {
            p.validate()?;
        }
        for g in &self.gateways {
            if !(g.starts_with("http://") || g.starts_with("https://")) {
                return Err(ProviderError::Config(format!(
                    "gateway {g:?} must be an http:// or https:// URL"
                )));
            }
        }
        Ok(())
    }

    /// Every known runtime, `process` only when bubblewrap runs on this machine: what
    /// the providers of `khachapuri dev` (the developer's own machine) enable. Runs
    /// `bwrap --version` once (a few milliseconds, at startup).
    pub fn local_runtimes() -> Vec<String> {
        let bwrap = Self::default().bwrap;
        let ok = std::process::Command::new(&bwrap)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            tracing::warn!("bubblewrap (bwrap) not found: the `process` runtime stays off (install it with scripts/setup)");
        }
        KNOWN_RUNTIMES
            .iter()
            .filter(|r| ok || **r != "process")
            .map(|r| (*r).to_string())
            .collect()
    }

    /// Whether `runtime` (the spec's spelling) is enabled on this node.
    pub fn runs(&self, runtime: &str) -> bool {
        self.runtimes.iter().any(|r| r == runtime)
    }

    /// The `process` runtime's settings, when it is enabled.
    pub fn process_config(&self) -> Option<khachapuri_runtime::ProcessConfig> {
        if !self.runs("process") {
            return None;
        }
        Some(khachapuri_runtime::ProcessConfig {
            bwrap: self.bwrap.clone(),
            dir: self.data_dir.join("unpacked"),
            max_disk_bytes: self.max_unpacked_disk_bytes,
            unpack: khachapuri_runtime::UnpackLimits {
                max_bytes: self.max_unpacked_bytes,
                max_entries: self.max_archive_entries,
            },
            tmp_bytes: self.process_tmp_bytes,
            max_processes: self.process_max_processes,
            max_open_files: self.process_max_open_files,
            uid_base: self.process_uid_base,
            uids: self.process_uids,
            host_dirs: self.process_host_dirs.clone(),
            warm_per_program: self.process_warm_per_program,
            max_warm: self.process_max_warm,
            warm_idle: Duration::from_millis(self.process_warm_idle_ms),
        })
    }

    /// Fetch timeout as a duration.
    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_millis(self.fetch_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_loopback() {
        let c = NodeConfig::default();
        c.validate().expect("valid");
        assert!(c.listen.ip().is_loopback());
    }

    #[test]
    fn catches_bad_values() {
        let c = NodeConfig {
            max_instances: 0,
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err());
        let c = NodeConfig {
            gateways: vec!["ftp://x".into()],
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err());
        let c = NodeConfig {
            default_timeout_ms: 120_000,
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err());
        let c = NodeConfig {
            runtimes: vec!["docker".into()],
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err(), "unknown runtimes are refused");
        let c = NodeConfig {
            runtimes: vec!["process".into()],
            process_uids: 4,
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err(), "fewer uids than instances");
        assert!(
            NodeConfig::default().process_config().is_none(),
            "process is opt-in"
        );
        let parsed: Result<NodeConfig, _> = toml::from_str("listen = \"127.0.0.1:0\"\nbogus = 1");
        assert!(parsed.is_err(), "unknown keys are refused");
    }
}
