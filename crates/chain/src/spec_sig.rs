//! Owner signatures on deployment specs: EIP-191 `personal_sign` over [`Spec::hash`], so
//! any wallet (MetaMask, `cast wallet sign`) can sign a spec, and a provider can refuse a
//! spec nobody vouches for or whose bytes changed after signing.

use alloy::primitives::{hex, Address, Signature};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use khachapuri_types::Spec;

use crate::error::{ChainError, Result};

/// Sets `spec.owner` to the signer's address (lower-case 0x-hex) and `spec.signature` to
/// its EIP-191 signature over the resulting [`Spec::hash`]. Call it last: any later change
/// to the spec invalidates the signature.
pub fn sign_spec(spec: &mut Spec, signer: &PrivateKeySigner) -> Result<()> {
    let owner = signer.address();
    spec.owner = Some(format!("{owner:#x}"));
    spec.signature = None;
    let sig = signer
        .sign_message_sync(&spec.hash())
        .map_err(|e| ChainError::BadSignature(e.to_string()))?;
    spec.signature = Some(hex::encode_prefixed(sig.as_bytes()));
    Ok(())
}

/// Checks the spec's owner signature and returns the owner. Fails when the spec is
/// unsigned, the signature is malformed, or it recovers to anyone but `spec.owner`.
pub fn verify_spec(spec: &Spec) -> Result<Address> {
    let owner: Address = spec
        .owner
        .as_deref()
        .ok_or_else(|| ChainError::BadSignature("the spec has no owner".into()))?
        .parse()
        .map_err(|_| ChainError::BadSignature("the spec's owner is not an address".into()))?;
    let sig_hex = spec
        .signature
        .as_deref()
        .ok_or_else(|| ChainError::BadSignature("the spec is not signed".into()))?;
    let bytes = hex::decode(sig_hex)
        .map_err(|_| ChainError::BadSignature("the spec's signature is not hex".into()))?;
    let sig = Signature::from_raw(&bytes).map_err(|e| ChainError::BadSignature(e.to_string()))?;
    let signer = sig
        .recover_address_from_msg(spec.hash())
        .map_err(|e| ChainError::BadSignature(e.to_string()))?;
    if signer != owner {
        return Err(ChainError::BadSignature(format!(
            "the spec is signed by {signer}, not by its owner {owner}"
        )));
    }
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use khachapuri_devnet::dev_signer;
    use khachapuri_types::RuntimeKind;

    fn spec() -> Spec {
        let mut s = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        s.env.insert("K".into(), "v".into());
        s
    }

    #[test]
    fn sign_then_verify() {
        let signer = dev_signer(3);
        let mut s = spec();
        sign_spec(&mut s, &signer).expect("sign");
        let owner = s.owner.clone().expect("owner");
        assert_eq!(owner, owner.to_ascii_lowercase());
        assert!(owner.starts_with("0x") && owner.len() == 42);
        assert_eq!(verify_spec(&s).expect("verify"), signer.address());
        // It survives the canonical JSON round trip.
        let back = Spec::from_slice(&s.canonical_bytes()).expect("parse");
        assert_eq!(verify_spec(&back).expect("verify"), signer.address());
    }

    #[test]
    fn personal_sign_matches_eip191_by_hand() {
        // EIP-191: keccak256("\x19Ethereum Signed Message:\n32" || hash), signed raw.
        let signer = dev_signer(1);
        let mut s = spec();
        sign_spec(&mut s, &signer).expect("sign");
        let mut msg = b"\x19Ethereum Signed Message:\n32".to_vec();
        msg.extend_from_slice(&s.hash());
        let digest = alloy::primitives::keccak256(&msg);
        let bytes = hex::decode(s.signature.as_deref().expect("sig")).expect("hex");
        let sig = Signature::from_raw(&bytes).expect("sig");
        assert_eq!(
            sig.recover_address_from_prehash(&digest).expect("recover"),
            signer.address()
        );
    }

    #[test]
    fn tampered_unsigned_and_foreign_fail() {
        let mut s = spec();
        assert!(verify_spec(&s).is_err(), "unsigned");
        sign_spec(&mut s, &dev_signer(1)).expect("sign");
        let mut tampered = s.clone();
        tampered.env.insert("K".into(), "other".into());
        assert!(verify_spec(&tampered).is_err());
        // Signed by key 2 but claiming key 1 as owner.
        let mut foreign = spec();
        sign_spec(&mut foreign, &dev_signer(2)).expect("sign");
        foreign.owner = s.owner.clone();
        assert!(verify_spec(&foreign).is_err());
        let mut garbage = s.clone();
        garbage.signature = Some("0x1234".into());
        assert!(verify_spec(&garbage).is_err());
        garbage.signature = Some("zz".into());
        assert!(verify_spec(&garbage).is_err());
        let mut no_owner = s;
        no_owner.owner = None;
        assert!(verify_spec(&no_owner).is_err());
    }
}
