//! Publishing a function: what `khachapuri deploy` does once it knows what to publish and
//! where. The spec is built from the function (runtime, env, limits) and the target (the
//! provider it is sealed to, a sponsor voucher), signed by its owner, sealed with HPKE to
//! the provider's X25519 key (or left public), and uploaded with its artifact; every CID
//! the store answers is checked against the one computed here, so a store with other
//! import settings cannot hand back a CID no provider finds the bytes under.

mod error;
mod publish;

pub use error::PublishError;
pub use publish::{publish, upload_checked, Function, Published, SealTo, Sponsor};
