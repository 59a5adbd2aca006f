//! The one wasmtime `Engine`, its epoch ticker and its fingerprint.

use std::hash::{Hash, Hasher};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::{RuntimeConfig, RuntimeError};

/// Core instances a component may need: its modules plus the adapter shims
/// (`wasm32-wasip2` Rust components use 3-4).
const CORE_INSTANCES_PER_SLOT: u32 = 16;
/// Linear memories per instance slot (components usually have one or two).
const MEMORIES_PER_SLOT: u32 = 4;

/// Builds the engine: pooling allocator sized for `max_instances`, epoch interruption.
pub(crate) fn build_engine(config: &RuntimeConfig) -> Result<Engine, RuntimeError> {
    let n = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .total_memories(n.saturating_mul(MEMORIES_PER_SLOT))
        .total_tables(n.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .total_stacks(n)
        .max_memory_size(config.max_limits.memory_bytes)
        .linear_memory_keep_resident(config.memory_keep_resident)
        .table_keep_resident(64 << 10)
        // Linux 6.7+: reset only the pages an instance dirtied (memset within the
        // keep-resident window) instead of the whole window; falls back when absent.
        .pagemap_scan(Enabled::Auto);

    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&cfg).map_err(|e| RuntimeError::Internal(format!("engine setup: {e:#}")))
}

/// A short hex digest of everything that makes compiled code (in)compatible with this
/// engine: wasmtime version, compiler settings, target. Part of every disk-cache key.
pub(crate) fn fingerprint(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0 // unused: we read the full digest below
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = h.0.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Advances the engine's epoch every tick on a background thread, for deadlines.
/// Stops (and joins the thread) when dropped.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<EpochTicker, RuntimeError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("khachapuri-epoch".into())
            .spawn(move || {
                // Any message or a dropped sender ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| RuntimeError::Internal(format!("epoch ticker thread: {e}")))?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
