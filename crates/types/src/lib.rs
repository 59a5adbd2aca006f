//! Wire types shared by every Khachapuri component.
//!
//! This crate does no I/O so that the store, the runtime, the chain layer and the CLI
//! can all agree on encodings without depending on each other.

mod cid;
mod error;
pub mod multibase;
mod spec;

pub use cid::{Cid, DAG_PB, RAW, SHA2_256};
pub use error::TypesError;
pub use spec::{
    Envelope, Limits, PayerPolicy, RedactedEnv, RuntimeKind, Spec, REDACTED, SPEC_VERSION,
};
