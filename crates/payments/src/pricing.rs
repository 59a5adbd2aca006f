//! Prices of a call in micro base units (1e-6 of a token base unit, so 1e-12 USDC): a
//! millisecond of a small function costs far less than one base unit, and rounding each call
//! up to a whole unit would overcharge by orders of magnitude. Only vouchers (and what the
//! chain moves) are in whole base units; they round up.

use khachapuri_chain::U256;
use serde::{Deserialize, Serialize};

/// Micro-units in one token base unit.
pub const MICRO_PER_BASE: u64 = 1_000_000;

/// Bytes in the "MB" of `per_mb_out` (decimal megabyte, like the bandwidth bills).
const BYTES_PER_MB: u64 = 1_000_000;

/// What one call used, measured by the node after it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Wall-clock milliseconds the guest ran.
    pub millis: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

/// A provider's price list, in micro base units. `u64` fields so it fits TOML/JSON configs
/// (u64 micro-units go up to ~18 million USDC per item).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pricing {
    /// Flat price of each call.
    pub per_request: u64,
    /// Price of each millisecond of wall-clock run time.
    pub per_ms: u64,
    /// Price of each MB (1e6 bytes) of response body, charged pro rata per byte.
    pub per_mb_out: u64,
}

impl Pricing {
    /// Whether every call is free (the node can skip payment entirely).
    pub fn is_free(&self) -> bool {
        self.per_request == 0 && self.per_ms == 0 && self.per_mb_out == 0
    }

    /// Cost of a call that used `usage`, in micro-units (bytes rounded up pro rata).
    pub fn cost(&self, usage: Usage) -> U256 {
        let time = U256::from(self.per_ms) * U256::from(usage.millis);
        let bytes = U256::from(self.per_mb_out) * U256::from(usage.bytes_out);
        let bytes = bytes.div_ceil(U256::from(BYTES_PER_MB));
        U256::from(self.per_request) + time + bytes
    }

    /// The most a call can cost given its limits: what admission must see authorized
    /// before the call runs.
    pub fn max_cost(&self, timeout_ms: u64, max_response_bytes: u64) -> U256 {
        self.cost(Usage {
            millis: timeout_ms,
            bytes_out: max_response_bytes,
        })
    }
}

/// Micro-units → whole base units, rounding up: the voucher amount that covers `micro`.
pub fn micro_to_base_ceil(micro: U256) -> U256 {
    micro.div_ceil(U256::from(MICRO_PER_BASE))
}

/// Whole base units → micro-units (saturating; a U256 voucher cannot realistically overflow).
pub fn base_to_micro(base: U256) -> U256 {
    base.saturating_mul(U256::from(MICRO_PER_BASE))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Pricing = Pricing {
        per_request: 100,
        per_ms: 7,
        per_mb_out: 1_000_000,
    };

    #[test]
    fn cost_adds_the_three_parts() {
        assert_eq!(P.cost(Usage::default()), U256::from(100));
        assert_eq!(
            P.cost(Usage {
                millis: 10,
                bytes_out: 0
            }),
            U256::from(170)
        );
        // 1 MB out costs per_mb_out; a single byte costs per_mb_out / 1e6 = 1.
        assert_eq!(
            P.cost(Usage {
                millis: 0,
                bytes_out: 1_000_000
            }),
            U256::from(1_000_100)
        );
        assert_eq!(
            P.cost(Usage {
                millis: 0,
                bytes_out: 1
            }),
            U256::from(101)
        );
    }

    #[test]
    fn bytes_round_up() {
        let p = Pricing {
            per_request: 0,
            per_ms: 0,
            per_mb_out: 3,
        };
        // 3 micro per MB: one byte costs 3e-6 micro, charged as 1.
        assert_eq!(
            p.cost(Usage {
                millis: 0,
                bytes_out: 1
            }),
            U256::from(1)
        );
        assert_eq!(
            p.cost(Usage {
                millis: 0,
                bytes_out: 0
            }),
            U256::ZERO
        );
    }

    #[test]
    fn max_cost_bounds_every_cost_within_limits() {
        let max = P.max_cost(1000, 2_000_000);
        assert_eq!(max, U256::from(100 + 7000 + 2_000_000));
        for (ms, b) in [(0, 0), (1000, 0), (999, 2_000_000), (500, 1)] {
            assert!(
                P.cost(Usage {
                    millis: ms,
                    bytes_out: b
                }) <= max
            );
        }
    }

    #[test]
    fn no_overflow_at_extremes() {
        let p = Pricing {
            per_request: u64::MAX,
            per_ms: u64::MAX,
            per_mb_out: u64::MAX,
        };
        let c = p.max_cost(u64::MAX, u64::MAX);
        assert!(c > U256::from(u128::from(u64::MAX) * u128::from(u64::MAX) / 2));
        assert!(!p.is_free());
        assert!(Pricing::default().is_free());
    }

    #[test]
    fn vouchers_round_up_to_base_units() {
        assert_eq!(micro_to_base_ceil(U256::ZERO), U256::ZERO);
        assert_eq!(micro_to_base_ceil(U256::from(1)), U256::from(1));
        assert_eq!(micro_to_base_ceil(U256::from(1_000_000)), U256::from(1));
        assert_eq!(micro_to_base_ceil(U256::from(1_000_001)), U256::from(2));
        assert_eq!(base_to_micro(U256::from(3)), U256::from(3_000_000));
    }
}
