//! Publisher ↔ provider over libp2p (seed 003): TCP + noise + yamux and QUIC, identify,
//! Kademlia under `/khachapuri/kad/1.0.0` where providers announce themselves, relay v2
//! and DCUtR, and three request-response protocols with size-capped protobuf messages:
//! `/khachapuri/attest/1`, `/khachapuri/capacity/1`, `/khachapuri/provision/1`.
//!
//! Both sides of the protocols live here: [`P2pNode`] transports, a [`Responder`] (the
//! provider node) answers, and [`publisher`] runs and checks the publisher's steps.

mod answer;
mod behaviour;
pub mod codec;
mod config;
mod error;
mod identity;
pub mod messages;
mod node;
pub mod protocol;
pub mod publisher;
pub mod signing;

pub use answer::{address, open_order, refusal, sign_offer, sign_result, Order};
pub use config::P2pConfig;
pub use error::P2pError;
pub use identity::load_or_create_key;
pub use libp2p::identity::Keypair;
pub use libp2p::{multiaddr, Multiaddr, PeerId};
pub use node::{P2pNode, Responder};
