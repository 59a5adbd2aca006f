//! The provider's error type and its one mapping to HTTP answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request was not answered by the function.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The node configuration is unusable.
    #[error("invalid provider configuration: {0}")]
    Config(String),
    /// The path does not start with a CID.
    #[error("{0:?} is not a CID")]
    BadCid(String),
    /// Neither the local store nor any gateway has the content.
    #[error("content {cid} not found: {reason}")]
    NotFound {
        /// The CID asked for.
        cid: String,
        /// What the sources said.
        reason: String,
    },
    /// The content exists but cannot be fetched or verified right now.
    #[error("cannot fetch {cid}: {reason}")]
    Fetch {
        /// The CID asked for.
        cid: String,
        /// What went wrong.
        reason: String,
    },
    /// The CID does not name a deployment this node can run.
    #[error("{0}")]
    Spec(String),
    /// The spec was sealed to another provider or signed by someone else.
    #[error("{0}")]
    Forbidden(String),
    /// The request body exceeds the limit.
    #[error("request body exceeds {limit} bytes")]
    RequestTooLarge {
        /// The limit that applied.
        limit: u64,
    },
    /// Every instance slot is busy; retry shortly.
    #[error("all {0} instance slots are busy, retry shortly")]
    Busy(usize),
    /// The guest ran and faulted (or the runtime refused it); status chosen by the runtime.
    #[error("{message}")]
    Guest {
        /// HTTP status the fault maps to.
        status: u16,
        /// What happened, safe to show the caller.
        message: String,
    },
    /// A bug or an I/O failure on this node.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProviderError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Config(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::BadCid(_) => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Fetch { .. } => StatusCode::BAD_GATEWAY,
            Self::Spec(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Guest { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// A short machine-readable kind for the JSON body and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::BadCid(_) => "bad_cid",
            Self::NotFound { .. } => "not_found",
            Self::Fetch { .. } => "fetch",
            Self::Spec(_) => "spec",
            Self::Forbidden(_) => "forbidden",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::Busy(_) => "busy",
            Self::Guest { .. } => "guest_fault",
            Self::Internal(_) => "internal",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::BadCid(_) => Some("call /{cid}/{path} with the callable CID that deploy printed"),
            Self::NotFound { .. } => {
                Some("was it deployed to a store this provider reads from? check `khachapuri info`")
            }
            Self::Busy(_) => Some("retry after the number of seconds in Retry-After"),
            Self::RequestTooLarge { .. } => Some("send a smaller body"),
            _ => None,
        }
    }
}

impl ProviderError {
    /// Maps a store failure for `cid` to an answer: absent content is 404, everything
    /// else (bad bytes from a gateway, size caps, outages) is the upstream's fault.
    pub fn from_store(cid: &khachapuri_types::Cid, e: khachapuri_store::StoreError) -> Self {
        use khachapuri_store::StoreError as S;
        let cid = cid.to_string();
        match e {
            S::NotFound(_) => Self::NotFound {
                cid,
                reason: "no source has it".into(),
            },
            S::AllSourcesFailed { ref attempts, .. }
                if attempts
                    .iter()
                    .all(|a| a.contains("not found") || a.contains("404")) =>
            {
                Self::NotFound {
                    cid,
                    reason: e.to_string(),
                }
            }
            S::TooLarge { .. } | S::Unsupported { .. } | S::InvalidBlock { .. } => {
                Self::Spec(format!("cannot use {cid}: {e}"))
            }
            other => Self::Fetch {
                cid,
                reason: other.to_string(),
            },
        }
    }
}

impl From<khachapuri_runtime::RuntimeError> for ProviderError {
    fn from(e: khachapuri_runtime::RuntimeError) -> Self {
        use khachapuri_runtime::RuntimeError as R;
        match e {
            R::Busy(n) => Self::Busy(usize::try_from(n).unwrap_or(usize::MAX)),
            R::RequestTooLarge { limit } => Self::RequestTooLarge {
                limit: limit as u64,
            },
            other => Self::Guest {
                status: other.http_status(),
                message: other.to_string(),
            },
        }
    }
}

impl IntoResponse for ProviderError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string(), "kind": self.kind() });
        if let Some(h) = self.hint() {
            body["hint"] = json!(h);
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if matches!(self, Self::Busy(_)) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_carries_retry_after() {
        let r = ProviderError::Busy(4).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn guest_status_is_kept() {
        let e = ProviderError::Guest {
            status: 504,
            message: "deadline".into(),
        };
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let e = ProviderError::Guest {
            status: 1000,
            message: "?".into(),
        };
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
