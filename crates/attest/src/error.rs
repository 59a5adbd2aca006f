//! The crate's one error type.

/// Why evidence was refused. Distinct variants so the p2p layer and the CLI can map
/// them (retry, ask for fresher collateral, refuse the provider, report a bug).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttestError {
    /// The provider has no TEE (or declined) and the policy requires one.
    #[error("the provider offers no TEE evidence ({reason}) but the policy requires one")]
    NoTee {
        /// What the provider said.
        reason: String,
    },
    /// The evidence kind is not in the policy's accepted kinds (or is the test kind
    /// without a test root named by the policy).
    #[error("evidence kind {0} is not accepted by the policy")]
    KindNotAccepted(&'static str),
    /// The evidence bytes (or a report, certificate or collateral inside) do not parse.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// A signature over the report does not verify.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The signing key does not chain to a trusted root.
    #[error("bad certificate chain: {0}")]
    BadChain(String),
    /// A certificate or the collateral is not valid at the verification time.
    #[error("expired or not yet valid: {0}")]
    Expired(String),
    /// The platform's TCB is revoked or otherwise rejected.
    #[error("TCB rejected: {0}")]
    TcbRejected(String),
    /// The report verifies but vouches for another binding (wrong peer, keys, nonce,
    /// chain or escrow).
    #[error("report_data does not match the expected binding")]
    BindingMismatch,
    /// The report verifies but its measurement is not in the policy's list.
    #[error("measurement {0} is not accepted by the policy")]
    MeasurementNotAccepted(String),
}
