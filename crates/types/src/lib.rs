//! Wire types shared by every Khachapuri component.
//!
//! This crate does no I/O so that the store, the runtime, the chain layer and the CLI
//! can all agree on encodings without depending on each other.

mod error;
mod spec;

pub use error::TypesError;
pub use spec::{Envelope, Limits, PayerPolicy, RuntimeKind, Spec, SPEC_VERSION};
