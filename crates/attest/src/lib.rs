//! Attestation evidence for `/khachapuri/attest/1` and its offline verification.
//!
//! A provider binds its keys (libp2p peer id, operator address, X25519 key) and the
//! publisher's nonce, chain and escrow into a TEE report's `report_data`
//! ([`report_data`]); the publisher verifies the [`Evidence`] against a [`Policy`]
//! without any network access ([`verify`]). No I/O happens in this crate.

mod binding;
mod error;
mod evidence;
mod snp;
mod tdx;
mod testroot;
mod verify;

pub use binding::{report_data, Binding, REPORT_DATA_DOMAIN};
pub use error::AttestError;
pub use evidence::{Evidence, TestEvidence, MAX_EVIDENCE_BYTES};
pub use testroot::{TestAuthority, TestRoot};
pub use verify::{check_binding, verify, verify_evidence_only, Policy, TeeKind, Verified};
