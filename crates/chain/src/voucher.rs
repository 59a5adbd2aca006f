//! EIP-712 vouchers: what a payer signs so a provider can take up to a cumulative amount
//! from their escrow channel. Hashing here must match `Escrow.voucherDigest` exactly; the
//! integration tests check that against the contract and against `cast wallet sign`.

use std::borrow::Cow;

use alloy::primitives::{Address, Signature, B256, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

use crate::bindings::Escrow;
use crate::error::{ChainError, Result};

/// EIP-712 domain name of the escrow.
pub const DOMAIN_NAME: &str = "Khachapuri Escrow";
/// EIP-712 domain version of the escrow.
pub const DOMAIN_VERSION: &str = "1";

/// The EIP-712 domain of the escrow at `escrow` on `chain_id`: a voucher signed for one
/// escrow or chain is worthless on any other.
pub fn voucher_domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Borrowed(DOMAIN_NAME)),
        Some(Cow::Borrowed(DOMAIN_VERSION)),
        Some(U256::from(chain_id)),
        Some(escrow),
        None,
    )
}

/// `Voucher(address payer,address provider,uint64 epoch,uint256 amount)`: `amount` is the
/// cumulative total the payer lets the provider take in this channel epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// Who pays (the channel's owner and the signer).
    pub payer: Address,
    /// Who may redeem.
    pub provider: Address,
    /// Channel epoch the voucher is valid in (bumped by every reclaim).
    pub epoch: u64,
    /// Cumulative amount in token base units.
    #[serde(with = "dec_u256")]
    pub amount: U256,
}

impl Voucher {
    /// The contract-side struct, for `redeem`/`redeemBatch` calls.
    pub fn to_sol(&self) -> Escrow::Voucher {
        Escrow::Voucher {
            payer: self.payer,
            provider: self.provider,
            epoch: self.epoch,
            amount: self.amount,
        }
    }

    /// The digest the payer signs (what `Escrow.voucherDigest` returns).
    pub fn signing_hash(&self, chain_id: u64, escrow: Address) -> B256 {
        self.to_sol()
            .eip712_signing_hash(&voucher_domain(chain_id, escrow))
    }

    /// Signs with `signer` (which should be the payer's key).
    pub fn sign(
        &self,
        signer: &impl SignerSync,
        chain_id: u64,
        escrow: Address,
    ) -> Result<SignedVoucher> {
        let sig = signer
            .sign_hash_sync(&self.signing_hash(chain_id, escrow))
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        Ok(SignedVoucher {
            voucher: *self,
            signature: sig.as_bytes().to_vec(),
        })
    }

    /// EIP-712 typed data as JSON (`eth_signTypedData_v4`, `cast wallet sign --data`,
    /// MetaMask): any standard signer can produce a voucher from this.
    pub fn typed_data_json(&self, chain_id: u64, escrow: Address) -> serde_json::Value {
        serde_json::json!({
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"}
                ],
                "Voucher": [
                    {"name": "payer", "type": "address"},
                    {"name": "provider", "type": "address"},
                    {"name": "epoch", "type": "uint64"},
                    {"name": "amount", "type": "uint256"}
                ]
            },
            "primaryType": "Voucher",
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": chain_id,
                "verifyingContract": escrow.to_checksum(None),
            },
            "message": {
                "payer": self.payer.to_checksum(None),
                "provider": self.provider.to_checksum(None),
                "epoch": self.epoch,
                "amount": self.amount.to_string(),
            }
        })
    }
}

/// A voucher with the payer's 65-byte signature; its JSON form (`payer`, `provider`,
/// `epoch`, `amount` as a decimal string, `signature` as 0x-hex) is what callers put in the
/// `Khachapuri-Payment` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVoucher {
    /// The signed fields.
    #[serde(flatten)]
    pub voucher: Voucher,
    /// r ‖ s ‖ v (v = 27/28 or 0/1).
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

impl SignedVoucher {
    /// Rewrites the signature into the one form the escrow redeems (OpenZeppelin `ECDSA`):
    /// 65 bytes, low `s`, `v` in {27, 28}. The same signer can be recovered from a `v` of
    /// 0/1 (or an EIP-155 `v`) and from the high-`s` twin, but the escrow refuses those, so
    /// a provider that stored them could never collect. Fails on anything that is not a
    /// 65-byte signature with a valid recovery byte and non-zero `r`, `s`.
    pub fn canonicalize(&mut self) -> Result<()> {
        let sig = Signature::from_raw(&self.signature)
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        if sig.r().is_zero() || sig.s().is_zero() {
            return Err(ChainError::BadSignature("r or s is zero".into()));
        }
        self.signature = sig.normalized_s().as_bytes().to_vec();
        Ok(())
    }

    /// Whether the signature already is in the escrow's form (see
    /// [`SignedVoucher::canonicalize`]).
    pub fn is_canonical(&self) -> bool {
        let mut copy = self.clone();
        copy.canonicalize().is_ok() && copy.signature == self.signature
    }

    /// Recovers who signed the voucher for this escrow and chain.
    pub fn recover(&self, chain_id: u64, escrow: Address) -> Result<Address> {
        let sig = Signature::from_raw(&self.signature)
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        sig.recover_address_from_prehash(&self.voucher.signing_hash(chain_id, escrow))
            .map_err(|e| ChainError::BadSignature(e.to_string()))
    }

    /// Checks that the payer signed this voucher for this escrow and chain.
    pub fn verify(&self, chain_id: u64, escrow: Address) -> Result<()> {
        let signer = self.recover(chain_id, escrow)?;
        if signer != self.voucher.payer {
            return Err(ChainError::WrongSigner {
                payer: self.voucher.payer,
                signer,
            });
        }
        Ok(())
    }
}

/// U256 as a decimal string (also accepts 0x-hex and JSON numbers on input).
mod dec_u256 {
    use alloy::primitives::U256;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &U256, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => match s.strip_prefix("0x") {
                Some(hex) => U256::from_str_radix(hex, 16).map_err(D::Error::custom),
                None => U256::from_str_radix(&s, 10).map_err(D::Error::custom),
            },
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(U256::from)
                .ok_or_else(|| D::Error::custom("amount must be a non-negative integer")),
            _ => Err(D::Error::custom("amount must be a string or a number")),
        }
    }
}

/// Bytes as 0x-hex.
mod hex_bytes {
    use alloy::primitives::hex;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode_prefixed(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::local::PrivateKeySigner;
    use proptest::prelude::*;

    fn signer() -> PrivateKeySigner {
        khachapuri_devnet::dev_signer(0)
    }

    #[test]
    fn sign_and_verify_round_trip() {
        let s = signer();
        let escrow = Address::repeat_byte(0xEE);
        let v = Voucher {
            payer: s.address(),
            provider: Address::repeat_byte(0x22),
            epoch: 3,
            amount: U256::from(1_250_000u64),
        };
        let signed = v.sign(&s, 31337, escrow).expect("sign");
        signed.verify(31337, escrow).expect("verify");
        // Another chain, escrow, epoch or provider recovers someone else.
        assert!(signed.verify(1, escrow).is_err());
        assert!(signed.verify(31337, Address::repeat_byte(0xEF)).is_err());
        let mut other = signed.clone();
        other.voucher.epoch = 4;
        assert!(other.verify(31337, escrow).is_err());
        other = signed.clone();
        other.voucher.provider = Address::repeat_byte(0x23);
        assert!(other.verify(31337, escrow).is_err());
        other = signed;
        other.signature.truncate(10);
        assert!(matches!(
            other.verify(31337, escrow),
            Err(ChainError::BadSignature(_))
        ));
    }

    #[test]
    fn json_form() {
        let s = signer();
        let v = Voucher {
            payer: s.address(),
            provider: Address::repeat_byte(0x22),
            epoch: 0,
            amount: U256::from(5u64),
        };
        let signed = v.sign(&s, 1, Address::ZERO).expect("sign");
        let json = serde_json::to_value(&signed).expect("json");
        assert_eq!(json["amount"], "5");
        assert_eq!(json["epoch"], 0);
        assert!(json["signature"]
            .as_str()
            .is_some_and(|x| x.starts_with("0x") && x.len() == 132));
        let back: SignedVoucher = serde_json::from_value(json).expect("parse");
        assert_eq!(back, signed);
    }

    /// The high-`s` twin and the 0/1 recovery byte of a valid signature recover the same
    /// payer; canonicalizing turns both back into the signer's own (low-`s`, 27/28) bytes.
    #[test]
    fn malleated_signatures_canonicalize_to_the_signed_form() {
        let s = signer();
        let escrow = Address::repeat_byte(0xEE);
        let v = Voucher {
            payer: s.address(),
            provider: Address::repeat_byte(0x22),
            epoch: 0,
            amount: U256::from(7u64),
        };
        let signed = v.sign(&s, 31337, escrow).expect("sign");
        assert!(signed.is_canonical());
        for bad in [low_v(&signed), high_s(&signed)] {
            assert!(!bad.is_canonical());
            bad.verify(31337, escrow).expect("same signer");
            let mut fixed = bad.clone();
            fixed.canonicalize().expect("canonicalize");
            assert_eq!(fixed, signed);
        }
        let mut junk = signed.clone();
        junk.signature[64] = 29;
        assert!(junk.canonicalize().is_err());
        let mut zero = signed;
        zero.signature[32..64].fill(0);
        assert!(zero.canonicalize().is_err());
    }

    /// `v` as 0/1 instead of 27/28.
    pub(crate) fn low_v(sv: &SignedVoucher) -> SignedVoucher {
        let mut out = sv.clone();
        out.signature[64] -= 27;
        out
    }

    /// The high-`s` twin: `s' = n - s` with the recovery bit flipped.
    pub(crate) fn high_s(sv: &SignedVoucher) -> SignedVoucher {
        let n = U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .expect("n");
        let s = U256::from_be_slice(&sv.signature[32..64]);
        let mut out = sv.clone();
        out.signature[32..64].copy_from_slice(&(n - s).to_be_bytes::<32>());
        out.signature[64] = if sv.signature[64] == 27 { 28 } else { 27 };
        out
    }

    proptest! {
        #[test]
        fn json_round_trips(epoch in any::<u64>(), amount in any::<u128>(), sig in proptest::collection::vec(any::<u8>(), 0..80)) {
            let sv = SignedVoucher {
                voucher: Voucher { payer: Address::repeat_byte(1), provider: Address::repeat_byte(2), epoch, amount: U256::from(amount) },
                signature: sig,
            };
            let text = serde_json::to_string(&sv).expect("encode");
            let back: SignedVoucher = serde_json::from_str(&text).expect("decode");
            prop_assert_eq!(back, sv);
        }
    }
}
