//! The gateway's settings, resolved once (defaults → file → flags) by the caller.

use std::net::SocketAddr;
use std::path::PathBuf;

use khachapuri_chain::Address;
use serde::{Deserialize, Serialize};

/// Everything `gateway run` needs. Every limit is here so that an operator can see and
/// tune what a flood of strangers' requests can cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where to listen; loopback by default so a fresh gateway is not exposed by accident.
    pub listen: SocketAddr,
    /// `{name}.{domain}` in the Host header routes to `name`; `localhost` for dev.
    pub domain: String,
    /// Allow providers on loopback (everything on one machine). Never in production: it
    /// would let any registry record point the gateway at the machine's own services.
    pub dev: bool,
    /// The chain's JSON-RPC endpoint (the registry is read there).
    pub rpc_url: String,
    /// The Registry contract.
    pub registry: Address,
    /// Block to start watching registry events from (0: the current head).
    pub registry_from_block: u64,
    /// PEM certificate chain (a wildcard for `*.{domain}`); with `tls_key`, the gateway
    /// speaks TLS (HTTP/1.1 and HTTP/2) instead of plain HTTP/1.1.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Accept provider tunnels at `/.well-known/khachapuri/tunnel` (providers behind NAT
    /// register `http(s)://{name}.{domain}` and dial in).
    pub tunnels: bool,
    /// The host providers dial the tunnel at, bound into every challenge (default: the
    /// domain).
    pub tunnel_host: Option<String>,
    /// Seconds a resolved name (record and checked addresses) is reused; registry events
    /// clear it sooner.
    pub resolve_ttl_secs: u64,
    /// Seconds an unknown name is remembered as unknown, so a flood of random names costs
    /// one registry read each per this period, not one per request.
    pub negative_ttl_secs: u64,
    /// Most names kept resolved (LRU beyond).
    pub max_cached_names: usize,
    /// Most registry reads or DNS lookups in flight; more get 503 + Retry-After.
    pub max_concurrent_lookups: usize,
    /// Milliseconds one registry read or DNS lookup may take.
    pub lookup_timeout_ms: u64,
    /// Milliseconds between registry event polls (cache invalidation).
    pub event_poll_ms: u64,
    /// Milliseconds to open a TCP connection to a provider.
    pub connect_timeout_ms: u64,
    /// Milliseconds from sending a request to the provider's response head. Covers the
    /// function's run time for answers that are not streamed, so it is generous.
    pub response_timeout_ms: u64,
    /// Milliseconds a body (either way) may stay silent before the exchange is cut.
    pub idle_timeout_ms: u64,
    /// Milliseconds a client has to send its request head (slowloris).
    pub header_read_timeout_ms: u64,
    /// Most client connections open at once; more wait in the accept queue.
    pub max_connections: usize,
    /// Milliseconds in-flight requests get to finish on shutdown.
    pub drain_timeout_ms: u64,
    /// Idle pooled connections kept per provider.
    pub pool_max_idle_per_host: usize,
    /// Public routing: providers whose per-request price exceeds this (in the pricing
    /// tables' unit, millionths of a token base unit) are never picked; `None`: no cap.
    pub max_price_per_request: Option<u64>,
    /// Public routing: only providers in this region (`None`: any).
    pub region: Option<String>,
    /// Public routing: seconds between refreshes of the list of providers.
    pub providers_refresh_secs: u64,
    /// Public routing: retries on another provider as a fraction of requests (a retry
    /// budget, so a failing network is not hammered twice as hard), e.g. 0.2.
    pub retry_budget_ratio: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8088).into(),
            domain: "localhost".into(),
            dev: false,
            rpc_url: "http://127.0.0.1:8545".into(),
            registry: Address::ZERO,
            registry_from_block: 0,
            tls_cert: None,
            tls_key: None,
            tunnels: true,
            tunnel_host: None,
            resolve_ttl_secs: 60,
            negative_ttl_secs: 5,
            max_cached_names: 10_000,
            max_concurrent_lookups: 32,
            lookup_timeout_ms: 5_000,
            event_poll_ms: 2_000,
            connect_timeout_ms: 5_000,
            response_timeout_ms: 60_000,
            idle_timeout_ms: 60_000,
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            drain_timeout_ms: 10_000,
            pool_max_idle_per_host: 64,
            max_price_per_request: None,
            region: None,
            providers_refresh_secs: 30,
            retry_budget_ratio: 0.2,
        }
    }
}
