//! Khachapuri's own test hierarchy: proves the binding end to end where real TEE
//! evidence cannot carry our binding (tests, the provider's dev mode). Never trusted
//! unless the policy names the root.

use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::evidence::{TestEvidence, MAX_TEST_MEASUREMENT};
use crate::{report_data, AttestError, Binding, Evidence};

const LEAF_DOMAIN: &[u8] = b"khachapuri-attest-test-leaf-v1:";
const REPORT_DOMAIN: &[u8] = b"khachapuri-attest-test-report-v1:";

/// The public key of a test root (secp256k1, SEC1 compressed): what a policy names
/// to accept [`Evidence::Test`] signed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRoot(pub [u8; 33]);

/// A test root and one leaf it certified: signs test reports like a TEE would.
pub struct TestAuthority {
    root: SigningKey,
    leaf: SigningKey,
    not_before: u64,
    not_after: u64,
    leaf_sig: [u8; 64],
}

fn random_key() -> Result<SigningKey, AttestError> {
    // A random 32-byte string is a valid scalar except with negligible probability;
    // retry a few times rather than assume.
    for _ in 0..8 {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| AttestError::Malformed(format!("no randomness: {e}")))?;
        if let Ok(k) = SigningKey::from_slice(&seed) {
            return Ok(k);
        }
    }
    Err(AttestError::Malformed("could not draw a key".into()))
}

fn compressed(key: &VerifyingKey) -> [u8; 33] {
    let mut out = [0u8; 33];
    let point = key.to_encoded_point(true);
    let bytes = point.as_bytes();
    if bytes.len() == 33 {
        out.copy_from_slice(bytes);
    }
    out
}

fn leaf_message(leaf_key: &[u8; 33], not_before: u64, not_after: u64) -> Vec<u8> {
    let mut m = LEAF_DOMAIN.to_vec();
    m.extend_from_slice(leaf_key);
    m.extend_from_slice(&not_before.to_be_bytes());
    m.extend_from_slice(&not_after.to_be_bytes());
    m
}

fn report_message(report_data: &[u8; 64], measurement: &[u8]) -> Vec<u8> {
    let mut m = REPORT_DOMAIN.to_vec();
    m.extend_from_slice(report_data);
    m.push(u8::try_from(measurement.len()).unwrap_or(u8::MAX));
    m.extend_from_slice(measurement);
    m
}

impl TestAuthority {
    /// A fresh root and a leaf valid for all time.
    pub fn generate() -> Result<Self, AttestError> {
        Self::generate_valid(0, u64::MAX)
    }

    /// A fresh root and a leaf valid from `not_before` to `not_after` (Unix seconds),
    /// to exercise expiry.
    pub fn generate_valid(not_before: u64, not_after: u64) -> Result<Self, AttestError> {
        let root = random_key()?;
        let leaf = random_key()?;
        let msg = leaf_message(&compressed(leaf.verifying_key()), not_before, not_after);
        let sig: Signature = root.sign(&msg);
        Ok(Self {
            root,
            leaf,
            not_before,
            not_after,
            leaf_sig: sig.to_bytes().into(),
        })
    }

    /// The root a policy names to accept this authority's evidence.
    pub fn root(&self) -> TestRoot {
        TestRoot(compressed(self.root.verifying_key()))
    }

    /// Evidence binding `binding` with `measurement` (truncated to 64 bytes), as a
    /// provider in dev mode would answer.
    pub fn attest(&self, binding: &Binding, measurement: &[u8]) -> Evidence {
        let measurement = &measurement[..measurement.len().min(MAX_TEST_MEASUREMENT)];
        let rd = report_data(binding);
        let sig: Signature = self.leaf.sign(&report_message(&rd, measurement));
        Evidence::Test(TestEvidence {
            report_data: rd,
            measurement: measurement.to_vec(),
            leaf_key: compressed(self.leaf.verifying_key()),
            not_before: self.not_before,
            not_after: self.not_after,
            leaf_sig: self.leaf_sig,
            report_sig: sig.to_bytes().into(),
        })
    }
}

/// Checks the leaf against `root`, its validity at `now` (Unix seconds) and the report
/// signature; returns nothing else since the report fields are in `t`.
pub(crate) fn verify_test(t: &TestEvidence, root: &TestRoot, now: u64) -> Result<(), AttestError> {
    let root_key = VerifyingKey::from_sec1_bytes(&root.0)
        .map_err(|_| AttestError::Malformed("test root key".into()))?;
    let leaf_sig = Signature::from_slice(&t.leaf_sig)
        .map_err(|_| AttestError::Malformed("leaf signature".into()))?;
    root_key
        .verify(
            &leaf_message(&t.leaf_key, t.not_before, t.not_after),
            &leaf_sig,
        )
        .map_err(|_| AttestError::BadChain("leaf not certified by the test root".into()))?;
    if now < t.not_before || now > t.not_after {
        return Err(AttestError::Expired(
            "test leaf outside its validity".into(),
        ));
    }
    let leaf_key = VerifyingKey::from_sec1_bytes(&t.leaf_key)
        .map_err(|_| AttestError::Malformed("leaf key".into()))?;
    let report_sig = Signature::from_slice(&t.report_sig)
        .map_err(|_| AttestError::Malformed("report signature".into()))?;
    leaf_key
        .verify(&report_message(&t.report_data, &t.measurement), &report_sig)
        .map_err(|_| AttestError::BadSignature("test report signature".into()))
}
