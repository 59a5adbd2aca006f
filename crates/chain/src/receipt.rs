//! EIP-712 receipts: the provider's signed statement of what it charged a channel so far.
//!
//! A voucher is the payer's promise; a signed receipt is the provider's evidence. It names
//! the channel (payer, provider, epoch), the cumulative amount consumed after one call, and
//! a hash binding it to that call, so a payer holding the latest receipt can show what the
//! provider claimed, and flag a provider that redeemed more on chain than it ever signed for.
//! It is signed in the escrow's EIP-712 domain (see [`crate::voucher_domain`]) under its own
//! type, so a receipt can never be mistaken for a voucher.

use alloy::primitives::{keccak256, Address, Signature, B256, U256};
use alloy::signers::SignerSync;
use alloy::sol_types::SolStruct;

use crate::error::{ChainError, Result};
use crate::voucher::voucher_domain;

mod eip712 {
    alloy::sol! {
        /// `Receipt(address payer,address provider,uint64 epoch,uint256 consumed,bytes32 call)`.
        struct Receipt {
            address payer;
            address provider;
            uint64 epoch;
            uint256 consumed;
            bytes32 call;
        }
    }
}

/// The fields a provider signs after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptClaim {
    /// Whose channel paid.
    pub payer: Address,
    /// Who charged (the operator address that signs).
    pub provider: Address,
    /// The channel epoch the call was paid in.
    pub epoch: u64,
    /// Consumed in the channel so far, this call included, in micro base units (1e-6 of a
    /// token base unit, the ledger's precision).
    pub consumed: U256,
    /// [`call_hash`] of the call this receipt answers.
    pub call: B256,
}

/// Binds a receipt to one call: `keccak256(request_id ‖ cost as 32 bytes big-endian)`.
/// The caller picks `request_id` (the `Khachapuri-Sign-Receipt` header value), so the hash
/// survives gateways rewriting paths, and `cost` (micro base units) is what the provider
/// says this call cost.
pub fn call_hash(request_id: &str, cost: U256) -> B256 {
    let mut bytes = Vec::with_capacity(request_id.len() + 32);
    bytes.extend_from_slice(request_id.as_bytes());
    bytes.extend_from_slice(&cost.to_be_bytes::<32>());
    keccak256(bytes)
}

impl ReceiptClaim {
    fn to_sol(self) -> eip712::Receipt {
        eip712::Receipt {
            payer: self.payer,
            provider: self.provider,
            epoch: self.epoch,
            consumed: self.consumed,
            call: self.call,
        }
    }

    /// The EIP-712 digest signed for this receipt on `chain_id` for `escrow`.
    pub fn signing_hash(&self, chain_id: u64, escrow: Address) -> B256 {
        self.to_sol()
            .eip712_signing_hash(&voucher_domain(chain_id, escrow))
    }

    /// Signs with the operator key; returns the 65-byte r ‖ s ‖ v (v = 27/28).
    pub fn sign(
        &self,
        signer: &impl SignerSync,
        chain_id: u64,
        escrow: Address,
    ) -> Result<Vec<u8>> {
        let sig = signer
            .sign_hash_sync(&self.signing_hash(chain_id, escrow))
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        Ok(sig.as_bytes().to_vec())
    }

    /// Checks that `signature` is the provider's over this receipt.
    pub fn verify(&self, signature: &[u8], chain_id: u64, escrow: Address) -> Result<()> {
        let sig =
            Signature::from_raw(signature).map_err(|e| ChainError::BadSignature(e.to_string()))?;
        let signer = sig
            .recover_address_from_prehash(&self.signing_hash(chain_id, escrow))
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        if signer != self.provider {
            return Err(ChainError::WrongSigner {
                payer: self.provider,
                signer,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_receipts_verify_and_any_change_breaks_them() {
        let key = khachapuri_devnet::dev_signer(1);
        let escrow = Address::repeat_byte(0xEE);
        let claim = ReceiptClaim {
            payer: Address::repeat_byte(1),
            provider: key.address(),
            epoch: 2,
            consumed: U256::from(2_100_000u64),
            call: call_hash("req-1", U256::from(100_000u64)),
        };
        let sig = claim.sign(&key, 31337, escrow).expect("sign");
        claim.verify(&sig, 31337, escrow).expect("verify");
        let mut more = claim;
        more.consumed += U256::from(1u64);
        assert!(more.verify(&sig, 31337, escrow).is_err());
        let mut other_call = claim;
        other_call.call = call_hash("req-2", U256::from(100_000u64));
        assert!(other_call.verify(&sig, 31337, escrow).is_err());
        assert!(claim.verify(&sig, 1, escrow).is_err());
        let forged = claim
            .sign(&khachapuri_devnet::dev_signer(2), 31337, escrow)
            .expect("sign");
        assert!(claim.verify(&forged, 31337, escrow).is_err());
        assert_ne!(
            call_hash("a", U256::from(1u64)),
            call_hash("a", U256::from(2u64))
        );
    }
}
