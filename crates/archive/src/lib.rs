//! Unpacking the tar or zip artifact of a `process` deployment, safely: it comes from a
//! stranger, so nothing in it may reach outside its directory, carry privileges in, or
//! grow past its bounds. Its own crate (no wasmtime) so it can be fuzzed on its own.

mod unpack;

pub use unpack::{remove_tree, unpack, UnpackError, UnpackLimits, MAIN};
