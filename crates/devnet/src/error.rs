//! The one error type of the local network.

/// Everything that can stop a local network from starting.
///
/// The CLI matches on the variant to pick a hint (a missing anvil wants `scripts/setup`,
/// a taken port wants another `--…-listen`).
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// anvil could not be found or started.
    #[error("anvil: {0}")]
    Anvil(String),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Bind {
        /// Which server.
        what: String,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why not.
        source: std::io::Error,
    },
    /// A chain call (deployment, registration, funding) failed.
    #[error("{what}: {source}")]
    Chain {
        /// What was being done.
        what: String,
        /// The chain's error.
        source: khachapuri_chain::ChainError,
    },
    /// A provider node could not be configured or started.
    #[error("provider {name}: {reason}")]
    Provider {
        /// The provider's registry name.
        name: String,
        /// Why it could not start.
        reason: String,
    },
    /// The options make no sense (e.g. more providers than dev accounts).
    #[error("invalid devnet options: {0}")]
    Options(String),
    /// Local I/O failed (data dirs, key files).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result alias of the devnet crate.
pub type Result<T, E = DevnetError> = std::result::Result<T, E>;

impl DevnetError {
    pub(crate) fn chain(
        what: impl Into<String>,
    ) -> impl FnOnce(khachapuri_chain::ChainError) -> Self {
        let what = what.into();
        move |source| Self::Chain { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
