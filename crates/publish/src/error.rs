//! The one error type of publishing.

/// What can stop a publish; the CLI adds the hint.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store could not take an upload.
    #[error("cannot upload the {what}: {source}")]
    Upload {
        /// Artifact or spec.
        what: &'static str,
        /// The store's error.
        source: khachapuri_store::StoreError,
    },
    /// The store computed another CID than ours for the same bytes.
    #[error("the store answered CID {store} but the content's CID is {local} (is it using the unixfs-v1-2025 profile?)")]
    CidMismatch {
        /// What the store said.
        store: String,
        /// What the bytes hash to.
        local: String,
    },
    /// The spec is not valid (env names, limits).
    #[error("invalid spec: {0}")]
    Spec(#[from] khachapuri_types::TypesError),
    /// The owner's signature could not be made.
    #[error("cannot sign the spec: {0}")]
    Sign(#[from] khachapuri_chain::ChainError),
    /// The provider's X25519 key is unusable.
    #[error("cannot seal the spec to {name}: {source}")]
    Seal {
        /// The provider.
        name: String,
        /// Why.
        source: khachapuri_seal::SealError,
    },
    /// Importing the bytes locally (to compute the CID) failed.
    #[error("cannot compute the CID: {0}")]
    Import(khachapuri_store::StoreError),
}
