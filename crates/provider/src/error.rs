//! The provider's error type and its one mapping to HTTP answers.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use khachapuri_payments::PaymentError;
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
    /// The spec asks for a runtime this node does not run (`process` is opt-in).
    #[error("this provider does not run `{runtime}` functions (it runs: {offered})")]
    RuntimeUnavailable {
        /// The runtime the spec asks for.
        runtime: &'static str,
        /// The node's `runtimes`, comma-separated.
        offered: String,
    },
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
    /// Too many artifacts are being fetched and compiled; retry shortly.
    #[error("{0} artifact compiles are running or queued, retry shortly")]
    CompileBusy(usize),
    /// Too many envelope/spec fetches (before payment) are running; retry shortly.
    #[error("{0} deployment spec fetches are running, retry shortly")]
    SpecFetchBusy(usize),
    /// Fetching and compiling the artifact took longer than the node's budget (it may
    /// still finish in the background and serve the next call).
    #[error("fetching and compiling the artifact exceeded {ms} ms")]
    CompileTimeout {
        /// The budget that applied.
        ms: u64,
    },
    /// The guest ran and faulted (or the runtime refused it); status chosen by the runtime.
    #[error("{message}")]
    Guest {
        /// HTTP status the fault maps to.
        status: u16,
        /// What happened, safe to show the caller.
        message: String,
    },
    /// A payment was missing, refused, or could not be checked. `body` is the JSON of a
    /// `402 Payment Required` (price, provider, escrow, chain id, epoch, consumed,
    /// authorized) when more money is needed.
    #[error("{error}")]
    Payment {
        /// What went wrong, with its status ([`PaymentError::status_code`]).
        error: PaymentError,
        /// The 402 body, when the caller must pay (more).
        body: Option<serde_json::Value>,
    },
    /// A payment endpoint was asked of a node that does not take payments.
    #[error("{0}")]
    NotPaid(String),
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
            Self::RuntimeUnavailable { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_)
            | Self::CompileBusy(_)
            | Self::SpecFetchBusy(_)
            | Self::CompileTimeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Guest { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Payment { error, .. } => payment_status(error),
            Self::NotPaid(_) => StatusCode::NOT_FOUND,
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
            Self::RuntimeUnavailable { .. } => "runtime_unavailable",
            Self::Forbidden(_) => "forbidden",
            Self::RequestTooLarge { .. } => "request_too_large",
            Self::Busy(_) => "busy",
            Self::CompileBusy(_) => "compile_busy",
            Self::SpecFetchBusy(_) => "spec_fetch_busy",
            Self::CompileTimeout { .. } => "compile_timeout",
            Self::Guest { .. } => "guest_fault",
            Self::Payment { error, .. } => payment_kind(error),
            Self::NotPaid(_) => "not_paid",
            Self::Internal(_) => "internal",
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Self::BadCid(_) => Some("call /{cid}/{path} with the callable CID that deploy printed"),
            Self::NotFound { .. } => {
                Some("was it deployed to a store this provider reads from? check `khachapuri info`")
            }
            Self::Busy(_)
            | Self::CompileBusy(_)
            | Self::SpecFetchBusy(_)
            | Self::CompileTimeout { .. } => {
                Some("retry after the number of seconds in Retry-After")
            }
            Self::RequestTooLarge { .. } => Some("send a smaller body"),
            Self::RuntimeUnavailable { .. } => Some(
                "deploy to a provider whose /.well-known/khachapuri lists this runtime under `runtimes`",
            ),
            Self::Payment { error, .. } => Some(payment_hint(error)),
            _ => None,
        }
    }
}

impl ProviderError {
    /// Seconds the caller should wait before retrying (`Retry-After`), for the answers
    /// that are about load rather than the request.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Busy(_)
            | Self::CompileBusy(_)
            | Self::SpecFetchBusy(_)
            | Self::CompileTimeout { .. } => Some(1),
            Self::Payment {
                error:
                    PaymentError::TooManySignatureChecks {
                        retry_after_secs, ..
                    },
                ..
            } => Some((*retry_after_secs).max(1)),
            _ => None,
        }
    }

    /// Whether this is the per-client limit on signature checks (counted in `/metrics`).
    pub fn is_signature_limited(&self) -> bool {
        matches!(
            self,
            Self::Payment {
                error: PaymentError::TooManySignatureChecks { .. },
                ..
            }
        )
    }

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

impl From<PaymentError> for ProviderError {
    fn from(error: PaymentError) -> Self {
        Self::Payment { error, body: None }
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

/// The one place payment failures become HTTP statuses: 400 malformed header, 401 bad
/// signature, 402 when more money is needed (with a quote), 403 for a voucher that can
/// never pay here (other provider, old epoch, channel closing), 429 past the per-client
/// limit on signature checks, 502 when the chain fails, 500 for the node's own failures.
fn payment_status(e: &PaymentError) -> StatusCode {
    match e {
        PaymentError::MalformedHeader(_) => StatusCode::BAD_REQUEST,
        PaymentError::BadSignature(_) => StatusCode::UNAUTHORIZED,
        PaymentError::PaymentRequired
        | PaymentError::InsufficientCredit { .. }
        | PaymentError::AboveFunds { .. } => StatusCode::PAYMENT_REQUIRED,
        PaymentError::WrongProvider { .. }
        | PaymentError::WrongEpoch { .. }
        | PaymentError::ChannelUnlocking { .. } => StatusCode::FORBIDDEN,
        PaymentError::TooManySignatureChecks { .. } => StatusCode::TOO_MANY_REQUESTS,
        PaymentError::Chain(_) => StatusCode::BAD_GATEWAY,
        PaymentError::Ledger(_)
        | PaymentError::Corrupt(_)
        | PaymentError::Task(_)
        | PaymentError::CannotSign => StatusCode::INTERNAL_SERVER_ERROR,
        // Caller-side errors: a provider never produces them.
        PaymentError::PriceTooHigh { .. }
        | PaymentError::ChannelShort { .. }
        | PaymentError::UnknownEscrow { .. }
        | PaymentError::MalformedPaymentRequired(_)
        | PaymentError::BadReceipt(_)
        | PaymentError::Http(_)
        | PaymentError::Wallet(_)
        | PaymentError::State { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Short machine-readable kind of a payment failure.
fn payment_kind(e: &PaymentError) -> &'static str {
    match e {
        PaymentError::PaymentRequired => "payment_required",
        PaymentError::InsufficientCredit { .. } => "insufficient_credit",
        PaymentError::MalformedHeader(_) => "malformed_payment",
        PaymentError::BadSignature(_) => "bad_signature",
        PaymentError::WrongProvider { .. } => "wrong_provider",
        PaymentError::WrongEpoch { .. } => "wrong_epoch",
        PaymentError::AboveFunds { .. } => "above_funds",
        PaymentError::ChannelUnlocking { .. } => "channel_unlocking",
        PaymentError::TooManySignatureChecks { .. } => "too_many_signature_checks",
        PaymentError::Chain(_) => "chain",
        PaymentError::Ledger(_) | PaymentError::Corrupt(_) | PaymentError::Task(_) => "ledger",
        PaymentError::CannotSign => "cannot_sign",
        // Caller-side errors: a provider never produces them.
        PaymentError::PriceTooHigh { .. }
        | PaymentError::ChannelShort { .. }
        | PaymentError::UnknownEscrow { .. }
        | PaymentError::MalformedPaymentRequired(_)
        | PaymentError::BadReceipt(_)
        | PaymentError::Http(_)
        | PaymentError::Wallet(_)
        | PaymentError::State { .. } => "internal",
    }
}

/// What the caller can do about a payment failure.
fn payment_hint(e: &PaymentError) -> &'static str {
    match e {
        PaymentError::PaymentRequired | PaymentError::InsufficientCredit { .. } => {
            "sign a voucher covering `price` more micro-units for this provider (`khachapuri call` does it from the active wallet)"
        }
        PaymentError::MalformedHeader(_) => {
            "Khachapuri-Payment is base64url of JSON {payer, provider, epoch, amount, signature}"
        }
        PaymentError::BadSignature(_) => {
            "sign the EIP-712 Voucher with the payer's key for this chain id and escrow (see /.well-known/khachapuri)"
        }
        PaymentError::WrongProvider { .. } => {
            "make the voucher out to this provider's address (see /.well-known/khachapuri)"
        }
        PaymentError::WrongEpoch { .. } => {
            "sign a voucher for the channel's current epoch (`khachapuri escrow status`)"
        }
        PaymentError::AboveFunds { .. } => {
            "fund the channel first: `khachapuri escrow fund PROVIDER AMOUNT`"
        }
        PaymentError::ChannelUnlocking { .. } => {
            "the channel is closing: reclaim it, then fund it again with `khachapuri escrow fund`"
        }
        PaymentError::TooManySignatureChecks { .. } => {
            "sign one voucher ahead for many calls and re-send it (prepaid calls are not limited); new vouchers and top-ups are limited per client: wait Retry-After seconds"
        }
        PaymentError::Chain(_) => "the provider cannot reach its chain node; retry shortly",
        PaymentError::Ledger(_) | PaymentError::Corrupt(_) | PaymentError::Task(_) => {
            "the provider's ledger failed; retry shortly or tell its operator"
        }
        PaymentError::CannotSign => {
            "this provider cannot sign receipts; call without Khachapuri-Sign-Receipt"
        }
        PaymentError::PriceTooHigh { .. }
        | PaymentError::ChannelShort { .. }
        | PaymentError::UnknownEscrow { .. }
        | PaymentError::MalformedPaymentRequired(_)
        | PaymentError::BadReceipt(_)
        | PaymentError::Http(_)
        | PaymentError::Wallet(_)
        | PaymentError::State { .. } => "an internal error of the provider; tell its operator",
    }
}

impl IntoResponse for ProviderError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Payment {
            error,
            body: Some(mut body),
        } = self
        {
            body["error"] = json!(error.to_string());
            body["kind"] = json!(payment_kind(&error));
            body["hint"] = json!(payment_hint(&error));
            return (status, axum::Json(body)).into_response();
        }
        let mut body = json!({ "error": self.to_string(), "kind": self.kind() });
        if let Some(h) = self.hint() {
            body["hint"] = json!(h);
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
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
    fn compile_limits_answer_503_with_retry_after() {
        for e in [
            ProviderError::CompileBusy(3),
            ProviderError::SpecFetchBusy(16),
            ProviderError::CompileTimeout { ms: 10 },
        ] {
            let r = e.into_response();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        }
    }

    #[test]
    fn signature_limit_answers_429_with_retry_after_and_a_hint() {
        let e = ProviderError::from(PaymentError::TooManySignatureChecks {
            client: "192.0.2.1".into(),
            per_sec: 20.0,
            retry_after_secs: 3,
        });
        assert!(e.is_signature_limited());
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert!(!ProviderError::Busy(1).is_signature_limited());
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
