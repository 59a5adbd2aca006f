//! The one error type of this crate.

/// Why a wire value was refused.
#[derive(Debug, thiserror::Error)]
pub enum TypesError {
    /// A deployment spec or envelope that cannot be used; the text says why.
    #[error("invalid deployment spec: {0}")]
    InvalidSpec(String),
}
