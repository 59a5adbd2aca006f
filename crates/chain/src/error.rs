//! The one error type of the chain layer.

use alloy::primitives::Address;

/// Everything that can go wrong talking to the chain, or signing.
///
/// Callers match on the variant to decide what to tell a user (a revert is their fault,
/// a transport error is the network's), so reverts carry the decoded contract error.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The RPC endpoint could not be reached or answered with an error.
    #[error("RPC error: {0}")]
    Rpc(String),
    /// A call or transaction was rejected by a contract (`reason` is the decoded error).
    #[error("transaction reverted: {reason}")]
    Reverted {
        /// Decoded custom error (`WrongEpoch { .. }`) or raw revert data.
        reason: String,
    },
    /// An RPC call did not answer in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, &'static str),
    /// A state-changing call needs a signing key and none was given.
    #[error("no signing key: this client is read-only")]
    NoSigner,
    /// A signature is malformed or was made by someone else.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A voucher's signer is not its payer.
    #[error("voucher signed by {signer}, not by its payer {payer}")]
    WrongSigner {
        /// Who the voucher says pays.
        payer: Address,
        /// Who actually signed it.
        signer: Address,
    },
    /// A human amount (`1.25`) could not be parsed.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount {
        /// What was given.
        input: String,
        /// Why it is not an amount.
        reason: &'static str,
    },
    /// A registry name is not registered.
    #[error("no provider named {0:?} in the registry")]
    UnknownName(String),
    /// A keystore could not be created, read or decrypted.
    #[error("keystore: {0}")]
    Keystore(String),
    /// Local I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the chain layer.
pub type Result<T, E = ChainError> = std::result::Result<T, E>;
