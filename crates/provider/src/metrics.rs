//! Counters exported at `GET /metrics` in the Prometheus text format.
//!
//! Plain atomics rather than a metrics crate: the set is small and fixed, and the hot
//! path only does a relaxed increment.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Node-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Function calls answered, by outcome.
    pub calls_ok: AtomicU64,
    /// Calls refused before running (bad CID, unknown spec, payment, limits).
    pub calls_refused: AtomicU64,
    /// Guest faults (trap, deadline, memory, output too large).
    pub calls_faulted: AtomicU64,
    /// Calls turned away because every instance slot was busy.
    pub calls_busy: AtomicU64,
    /// Answers streamed to the client (slow or large), rather than buffered.
    pub calls_streamed: AtomicU64,
    /// Calls executing right now.
    pub in_flight: AtomicU64,
    /// Spec lookups answered from the in-memory cache.
    pub spec_cache_hits: AtomicU64,
    /// Spec lookups that had to fetch and parse the envelope.
    pub spec_cache_misses: AtomicU64,
    /// Artifacts fetched by CID (only ever after admission).
    pub artifact_fetches: AtomicU64,
}

impl Metrics {
    /// Increments a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Raises a gauge.
    pub fn inc_gauge(gauge: &AtomicU64) {
        gauge.fetch_add(1, Ordering::Relaxed);
    }

    /// Lowers a gauge.
    pub fn dec_gauge(gauge: &AtomicU64) {
        gauge.fetch_sub(1, Ordering::Relaxed);
    }

    /// Renders every counter, then the runtime's (compiles, cache hits, faults by kind).
    pub fn render(&self, rt: &khachapuri_runtime::MetricsSnapshot) -> String {
        let mut out = String::with_capacity(2048);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let plain = [
            (
                "khachapuri_calls_ok_total",
                "Function calls that ran and answered.",
                "counter",
                load(&self.calls_ok),
            ),
            (
                "khachapuri_calls_streamed_total",
                "Answers streamed as the function wrote them.",
                "counter",
                load(&self.calls_streamed),
            ),
            (
                "khachapuri_calls_refused_total",
                "Calls refused before running.",
                "counter",
                load(&self.calls_refused),
            ),
            (
                "khachapuri_calls_faulted_total",
                "Calls whose guest faulted (trap, deadline, memory, output).",
                "counter",
                load(&self.calls_faulted),
            ),
            (
                "khachapuri_calls_busy_total",
                "Calls turned away with 503 because all instance slots were busy.",
                "counter",
                load(&self.calls_busy),
            ),
            (
                "khachapuri_calls_in_flight",
                "Calls executing now.",
                "gauge",
                load(&self.in_flight),
            ),
            (
                "khachapuri_spec_cache_hits_total",
                "Spec lookups served from memory.",
                "counter",
                load(&self.spec_cache_hits),
            ),
            (
                "khachapuri_spec_cache_misses_total",
                "Spec lookups that fetched the envelope.",
                "counter",
                load(&self.spec_cache_misses),
            ),
            (
                "khachapuri_artifact_fetches_total",
                "Artifacts fetched by CID for compiling (after admission).",
                "counter",
                load(&self.artifact_fetches),
            ),
            (
                "khachapuri_runtime_calls_total",
                "Calls handed to the runtime.",
                "counter",
                rt.calls,
            ),
            (
                "khachapuri_runtime_compiles_total",
                "Artifacts compiled (cache misses).",
                "counter",
                rt.compiles,
            ),
            (
                "khachapuri_runtime_disk_cache_hits_total",
                "Compiled code loaded from disk.",
                "counter",
                rt.disk_hits,
            ),
            (
                "khachapuri_runtime_memory_cache_hits_total",
                "Prepared code found in memory.",
                "counter",
                rt.memory_hits,
            ),
        ];
        for (name, help, kind, value) in plain {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "khachapuri_runtime_faults_total";
        let _ = writeln!(
            out,
            "# HELP {name} Guest faults by kind.\n# TYPE {name} counter"
        );
        for (kind, value) in &rt.faults {
            let _ = writeln!(out, "{name}{{kind=\"{}\"}} {value}", kind.as_str());
        }
        out
    }
}

/// Appends the per-client signature-check limit's counters to `out`.
pub(crate) fn render_signature_limit(out: &mut String, s: crate::admission::SignatureLimitStats) {
    for (name, help, kind, value) in [
        (
            "khachapuri_signature_checks_limited_total",
            "Requests refused with 429 by the per-client limit on signature checks.",
            "counter",
            s.refused,
        ),
        (
            "khachapuri_signature_limit_tracked_clients",
            "Clients whose signature-check buckets are remembered.",
            "gauge",
            s.tracked_clients,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// Renders how full each bounded cache is (bytes, entries, cap, evictions), and what
/// block collection did: an operator sees a cap that is too small as steady evictions.
pub(crate) fn render_caches(u: &crate::NodeCacheUsage) -> String {
    let mut out = String::with_capacity(1024);
    let caches = [
        ("deployments", u.deployments),
        ("prepared", u.prepared),
        ("compiled_disk", u.compiled_disk),
        ("unpacked_disk", u.unpacked_disk),
    ];
    let blocks = khachapuri_runtime::CacheUsage {
        bytes: u.blocks.bytes,
        entries: u.blocks.blocks,
        cap: u.blocks.cap,
        evictions: u.blocks.collected_blocks,
    };
    let series = [
        (
            "khachapuri_cache_bytes",
            "Bytes held by each bounded cache.",
            "gauge",
        ),
        (
            "khachapuri_cache_entries",
            "Entries held by each bounded cache.",
            "gauge",
        ),
        (
            "khachapuri_cache_cap_bytes",
            "The byte cap of each cache.",
            "gauge",
        ),
        (
            "khachapuri_cache_evictions_total",
            "Entries evicted (or blocks collected) since start.",
            "counter",
        ),
    ];
    for (i, (name, help, kind)) in series.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (cache, c) in caches.iter().copied().chain([("blocks", blocks)]) {
            let v = [c.bytes, c.entries, c.cap, c.evictions][i];
            let _ = writeln!(out, "{name}{{cache=\"{cache}\"}} {v}");
        }
    }
    let name = "khachapuri_block_gc_runs_total";
    let _ = writeln!(
        out,
        "# HELP {name} Collections of the block cache.\n# TYPE {name} counter\n{name} {}",
        u.blocks.gc_runs
    );
    let name = "khachapuri_block_gc_collected_bytes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes of cached blocks collected.\n# TYPE {name} counter\n{name} {}",
        u.blocks.collected_bytes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::inc(&m.calls_ok);
        Metrics::inc(&m.calls_ok);
        let rt = khachapuri_runtime::MetricsSnapshot {
            compiles: 3,
            ..Default::default()
        };
        let text = m.render(&rt);
        assert!(text.contains("\nkhachapuri_calls_ok_total 2\n"), "{text}");
        assert!(text.contains("# TYPE khachapuri_calls_in_flight gauge"));
        assert!(
            text.contains("\nkhachapuri_runtime_compiles_total 3\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_cache_usage() {
        let mut u = crate::NodeCacheUsage::default();
        u.prepared.bytes = 42;
        u.blocks.cap = 7;
        u.blocks.gc_runs = 2;
        let text = render_caches(&u);
        assert!(
            text.contains("khachapuri_cache_bytes{cache=\"prepared\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("khachapuri_cache_cap_bytes{cache=\"blocks\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("\nkhachapuri_block_gc_runs_total 2\n"),
            "{text}"
        );
    }
}
