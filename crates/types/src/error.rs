//! The one error type of the types crate: everything here is decoding of untrusted input.

/// Why a value from the wire could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypesError {
    /// The text or bytes are not a CID we can use.
    #[error("invalid CID: {0}")]
    InvalidCid(String),
    /// A multibase prefix other than `b` (base32) or a `Qm…` CIDv0.
    #[error("unsupported multibase prefix {0:?} (expected base32 `b…` or CIDv0 `Qm…`)")]
    UnsupportedMultibase(char),
    /// A multihash other than sha2-256: we could never verify such a block.
    #[error("unsupported multihash code 0x{0:x} (only sha2-256 is supported)")]
    UnsupportedHash(u64),
    /// A malformed unsigned varint.
    #[error("invalid varint: {0}")]
    Varint(&'static str),
    /// A deployment spec or envelope that cannot be used; the text says why.
    #[error("invalid deployment spec: {0}")]
    InvalidSpec(String),
}
