//! Human USDC amounts: `"1.25"` ⇄ `1_250_000` base units (6 decimals).

use alloy::primitives::U256;

use crate::error::{ChainError, Result};

/// USDC (and MockUSDC) decimals: every on-chain amount is in millionths of a dollar.
pub const USDC_DECIMALS: u32 = 6;

/// Decimals of a micro base unit (1e-6 of a base unit, so 1e-12 USDC): the precision of
/// prices, the provider's ledger and receipts.
pub const MICRO_USDC_DECIMALS: u32 = 12;

/// Parses a human amount such as `10`, `1.25` or `0.000001` into base units.
///
/// Rejects signs, exponents, more than 6 decimals and empty input, so a typo can never
/// silently move a different amount of money.
pub fn parse_usdc(input: &str) -> Result<U256> {
    parse_fixed(input, USDC_DECIMALS)
}

/// Formats base units as a human amount: `1250000` → `"1.25"`, `5000000` → `"5"`.
pub fn format_usdc(units: U256) -> String {
    format_fixed(units, USDC_DECIMALS)
}

/// Parses a USDC amount with up to 12 decimals into micro base units (prices).
pub fn parse_micro_usdc(input: &str) -> Result<U256> {
    parse_fixed(input, MICRO_USDC_DECIMALS)
}

/// Formats micro base units as USDC: `100_000_000` → `"0.0001"`.
pub fn format_micro_usdc(micro: U256) -> String {
    format_fixed(micro, MICRO_USDC_DECIMALS)
}

/// The one decimal parser: `input` as a fixed-point number with `decimals` decimals, in
/// units of 10^-decimals. Digits and at most one `.` only; surrounding whitespace is
/// tolerated; overflow is an error.
pub fn parse_fixed(input: &str, decimals: u32) -> Result<U256> {
    let bad = |reason: &'static str| ChainError::InvalidAmount {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err(bad("empty"));
    }
    if !whole
        .bytes()
        .chain(frac.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(bad("only digits and one '.' are allowed"));
    }
    if frac.len() > decimals as usize {
        return Err(bad(if decimals == USDC_DECIMALS {
            "USDC has at most 6 decimals"
        } else {
            "too many decimals (1e-12 USDC is the smallest unit)"
        }));
    }
    let digits = format!("{whole}{frac:0<width$}", width = decimals as usize);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(U256::ZERO);
    }
    U256::from_str_radix(digits, 10).map_err(|_| bad("too large"))
}

/// The one decimal formatter: `units` of 10^-decimals as a number with trailing zeros
/// trimmed (`1250000`, 6 → `"1.25"`; `5000000`, 6 → `"5"`).
pub fn format_fixed(units: U256, decimals: u32) -> String {
    let text = units.to_string();
    let d = decimals as usize;
    let padded = format!("{text:0>width$}", width = d + 1);
    let (whole, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{frac}")
    }
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

    #[test]
    fn micro_amounts() {
        assert_eq!(format_micro_usdc(U256::from(100_000_000u64)), "0.0001");
        assert_eq!(format_micro_usdc(U256::from(1u64)), "0.000000000001");
        assert_eq!(
            parse_micro_usdc("0.000001").expect("parse"),
            U256::from(1_000_000u64)
        );
        assert!(parse_micro_usdc("0.0000000000001").is_err());
        assert_eq!(format_fixed(U256::ZERO, 0), "0");
        assert_eq!(parse_fixed("0.00", 6).expect("parse"), U256::ZERO);
    }

    proptest! {
        #[test]
        fn fixed_round_trips(units in any::<u128>(), decimals in 0u32..20) {
            let v = U256::from(units);
            prop_assert_eq!(parse_fixed(&format_fixed(v, decimals), decimals).expect("parse"), v);
        }

        #[test]
        fn round_trips(units in any::<u128>()) {
            let v = U256::from(units);
            prop_assert_eq!(parse_usdc(&format_usdc(v)).expect("parse"), v);
        }
    }
}
