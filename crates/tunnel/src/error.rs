//! The crate's one error type, and the refusal codes both sides of the handshake share.

use serde::{Deserialize, Serialize};

/// Boxed error, as hyper and tower use it for bodies and services of unknown type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a gateway refused a provider's tunnel (sent in the `refused` handshake message, so
/// the provider's operator reads the same reason the gateway logged).
///
/// The provider decides from the code how soon to try again: a refusal its own key or
/// registration caused ([`RefusalCode::is_permanent`]) will not change by retrying, so it
/// waits long instead of hammering the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The registry has no record for the name.
    UnregisteredName,
    /// The signature is valid, but from an address that is not the name's registered operator.
    WrongOperator,
    /// The signature does not recover to the operator address the provider claimed.
    BadSignature,
    /// The nonce is not one this gateway has outstanding: replayed, expired, or never issued.
    Nonce,
    /// The gateway is at a limit (tunnels, outstanding handshakes) or shutting down; try later.
    Busy,
    /// The gateway could not ask the registry; try later.
    LookupFailed,
    /// The peer did not speak the handshake (malformed, oversized, wrong version, timeout).
    Protocol,
    /// The provider refused the gateway's challenge: it names another host or chain.
    WrongGateway,
}

impl RefusalCode {
    /// Whether retrying cannot help until an operator changes something (key, registry
    /// record, configured gateway): the provider then backs off for
    /// [`crate::ClientConfig::refused_backoff`] instead of its normal short backoff.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            Self::UnregisteredName | Self::WrongOperator | Self::BadSignature | Self::WrongGateway
        )
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::UnregisteredName => "unregistered_name",
            Self::WrongOperator => "wrong_operator",
            Self::BadSignature => "bad_signature",
            Self::Nonce => "nonce",
            Self::Busy => "busy",
            Self::LookupFailed => "lookup_failed",
            Self::Protocol => "protocol",
            Self::WrongGateway => "wrong_gateway",
        };
        f.write_str(s)
    }
}

/// Everything that can go wrong in the tunnel, on either side.
///
/// Network input never panics: each malformed or hostile input maps to one of these.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// A handshake message could not be decoded (malformed JSON, unknown field, bad hex,
    /// oversized, wrong version, invalid name or host).
    #[error("malformed tunnel handshake message: {0}")]
    Malformed(String),
    /// The handshake was refused, by the gateway (seen by the provider) or by us (seen by
    /// the gateway's caller of `serve_websocket`).
    #[error("tunnel refused ({code}): {message}")]
    Refused {
        /// Machine-readable reason; decides the provider's backoff.
        code: RefusalCode,
        /// What an operator should read.
        message: String,
    },
    /// The configuration cannot work (a gateway URL that is not http(s)/ws(s), an empty host).
    #[error("tunnel configuration: {0}")]
    Config(String),
    /// A bounded wait ran out; the string says which.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Socket-level failure (connect, TLS, read, write).
    #[error("tunnel I/O: {0}")]
    Io(#[from] std::io::Error),
    /// WebSocket protocol failure (upgrade refused, bad frame, oversized message).
    #[error("tunnel WebSocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// HTTP/2 failure on the tunnel (connection lost, stream reset, GOAWAY).
    #[error("tunnel HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    /// The signer could not sign the challenge.
    #[error("signing the tunnel challenge: {0}")]
    Signer(String),
    /// The tunnel is draining (replaced by a newer one, or the gateway is shutting down):
    /// the request was not sent, so it is safe to retry elsewhere.
    #[error("tunnel is draining; request not sent")]
    Draining,
    /// The tunnel is at its stream limit ([`crate::ServerConfig::max_streams_per_tunnel`]):
    /// the request was not sent; answer 503.
    #[error("tunnel is at its concurrent stream limit; request not sent")]
    Overloaded,
    /// The request cannot be sent over HTTP/2 (e.g. a URI the tunnel cannot give an authority).
    #[error("request not sendable through the tunnel: {0}")]
    BadRequest(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for TunnelError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

impl TunnelError {
    /// A refusal with a code and an operator-readable message.
    pub(crate) fn refused(code: RefusalCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }
}
