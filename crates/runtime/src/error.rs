//! The one error type of the runtime, and its mapping to HTTP answers.

use std::time::Duration;

/// Everything that can go wrong preparing or running a function. Faults caused by the
/// guest are ordinary values: the node turns them into answers with [`RuntimeError::http_status`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The artifact is not valid WebAssembly of the expected kind, or fails to link.
    #[error("invalid {kind} artifact: {reason}")]
    InvalidArtifact {
        /// The expected guest kind.
        kind: crate::GuestKind,
        /// What the compiler or linker said.
        reason: String,
    },
    /// The guest trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("function trapped: {0}")]
    Trap(String),
    /// The guest ran past its wall-clock budget.
    #[error("function exceeded its time limit of {0:?}")]
    Deadline(Duration),
    /// The guest tried to grow a linear memory beyond its limit.
    #[error("function exceeded its memory limit of {limit} bytes")]
    MemoryExhausted {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request body is larger than the call's limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The guest produced a response body larger than the call's limit.
    #[error("response body exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// All instance slots are in use; retry shortly.
    #[error("all {0} instance slots are busy")]
    Busy(u32),
    /// The guest broke its interface contract (no response, bad CGI output, non-zero exit).
    #[error("function misbehaved: {0}")]
    BadResponse(String),
    /// The request body did not arrive within the server's read deadline.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The request could not be handed to the guest (e.g. the client's body stream failed).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The runtime the spec asks for is not enabled on this node (`process` is opt-in).
    #[error("this node does not run `{0}` functions")]
    Unavailable(crate::GuestKind),
    /// A fault on our side: disk cache I/O, engine setup, a panicked compile task.
    #[error("runtime failure: {0}")]
    Internal(String),
}

impl RuntimeError {
    /// The HTTP status the node answers with. The one place this mapping lives.
    pub fn http_status(&self) -> u16 {
        match self {
            RuntimeError::RequestTooLarge { .. } => 413,
            RuntimeError::BadRequest(_) => 400,
            RuntimeError::RequestTimeout => 408,
            RuntimeError::Deadline(_) => 504,
            RuntimeError::Busy(_) => 503,
            RuntimeError::Unavailable(_) => 501,
            RuntimeError::ResponseTooLarge { .. } | RuntimeError::BadResponse(_) => 502,
            RuntimeError::InvalidArtifact { .. }
            | RuntimeError::Trap(_)
            | RuntimeError::MemoryExhausted { .. }
            | RuntimeError::Internal(_) => 500,
        }
    }

    /// Seconds for a `Retry-After` header, for errors where retrying later helps.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            RuntimeError::Busy(_) => Some(1),
            _ => None,
        }
    }

    /// A short stable label for metrics and logs (`trap`, `deadline`, ...).
    pub fn kind(&self) -> FaultKind {
        match self {
            RuntimeError::InvalidArtifact { .. } => FaultKind::InvalidArtifact,
            RuntimeError::Trap(_) => FaultKind::Trap,
            RuntimeError::Deadline(_) => FaultKind::Deadline,
            RuntimeError::MemoryExhausted { .. } => FaultKind::Memory,
            RuntimeError::RequestTooLarge { .. } => FaultKind::RequestTooLarge,
            RuntimeError::ResponseTooLarge { .. } => FaultKind::ResponseTooLarge,
            RuntimeError::Busy(_) => FaultKind::Busy,
            RuntimeError::BadResponse(_) => FaultKind::BadResponse,
            RuntimeError::BadRequest(_) | RuntimeError::RequestTimeout => FaultKind::BadRequest,
            RuntimeError::Unavailable(_) | RuntimeError::Internal(_) => FaultKind::Internal,
        }
    }
}

/// Fault categories, one metrics counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// See [`RuntimeError::InvalidArtifact`].
    InvalidArtifact,
    /// See [`RuntimeError::Trap`].
    Trap,
    /// See [`RuntimeError::Deadline`].
    Deadline,
    /// See [`RuntimeError::MemoryExhausted`].
    Memory,
    /// See [`RuntimeError::RequestTooLarge`].
    RequestTooLarge,
    /// See [`RuntimeError::ResponseTooLarge`].
    ResponseTooLarge,
    /// See [`RuntimeError::Busy`].
    Busy,
    /// See [`RuntimeError::BadResponse`].
    BadResponse,
    /// See [`RuntimeError::BadRequest`].
    BadRequest,
    /// See [`RuntimeError::Internal`].
    Internal,
}

impl FaultKind {
    /// Every kind, in a fixed order (for exporting counters).
    pub const ALL: [FaultKind; 10] = [
        FaultKind::InvalidArtifact,
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::RequestTooLarge,
        FaultKind::ResponseTooLarge,
        FaultKind::Busy,
        FaultKind::BadResponse,
        FaultKind::BadRequest,
        FaultKind::Internal,
    ];

    /// A stable snake_case label, e.g. for a Prometheus `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::InvalidArtifact => "invalid_artifact",
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::RequestTooLarge => "request_too_large",
            FaultKind::ResponseTooLarge => "response_too_large",
            FaultKind::Busy => "busy",
            FaultKind::BadResponse => "bad_response",
            FaultKind::BadRequest => "bad_request",
            FaultKind::Internal => "internal",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
