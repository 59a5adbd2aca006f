//! Operator signatures over p2p answers: EIP-191 `personal_sign` over a domain tag and
//! the exact body bytes, recoverable with alloy like the tunnel's login and vouchers,
//! never confusable with them (each tag names the protocol and its version).

use alloy_primitives::{Address, Signature};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

use crate::error::P2pError;

/// Tag of signed capacity offers.
pub const CAPACITY_DOMAIN: &[u8] = b"khachapuri-p2p-capacity-v1:";
/// Tag of signed provision results.
pub const PROVISION_DOMAIN: &[u8] = b"khachapuri-p2p-provision-v1:";
/// Tag of a payer's signed provision order.
pub const ORDER_DOMAIN: &[u8] = b"khachapuri-p2p-order-v1:";

fn message(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + body.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(body);
    m
}

/// Signs `body` under `domain`: 65 bytes `r ‖ s ‖ v`.
pub fn sign(signer: &PrivateKeySigner, domain: &[u8], body: &[u8]) -> Result<Vec<u8>, P2pError> {
    signer
        .sign_message_sync(&message(domain, body))
        .map(|s| s.as_bytes().to_vec())
        .map_err(|e| P2pError::Signature(e.to_string()))
}

/// Who signed `body` under `domain`.
pub fn recover(domain: &[u8], body: &[u8], signature: &[u8]) -> Result<Address, P2pError> {
    let sig = Signature::from_raw(signature).map_err(|e| P2pError::Signature(e.to_string()))?;
    sig.recover_address_from_msg(message(domain, body))
        .map_err(|e| P2pError::Signature(e.to_string()))
}

/// Checks that `expected` signed `body` under `domain`.
pub fn verify(
    domain: &[u8],
    body: &[u8],
    signature: &[u8],
    expected: Address,
) -> Result<(), P2pError> {
    let got = recover(domain, body, signature)?;
    if got == expected {
        Ok(())
    } else {
        Err(P2pError::Signature(format!(
            "signed by {got}, expected {expected}"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_domain_body_and_signer() {
        let s = PrivateKeySigner::random();
        let sig = sign(&s, CAPACITY_DOMAIN, b"offer").unwrap();
        verify(CAPACITY_DOMAIN, b"offer", &sig, s.address()).unwrap();
        assert!(verify(PROVISION_DOMAIN, b"offer", &sig, s.address()).is_err());
        assert!(verify(CAPACITY_DOMAIN, b"offex", &sig, s.address()).is_err());
        assert!(verify(CAPACITY_DOMAIN, b"offer", &sig, Address::ZERO).is_err());
        assert!(recover(CAPACITY_DOMAIN, b"offer", &sig[..64]).is_err());
    }
}
