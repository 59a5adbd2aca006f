//! The `Khachapuri-Payment` header: base64url (no padding) of the JSON
//! `{"payer","provider","epoch","amount","signature"}`, `amount` a decimal string and
//! `signature` 0x-hex, so any EIP-712 signer plus a few lines of script can produce it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use khachapuri_chain::SignedVoucher;

use crate::error::{PaymentError, Result};

/// Request header carrying a signed voucher.
pub const PAYMENT_HEADER: &str = "Khachapuri-Payment";
/// Response header carrying the receipt (cost, consumed).
pub const RECEIPT_HEADER: &str = "Khachapuri-Receipt";

/// Longest header value accepted: a voucher encodes to ~350 bytes; anything far larger is
/// garbage and is refused before decoding so it cannot cost memory.
const MAX_HEADER_LEN: usize = 4096;

/// Encodes a signed voucher as a header value.
pub fn encode_payment(voucher: &SignedVoucher) -> String {
    // Serializing a struct of addresses, integers and bytes cannot fail.
    let json = serde_json::to_vec(voucher).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a header value into a signed voucher (not yet verified). Tolerates surrounding
/// whitespace and `=` padding; refuses anything else with a message saying what is wrong.
pub fn decode_payment(value: &str) -> Result<SignedVoucher> {
    let bad = |m: String| PaymentError::MalformedHeader(m);
    let value = value.trim();
    if value.is_empty() {
        return Err(bad("empty value".into()));
    }
    if value.len() > MAX_HEADER_LEN {
        return Err(bad(format!(
            "{} bytes, at most {MAX_HEADER_LEN} expected",
            value.len()
        )));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|e| bad(format!("not base64url: {e}")))?;
    let mut voucher: SignedVoucher = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "not the JSON {{payer, provider, epoch, amount, signature}}: {e}"
        ))
    })?;
    if voucher.signature.len() != 65 {
        return Err(bad(format!(
            "signature must be 65 bytes (r, s, v), got {}",
            voucher.signature.len()
        )));
    }
    // Everything downstream (ledger, settlement) sees the one form the escrow redeems.
    voucher
        .canonicalize()
        .map_err(|e| bad(format!("signature: {e}")))?;
    Ok(voucher)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use khachapuri_chain::{Address, Voucher, U256};
    use khachapuri_devnet::dev_signer;
    use proptest::prelude::*;

    fn sample(epoch: u64, amount: u128, sig: Vec<u8>) -> SignedVoucher {
        SignedVoucher {
            voucher: Voucher {
                payer: Address::repeat_byte(1),
                provider: Address::repeat_byte(2),
                epoch,
                amount: U256::from(amount),
            },
            signature: sig,
        }
    }

    /// A signature-shaped value in the escrow's form: r = 0x0707…, low s = 0x0101…, v = 27.
    fn sig_bytes() -> Vec<u8> {
        let mut sig = vec![7; 32];
        sig.extend([1; 32]);
        sig.push(27);
        sig
    }

    #[test]
    fn malleated_signatures_decode_to_the_escrow_form() {
        let s = dev_signer(1);
        let escrow = Address::repeat_byte(0xEE);
        let v = Voucher {
            payer: s.address(),
            provider: Address::repeat_byte(2),
            epoch: 0,
            amount: U256::from(9u64),
        };
        let signed = v.sign(&s, 31337, escrow).unwrap();
        let mut low_v = signed.clone();
        low_v.signature[64] -= 27;
        assert_eq!(decode_payment(&encode_payment(&low_v)).unwrap(), signed);
        let mut bad_v = signed.clone();
        bad_v.signature[64] = 2;
        assert!(decode_payment(&encode_payment(&bad_v)).is_err());
    }

    #[test]
    fn real_voucher_round_trips_and_verifies() {
        let s = dev_signer(1);
        let escrow = Address::repeat_byte(0xEE);
        let v = Voucher {
            payer: s.address(),
            provider: Address::repeat_byte(2),
            epoch: 7,
            amount: U256::from(1_500_000u64),
        };
        let signed = v.sign(&s, 31337, escrow).unwrap();
        let header = encode_payment(&signed);
        assert!(!header.contains('=') && !header.contains('+') && !header.contains('/'));
        let back = decode_payment(&header).unwrap();
        assert_eq!(back, signed);
        back.verify(31337, escrow).unwrap();
        // Padding and whitespace are tolerated.
        assert_eq!(decode_payment(&format!(" {header}== ")).unwrap(), signed);
    }

    #[test]
    fn wire_form_is_the_documented_json() {
        let sv = sample(3, 42, sig_bytes());
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encode_payment(&sv)).unwrap()).unwrap();
        assert_eq!(json["amount"], "42");
        assert_eq!(json["epoch"], 3);
        assert_eq!(
            json["payer"].as_str().unwrap().to_lowercase(),
            format!("0x{}", "01".repeat(20))
        );
        assert!(json["signature"].as_str().unwrap().starts_with("0x07"));
        // A hand-written header (what a script would produce) decodes.
        let sig = format!("{}{}1b", "07".repeat(32), "01".repeat(32));
        let hand = format!(
            r#"{{"payer":"0x{p}","provider":"0x{q}","epoch":3,"amount":"42","signature":"0x{s}"}}"#,
            p = "01".repeat(20),
            q = "02".repeat(20),
            s = sig
        );
        assert_eq!(decode_payment(&URL_SAFE_NO_PAD.encode(hand)).unwrap(), sv);
    }

    #[test]
    fn malformed_inputs_are_explained() {
        let msg = |v: &str| match decode_payment(v) {
            Err(PaymentError::MalformedHeader(m)) => m,
            other => panic!("expected MalformedHeader for {v:?}, got {other:?}"),
        };
        assert!(msg("").contains("empty"));
        assert!(msg("!!!").contains("base64url"));
        assert!(msg(&URL_SAFE_NO_PAD.encode("{}")).contains("JSON"));
        assert!(msg(&"A".repeat(5000)).contains("at most"));
        let short = encode_payment(&sample(1, 1, vec![1; 64]));
        assert!(msg(&short).contains("65 bytes"));
        let neg = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"payer":"0x{p}","provider":"0x{p}","epoch":1,"amount":"-1","signature":"0x{s}"}}"#,
            p = "01".repeat(20),
            s = "07".repeat(65)
        ));
        assert!(msg(&neg).contains("JSON"));
    }

    proptest! {
        #[test]
        fn round_trips(epoch in any::<u64>(), amount in any::<u128>(), sig in proptest::collection::vec(any::<u8>(), 65)) {
            // Any 65 bytes decode to their canonical form, or are refused when they are no
            // signature at all (bad recovery byte, zero r or s).
            let sv = sample(epoch, amount, sig);
            let mut canonical = sv.clone();
            match canonical.canonicalize() {
                Ok(()) => prop_assert_eq!(decode_payment(&encode_payment(&sv)).unwrap(), canonical),
                Err(_) => prop_assert!(decode_payment(&encode_payment(&sv)).is_err()),
            }
        }

        #[test]
        fn garbage_never_panics(s in ".{0,600}") {
            let _ = decode_payment(&s);
        }

        #[test]
        fn base64_of_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_payment(&URL_SAFE_NO_PAD.encode(bytes));
        }
    }
}
