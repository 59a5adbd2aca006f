//! Khachapuri's function runtime: one wasmtime engine with a pooling allocator, running
//! `wasi:http/proxy` components and WAGI (CGI over WASI preview1) modules with per-call
//! limits, an in-memory `InstancePre` cache and an on-disk compiled-code cache; and,
//! opt-in, the `process` runtime: native programs from tar/zip artifacts, unpacked
//! safely and run under bubblewrap with the same CGI convention as WAGI.
//!
//! The provider node calls [`Runtime::get`] / [`Runtime::load_cached`] /
//! [`Runtime::prepare`] to obtain a [`Prepared`] function, then [`Runtime::handle`] per
//! request; faults come back as [`RuntimeError`], mapped to HTTP by
//! [`RuntimeError::http_status`].

mod body;
mod cache;
mod cgi;
mod config;
mod engine;
mod error;
mod http_guest;
mod lru;
mod metrics;
mod process;
mod runtime;
mod state;
mod wagi;

pub use body::GuestBody;
pub use config::{CallOptions, GuestKind, Limits, ProcessConfig, RuntimeConfig};
pub use error::{FaultKind, RuntimeError};
pub use khachapuri_archive::UnpackLimits;
pub use lru::{ByteLru, CacheUsage, OnceLru};
pub use metrics::{Metrics, MetricsSnapshot};
pub use runtime::{Origin, Prepared, Runtime};
