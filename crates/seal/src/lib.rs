//! Sealed deployment specs: a spec encrypted to one provider's X25519 key with RFC 9180
//! HPKE (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), the
//! provider's address bound as associated data, so secrets in a spec's env are readable
//! by that provider only while the envelope itself sits on public IPFS.

mod envelope;
mod error;
mod hpke;
pub mod keyfile;

pub use envelope::{open, seal, INFO};
pub use error::SealError;
pub use keyfile::{generate_secret, load_key_file, load_or_create_key_file, public_key};
