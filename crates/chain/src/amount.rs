//! Human USDC amounts: `"1.25"` ⇄ `1_250_000` base units (6 decimals).

use alloy::primitives::U256;

use crate::error::{ChainError, Result};

/// USDC (and MockUSDC) decimals: every on-chain amount is in millionths of a dollar.
pub const USDC_DECIMALS: u32 = 6;

const SCALE: u64 = 1_000_000;

/// Parses a human amount such as `10`, `1.25` or `0.000001` into base units.
///
/// Rejects signs, exponents, more than 6 decimals and empty input, so a typo can never
/// silently move a different amount of money.
pub fn parse_usdc(input: &str) -> Result<U256> {
    let bad = |reason| ChainError::InvalidAmount {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("empty"));
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("only digits and one '.' are allowed"));
    }
    if frac.len() > USDC_DECIMALS as usize {
        return Err(bad("USDC has at most 6 decimals"));
    }
    let whole = if whole.is_empty() {
        U256::ZERO
    } else {
        U256::from_str_radix(whole, 10).map_err(|_| bad("too large"))?
    };
    let mut frac_units: u64 = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_units += u64::from(b - b'0') * 10u64.pow(USDC_DECIMALS - 1 - i as u32);
    }
    whole
        .checked_mul(U256::from(SCALE))
        .and_then(|w| w.checked_add(U256::from(frac_units)))
        .ok_or_else(|| bad("too large"))
}

/// Formats base units as a human amount: `1250000` → `"1.25"`, `5000000` → `"5"`.
pub fn format_usdc(units: U256) -> String {
    let scale = U256::from(SCALE);
    let whole = units / scale;
    let frac = (units % scale).to::<u64>();
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_examples() {
        let ok = |s: &str, v: u64| assert_eq!(parse_usdc(s).expect(s), U256::from(v), "{s}");
        ok("1.25", 1_250_000);
        ok("10", 10_000_000);
        ok("0.000001", 1);
        ok(".5", 500_000);
        ok("5.", 5_000_000);
        ok(" 3 ", 3_000_000);
        for bad in [
            "",
            ".",
            "-1",
            "1.0000001",
            "1e6",
            "1,5",
            "abc",
            "1.2.3",
            "+1",
        ] {
            assert!(parse_usdc(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn formats_examples() {
        assert_eq!(format_usdc(U256::from(1_250_000u64)), "1.25");
        assert_eq!(format_usdc(U256::from(5_000_000u64)), "5");
        assert_eq!(format_usdc(U256::from(1u64)), "0.000001");
        assert_eq!(format_usdc(U256::ZERO), "0");
    }

    proptest! {
        #[test]
        fn round_trips(units in any::<u128>()) {
            let v = U256::from(units);
            prop_assert_eq!(parse_usdc(&format_usdc(v)).expect("parse"), v);
        }
    }
}
