//! The `Khachapuri-Receipt` header: what a call cost and where the channel stands, in
//! micro base units, so a client can re-sign before its prepaid part runs out; and, for a
//! caller that asked with `Khachapuri-Sign-Receipt: <request id>`, the operator's EIP-712
//! signature over (payer, provider, epoch, consumed, call hash) — evidence the payer keeps
//! to hold the provider to what it charged (see [`khachapuri_chain::ReceiptClaim`]).
//!
//! Signing costs the provider one ECDSA signature per call, so it happens only on request:
//! high-throughput clients that do not ask pay nothing for it.

use khachapuri_chain::{alloy_hex, call_hash, Address, ChainError, ReceiptClaim, B256, U256};

use crate::error::{PaymentError, Result};
use crate::ledger::Charge;

/// Request header asking for a signed receipt; its value is the caller's request id.
pub const SIGN_RECEIPT_HEADER: &str = "Khachapuri-Sign-Receipt";

/// Longest request id accepted (the id is hashed into the receipt; more buys nothing).
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// A request id is 1 to [`MAX_REQUEST_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`, so it
/// travels unchanged through headers and proxies.
pub fn check_request_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PaymentError::MalformedHeader(format!(
            "{SIGN_RECEIPT_HEADER} must be 1-{MAX_REQUEST_ID_LEN} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// The signed part of a receipt: which channel, the call hash, the operator's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptProof {
    /// Whose channel paid.
    pub payer: Address,
    /// The channel epoch.
    pub epoch: u64,
    /// `call_hash(request_id, cost)`.
    pub call: B256,
    /// r ‖ s ‖ v of the operator over the EIP-712 `Receipt`.
    pub signature: [u8; 65],
}

impl ReceiptProof {
    /// A proof from a 65-byte signature.
    pub fn new(payer: Address, epoch: u64, call: B256, signature: &[u8]) -> Result<Self> {
        let signature = signature
            .try_into()
            .map_err(|_| PaymentError::BadReceipt("the signature is not 65 bytes".into()))?;
        Ok(Self {
            payer,
            epoch,
            call,
            signature,
        })
    }
}

/// A parsed `Khachapuri-Receipt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// This call's cost.
    pub cost: U256,
    /// Consumed in the channel so far, this call included.
    pub consumed: U256,
    /// Authorized by the best voucher.
    pub authorized: U256,
    /// The operator's signature, when the caller asked for one.
    pub proof: Option<ReceiptProof>,
    /// The call was paid by a deployment's sponsor: the figures are the sponsor's channel,
    /// not the caller's, and a caller's state must not take them.
    pub sponsored: bool,
}

impl From<Charge> for Receipt {
    fn from(c: Charge) -> Self {
        Self {
            cost: c.cost,
            consumed: c.consumed,
            authorized: c.authorized,
            proof: None,
            sponsored: false,
        }
    }
}

impl Receipt {
    /// Header value: `cost=…; consumed=…; authorized=…` (decimal micro-units), then
    /// `; sponsored=1` for a sponsor-paid call, and for a signed receipt
    /// `; payer=0x…; epoch=…; call=0x…; sig=0x…`.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "cost={}; consumed={}; authorized={}",
            self.cost, self.consumed, self.authorized
        );
        if self.sponsored {
            out.push_str("; sponsored=1");
        }
        if let Some(p) = &self.proof {
            out.push_str(&format!(
                "; payer={}; epoch={}; call={}; sig={}",
                p.payer,
                p.epoch,
                p.call,
                alloy_hex::encode_prefixed(p.signature)
            ));
        }
        out
    }

    /// Parses a header value (unknown keys are ignored, missing ones are an error; a
    /// signature part must be complete).
    pub fn parse(value: &str) -> Result<Self> {
        let bad = |m: String| PaymentError::MalformedHeader(format!("receipt {m}"));
        let (mut cost, mut consumed, mut authorized) = (None, None, None);
        let (mut payer, mut epoch, mut call, mut sig) = (None, None, None, None);
        let mut sponsored = false;
        for part in value.split(';') {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let num = || U256::from_str_radix(v, 10).map_err(|e| bad(format!("{k}: {e}")));
            match k {
                "cost" => cost = Some(num()?),
                "consumed" => consumed = Some(num()?),
                "authorized" => authorized = Some(num()?),
                "payer" => {
                    payer = Some(
                        v.parse::<Address>()
                            .map_err(|e| bad(format!("payer: {e}")))?,
                    )
                }
                "epoch" => epoch = Some(v.parse::<u64>().map_err(|e| bad(format!("epoch: {e}")))?),
                "call" => call = Some(v.parse::<B256>().map_err(|e| bad(format!("call: {e}")))?),
                "sig" => sig = Some(alloy_hex::decode(v).map_err(|e| bad(format!("sig: {e}")))?),
                "sponsored" => sponsored = v == "1",
                _ => {}
            }
        }
        let proof = match (payer, epoch, call, sig) {
            (None, None, None, None) => None,
            (Some(payer), Some(epoch), Some(call), Some(sig)) => {
                Some(ReceiptProof::new(payer, epoch, call, &sig).map_err(|e| bad(e.to_string()))?)
            }
            _ => return Err(bad("has only part of payer, epoch, call and sig".into())),
        };
        match (cost, consumed, authorized) {
            (Some(cost), Some(consumed), Some(authorized)) => Ok(Self {
                cost,
                consumed,
                authorized,
                proof,
                sponsored,
            }),
            _ => Err(bad(format!("{value:?} lacks cost, consumed or authorized"))),
        }
    }

    /// Checks a receipt the caller asked to be signed with `request_id`: it is signed, by
    /// `provider`, for this payer's channel in `epoch`, over this call and the consumed
    /// amount it states. Anything forged or altered fails with [`PaymentError::BadReceipt`].
    pub fn verify(
        &self,
        request_id: &str,
        provider: Address,
        payer: Address,
        epoch: u64,
        chain_id: u64,
        escrow: Address,
    ) -> Result<()> {
        let bad = |m: String| PaymentError::BadReceipt(m);
        let p = self
            .proof
            .ok_or_else(|| bad("the provider did not sign it".into()))?;
        if p.payer != payer || p.epoch != epoch {
            return Err(bad(format!(
                "it is for payer {} epoch {}, not {payer} epoch {epoch}",
                p.payer, p.epoch
            )));
        }
        let call = call_hash(request_id, self.cost);
        if p.call != call {
            return Err(bad(
                "it answers another call, or its cost was altered".into()
            ));
        }
        let claim = ReceiptClaim {
            payer,
            provider,
            epoch,
            consumed: self.consumed,
            call,
        };
        claim
            .verify(&p.signature, chain_id, escrow)
            .map_err(|e| match e {
                ChainError::WrongSigner { signer, .. } => bad(format!(
                    "signed by {signer}, not the provider {provider} (forged, or altered after signing)"
                )),
                other => bad(other.to_string()),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use khachapuri_devnet::dev_signer;
    use proptest::prelude::*;

    const CHAIN: u64 = 31337;

    fn escrow() -> Address {
        Address::repeat_byte(0xEE)
    }

    fn signed(id: &str) -> (Receipt, Address, Address) {
        let key = dev_signer(2);
        let payer = Address::repeat_byte(7);
        let mut r = Receipt {
            cost: U256::from(100_000u64),
            consumed: U256::from(2_100_000u64),
            authorized: U256::from(100_000_000u64),
            proof: None,
            sponsored: false,
        };
        let claim = ReceiptClaim {
            payer,
            provider: key.address(),
            epoch: 0,
            consumed: r.consumed,
            call: call_hash(id, r.cost),
        };
        let sig = claim.sign(&key, CHAIN, escrow()).unwrap();
        r.proof = Some(ReceiptProof::new(payer, 0, claim.call, &sig).unwrap());
        (r, key.address(), payer)
    }

    #[test]
    fn signed_receipts_round_trip_and_verify() {
        let (r, provider, payer) = signed("abc");
        let back = Receipt::parse(&r.encode()).unwrap();
        assert_eq!(back, r);
        back.verify("abc", provider, payer, 0, CHAIN, escrow())
            .unwrap();
    }

    #[test]
    fn forged_or_altered_receipts_are_rejected() {
        let (r, provider, payer) = signed("abc");
        let v = |r: &Receipt, id: &str| r.verify(id, provider, payer, 0, CHAIN, escrow());
        let is_bad = |res: Result<()>| matches!(res, Err(PaymentError::BadReceipt(_)));
        let mut lower = r;
        lower.consumed -= U256::from(1u64);
        assert!(is_bad(v(&lower, "abc")), "altered consumed");
        let mut cheaper = r;
        cheaper.cost = U256::from(1u64);
        assert!(is_bad(v(&cheaper, "abc")), "altered cost");
        assert!(is_bad(v(&r, "other")), "another call");
        let mut unsigned = r;
        unsigned.proof = None;
        assert!(is_bad(v(&unsigned, "abc")), "unsigned");
        assert!(is_bad(r.verify(
            "abc",
            Address::repeat_byte(3),
            payer,
            0,
            CHAIN,
            escrow()
        )));
        assert!(is_bad(r.verify("abc", provider, payer, 1, CHAIN, escrow())));
        let mut flipped = r;
        if let Some(p) = flipped.proof.as_mut() {
            p.signature[10] ^= 1;
        }
        assert!(is_bad(v(&flipped, "abc")), "forged signature");
    }

    #[test]
    fn plain_receipts_parse_and_partial_proofs_do_not() {
        let plain = Receipt::parse("cost=1; consumed=2; authorized=3").unwrap();
        assert_eq!(plain.proof, None);
        assert_eq!(plain.encode(), "cost=1; consumed=2; authorized=3");
        let sponsored = Receipt::parse("cost=1; consumed=2; authorized=3; sponsored=1").unwrap();
        assert!(sponsored.sponsored);
        assert_eq!(Receipt::parse(&sponsored.encode()).unwrap(), sponsored);
        assert!(Receipt::parse("cost=1; consumed=2; authorized=3; sig=0x00").is_err());
        assert!(check_request_id("a-b_c.9").is_ok());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("a b").is_err());
        assert!(check_request_id(&"x".repeat(65)).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,400}") {
            let _ = Receipt::parse(&s);
        }
    }
}
