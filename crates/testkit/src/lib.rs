//! Test-only helpers shared by the runtime, provider and CLI tests: build the example
//! and fault guests once (cached under `target/guests/`) and return their bytes.
//!
//! Panics are the right failure mode here: these run only inside tests.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

mod guests;
mod native;

pub use guests::{c_hello, echo, faults, hello, root, rust_guest, rust_guest_path, wagi_wat};
pub use native::{native_c, native_hello, tar_of, tar_with_symlink, zip_bomb};
