//! The one error type of the store. Callers (provider, CLI) match on it to decide between
//! "not found", "someone served us bad data" and plain I/O trouble.

use khachapuri_types::{Cid, TypesError};

/// Everything that can go wrong reading, writing, serving or fetching content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Local disk trouble.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A CID that could not be parsed or is not supported.
    #[error(transparent)]
    Cid(#[from] TypesError),
    /// No source had the block.
    #[error("block {0} not found")]
    NotFound(Cid),
    /// Bytes that do not hash to the CID they were served as: never stored, never used.
    #[error("block {cid} does not match its CID (served by {source_name})")]
    HashMismatch {
        /// The CID that was asked for.
        cid: Cid,
        /// Who served the bad bytes (gateway URL, `local`, ...).
        source_name: String,
    },
    /// A block or node that does not decode as dag-pb / UnixFS.
    #[error("invalid block {cid}: {reason}")]
    InvalidBlock {
        /// The offending block.
        cid: Cid,
        /// What is wrong with it.
        reason: String,
    },
    /// Malformed protobuf or CAR bytes that are not attributed to a CID yet.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded (`dag-pb`, `CAR`, ...).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A CAR stream that ended before the whole DAG was sent.
    #[error("incomplete CAR for {root}: {reason}")]
    IncompleteCar {
        /// Root the CAR was asked for.
        root: Cid,
        /// What was missing.
        reason: String,
    },
    /// A response, block or file larger than the configured cap.
    #[error("{what} exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The cap that was hit.
        limit: u64,
    },
    /// A walk or fetch of a DAG that ran out of time.
    #[error("{what} exceeded its deadline of {limit_ms} ms")]
    Deadline {
        /// What was cut short.
        what: &'static str,
        /// The deadline that applied.
        limit_ms: u64,
    },
    /// A codec we cannot walk (only raw and dag-pb UnixFS files are supported).
    #[error("unsupported content {cid}: {reason}")]
    Unsupported {
        /// The block.
        cid: Cid,
        /// Why it is unsupported.
        reason: String,
    },
    /// A remote (gateway, Kubo) answered with an error or could not be reached.
    #[error("{url}: {reason}")]
    Remote {
        /// Which endpoint failed.
        url: String,
        /// Status or transport error.
        reason: String,
    },
    /// Every configured source failed; each attempt is listed.
    #[error("could not fetch {cid} from any source: {}", attempts.join("; "))]
    AllSourcesFailed {
        /// What was being fetched.
        cid: Cid,
        /// One line per source tried.
        attempts: Vec<String>,
    },
    /// A publishing request without the server's bearer token (or with a wrong one).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A request argument the server cannot honour (e.g. Kubo flags of another profile).
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
