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
    /// Calls executing right now.
    pub in_flight: AtomicU64,
    /// Spec lookups answered from the in-memory cache.
    pub spec_cache_hits: AtomicU64,
    /// Spec lookups that had to fetch and parse the envelope.
    pub spec_cache_misses: AtomicU64,
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

    /// Renders every counter; `extra` lets the runtime append its own lines.
    pub fn render(&self, extra: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(1024);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        counter(
            "khachapuri_calls_ok_total",
            "Function calls that ran and answered.",
            "counter",
            load(&self.calls_ok),
        );
        counter(
            "khachapuri_calls_refused_total",
            "Calls refused before running.",
            "counter",
            load(&self.calls_refused),
        );
        counter(
            "khachapuri_calls_faulted_total",
            "Calls whose guest faulted (trap, deadline, memory, output).",
            "counter",
            load(&self.calls_faulted),
        );
        counter(
            "khachapuri_calls_busy_total",
            "Calls turned away with 503 because all instance slots were busy.",
            "counter",
            load(&self.calls_busy),
        );
        counter(
            "khachapuri_calls_in_flight",
            "Calls executing now.",
            "gauge",
            load(&self.in_flight),
        );
        counter(
            "khachapuri_spec_cache_hits_total",
            "Spec lookups served from memory.",
            "counter",
            load(&self.spec_cache_hits),
        );
        counter(
            "khachapuri_spec_cache_misses_total",
            "Spec lookups that fetched the envelope.",
            "counter",
            load(&self.spec_cache_misses),
        );
        for (name, help, value) in extra {
            counter(name, help, "counter", *value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        Metrics::inc(&m.calls_ok);
        Metrics::inc(&m.calls_ok);
        let text = m.render(&[("khachapuri_extra_total", "Extra.", 7)]);
        assert!(text.contains("\nkhachapuri_calls_ok_total 2\n"));
        assert!(text.contains("# TYPE khachapuri_calls_in_flight gauge"));
        assert!(text.ends_with("khachapuri_extra_total 7\n"));
    }
}
