//! The one error type of sealing and opening.

/// Why a spec could not be sealed or an envelope could not be opened. Variants are
/// distinct so a provider can say *why* it refuses (sealed to someone else, tampered…)
/// without ever echoing plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The envelope is a public spec, not a sealed one.
    #[error("the envelope is not sealed")]
    NotSealed,
    /// The envelope names another provider.
    #[error("this deployment is sealed to provider {sealed_to}, not to {me}")]
    WrongProvider {
        /// Address the envelope is sealed to.
        sealed_to: String,
        /// Address of whoever tried to open it.
        me: String,
    },
    /// A field of the envelope is not what the format says (bad base64, wrong length).
    #[error("malformed sealed envelope: {0}")]
    Malformed(String),
    /// The public key is a low-order point (or all zero): nothing can be sealed to it.
    #[error("the X25519 public key is invalid (low-order point)")]
    InvalidKey,
    /// Authentication failed: wrong key, wrong provider address, or tampered bytes.
    #[error("cannot decrypt the sealed spec (wrong key, or the envelope was altered)")]
    Decrypt,
    /// The plaintext is not a valid spec, or the spec names another provider.
    #[error("the sealed spec is invalid: {0}")]
    Spec(String),
    /// The key file cannot be read, written or parsed.
    #[error("X25519 key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}
