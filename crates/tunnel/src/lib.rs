//! placeholder
mod body;
mod client;
mod config;
mod error;
pub mod handshake;
mod nonce;
mod server;
mod ws_io;

pub use body::TunnelBody;
pub use client::{run_tunnel, TunnelClient, TunnelSigner, TunnelState, ViaTunnel};
pub use config::{ClientConfig, H2Config, ServerConfig};
pub use error::{BoxError, RefusalCode, TunnelError};
pub use nonce::NonceStore;
pub use server::{LookupFuture, OperatorLookup, StaticOperators, TunnelHandle, TunnelServer, TUNNEL_PATH};
