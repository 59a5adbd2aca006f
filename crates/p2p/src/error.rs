//! The crate's one error type.

/// Everything that can go wrong talking to a peer or answering one.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// A frame announced or carried more bytes than its protocol allows.
    #[error("message of {got} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Bytes announced (or read).
        got: usize,
        /// The protocol's cap.
        limit: usize,
    },
    /// Bytes that are not a well-formed message (bad varint, protobuf, or field).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A signature that does not recover, or recovers to someone else.
    #[error("bad signature: {0}")]
    Signature(String),
    /// The remote answered with a refusal.
    #[error("refused ({code}): {message}")]
    Refused {
        /// Machine-readable code.
        code: String,
        /// Detail for a human.
        message: String,
    },
    /// Attestation evidence did not verify or the policy refused it.
    #[error("attestation refused: {0}")]
    Attest(#[from] khachapuri_attest::AttestError),
    /// A request failed on the way (dial, stream, timeout, the peer hung up).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The remote peer.
        peer: String,
        /// What libp2p said.
        reason: String,
    },
    /// Nothing was found before the deadline.
    #[error("{0}")]
    NotFound(String),
    /// Bad configuration (an unparsable multiaddr, a listen address that fails).
    #[error("p2p config: {0}")]
    Config(String),
    /// The node's event loop has stopped.
    #[error("the p2p node has stopped")]
    Stopped,
    /// Local I/O (key file).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl P2pError {
    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        Self::Malformed(what.into())
    }
}
