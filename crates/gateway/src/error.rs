//! The one error type of the gateway, and the one place it becomes an HTTP status.

use http::StatusCode;

use crate::addr::Denied;

/// Everything a request through the gateway can meet. Each variant is a status and a
/// hint for the caller; [`GatewayError::status`] is the only mapping.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request names no provider and no CID the gateway could route.
    #[error("{0}")]
    BadRoute(String),
    /// The name is not in the registry.
    #[error("no provider named {0:?} in the registry")]
    UnknownName(String),
    /// The record's endpoint is not a URL the gateway can dial.
    #[error("provider {name}'s endpoint {url:?} is not usable: {reason}")]
    BadEndpoint {
        /// The provider.
        name: String,
        /// What the registry says.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The endpoint resolves to an address the gateway refuses to dial (SSRF guard).
    #[error(
        "provider {name}'s endpoint resolves to {addr}, {why}: the gateway does not forward there"
    )]
    Forbidden {
        /// The provider.
        name: String,
        /// The refused address.
        addr: std::net::SocketAddr,
        /// Which range it is in.
        why: Denied,
    },
    /// The provider registered the gateway's tunnel URL but is not connected now.
    #[error("provider {0} is reachable only through its tunnel, and it is not connected")]
    TunnelDown(String),
    /// Connecting to the provider failed or took too long.
    #[error("cannot reach provider {name}: {reason}")]
    Unreachable {
        /// The provider.
        name: String,
        /// Why.
        reason: String,
    },
    /// The exchange with the provider failed after the request was sent (it may have
    /// reached the function: never retried elsewhere unless idempotent).
    #[error("provider {name} failed: {reason}")]
    Upstream {
        /// The provider.
        name: String,
        /// Why.
        reason: String,
    },
    /// The provider did not send its response head in time.
    #[error("provider {0} did not answer in time")]
    UpstreamTimeout(String),
    /// Too many lookups or requests in flight: the caller should come back later.
    #[error("the gateway is busy: {0}")]
    Busy(&'static str),
    /// No provider serving public deployments passes the filters.
    #[error("no provider can serve this public deployment: {0}")]
    NoProvider(String),
    /// The TLS certificate or key cannot be used (a startup error).
    #[error("TLS: {0}")]
    Tls(String),
    /// The registry could not be read.
    #[error("cannot read the registry: {0}")]
    Registry(String),
}

impl GatewayError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRoute(_) => StatusCode::NOT_FOUND,
            Self::UnknownName(_) => StatusCode::NOT_FOUND,
            Self::BadEndpoint { .. } | Self::Forbidden { .. } => StatusCode::BAD_GATEWAY,
            Self::TunnelDown(_) | Self::Unreachable { .. } | Self::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Busy(_) | Self::Registry(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoProvider(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Tls(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::BadRoute(_) => "call /{name}/{cid}/..., {name}.{domain}/{cid}/... or /{cid}/... for a public deployment",
            Self::UnknownName(_) => "check the name with `khachapuri registry list`",
            Self::BadEndpoint { .. } | Self::Forbidden { .. } => {
                "the provider's registry record must name a public http(s) endpoint"
            }
            Self::TunnelDown(_) => "the provider must run `khachapuri provider run --tunnel`; try again later",
            Self::Unreachable { .. } | Self::Upstream { .. } | Self::UpstreamTimeout(_) => {
                "try again later or another provider"
            }
            Self::Busy(_) | Self::Registry(_) | Self::NoProvider(_) => "retry after the Retry-After delay",
            Self::Tls(_) => "pass a PEM certificate chain and its PEM private key",
        }
    }

    /// Whether a 503 should carry `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Busy(_) | Self::Registry(_) | Self::NoProvider(_) => Some(1),
            _ => None,
        }
    }
}
