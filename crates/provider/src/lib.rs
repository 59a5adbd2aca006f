//! The Khachapuri provider node: serves `ANY /{cid}/...` by running the deployment's
//! function in the runtime, plus health, metrics, discovery and a trustless gateway.

mod admission;
mod compile;
mod config;
mod error;
mod http;
mod metrics;
mod node;
mod p2p;
mod p2p_config;
mod paid;
mod payments_config;
mod respond;
mod server;
mod settlement;
mod tunnel;

pub use admission::{
    Admission, BoxFuture, CallInfo, CallLimits, Free, SignatureLimitStats, Ticket, Usage,
};
pub use config::{NodeConfig, KNOWN_RUNTIMES};
pub use error::ProviderError;
pub use http::router;
pub use khachapuri_runtime::CacheUsage;
pub use khachapuri_store::BlockCacheUsage;
pub use khachapuri_tunnel::TunnelState;
pub use metrics::Metrics;
pub use node::{Deployment, Node, NodeCacheUsage, RECEIPT_HEADER};
pub use p2p::{
    attest_preview, start_configured_p2p, start_p2p, AttestPreview, Attester, P2pFacts, NO_TEE,
};
pub use p2p_config::P2pSection;
pub use paid::{Paid, PaidTerms};
pub use payments_config::{
    connect_payments, format_micro_usdc, parse_micro_usdc, PaidSetup, PaymentsConfig, PriceList,
};
pub use server::serve;
pub use settlement::Settlement;
pub use tunnel::{serve_tunnel, tunnel_router};
