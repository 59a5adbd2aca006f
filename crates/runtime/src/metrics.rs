//! Counters the node exports on `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::FaultKind;

/// Lock-free counters, updated on every call and preparation.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: AtomicU64,
    faults: [AtomicU64; FaultKind::ALL.len()],
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Calls started (including those that faulted).
    pub calls: u64,
    /// Faults by kind, in [`FaultKind::ALL`] order.
    pub faults: Vec<(FaultKind, u64)>,
    /// Preparations answered from the in-memory `InstancePre` cache.
    pub memory_hits: u64,
    /// Preparations answered by loading compiled code from the disk cache.
    pub disk_hits: u64,
    /// Preparations that had to compile (cache misses).
    pub compiles: u64,
}

impl MetricsSnapshot {
    /// The count of one fault kind.
    pub fn fault(&self, kind: FaultKind) -> u64 {
        self.faults
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }
}

impl Metrics {
    pub(crate) fn call(&self) {
        self.calls.fetch_add(1, Relaxed);
    }
    pub(crate) fn fault(&self, kind: FaultKind) {
        self.faults[kind.index()].fetch_add(1, Relaxed);
    }
    pub(crate) fn memory_hit(&self) {
        self.memory_hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn disk_hit(&self) {
        self.disk_hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn compile(&self) {
        self.compiles.fetch_add(1, Relaxed);
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            calls: self.calls.load(Relaxed),
            faults: FaultKind::ALL
                .iter()
                .map(|k| (*k, self.faults[k.index()].load(Relaxed)))
                .collect(),
            memory_hits: self.memory_hits.load(Relaxed),
            disk_hits: self.disk_hits.load(Relaxed),
            compiles: self.compiles.load(Relaxed),
        }
    }
}
