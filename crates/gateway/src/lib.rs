//! The Khachapuri gateway: `{name}.{domain}/{cid}` and `/{name}/{cid}` resolved through
//! the on-chain registry and proxied to the provider (directly, with every address checked
//! against SSRF, or over the provider's tunnel), and `/{cid}` of public deployments routed
//! among providers by load, latency, price and reputation.

mod addr;
mod body;
mod config;
mod error;
mod gateway;
mod launch;
mod proxy;
mod public;
mod resolve;
mod select;
mod server;
mod tunnels;

pub use addr::{classify, AddressPolicy, Denied};
pub use body::{full, proxied, BoxError, IdleTimeout, ProxyBody};
pub use config::GatewayConfig;
pub use error::GatewayError;
pub use gateway::{error_response, route, Gateway, Route, Tunnels};
pub use launch::{launch, Extras, Launched};
pub use proxy::{append_forwarded, strip_hop_by_hop, Incoming, Proxy};
pub use public::{Attempt, Public, PROVIDER_HEADER};
pub use resolve::{
    valid_name, watch_registry, BoxFuture, ChainRegistry, Registry, Resolved, Resolver, Upstream,
};
pub use select::{rank, rank_registry, typical_price, Excluded, Preferences, Ranked};
pub use server::{serve, tls_acceptor, Hook};
pub use tunnels::{tunnel_hook, RegistryOperators, TunnelSet};
