//! Limits and timings of both sides, with the reasons for their defaults.

use std::sync::Arc;
use std::time::Duration;

/// HTTP/2 and WebSocket settings both sides set the same way.
#[derive(Debug, Clone)]
pub struct H2Config {
    /// Initial HTTP/2 stream window (bytes): the most one stream can have in flight
    /// unacknowledged. 4 MiB keeps one stream near line rate up to ~100 ms RTT × 320
    /// Mbit/s (on a loaded loopback box 8 MiB windows gave ~1.7× the 1 MiB throughput of
    /// one 100 MiB response); what a slow reader can make us buffer stays bounded by
    /// `connection_window`, which all streams share.
    pub stream_window: u32,
    /// Initial HTTP/2 connection window (bytes): the sum over all streams of one tunnel.
    /// 8 MiB lets several large transfers share the tunnel without one starving the rest.
    pub connection_window: u32,
    /// Largest HTTP/2 frame we accept (bytes; HTTP/2 allows 16 KiB to 16 MiB - 1). The
    /// default 16 KiB costs one WebSocket message and one copy per 16 KiB; 64 KiB gave
    /// ~1.6× the tunnel's throughput for one 100 MiB response on loopback, and HTTP/2
    /// still interleaves streams at that grain.
    pub max_frame_size: u32,
    /// Interval of HTTP/2 PINGs, sent even when idle. 20 s stays under the idle timeouts
    /// of common NATs and load balancers (30–60 s) so the path stays open, and finds a dead
    /// peer within `ping_interval + ping_timeout`.
    pub ping_interval: Duration,
    /// How long a PING may go unanswered before the tunnel is declared dead and closed
    /// (the provider then reconnects). 20 s tolerates a congested link.
    pub ping_timeout: Duration,
    /// Largest WebSocket message or frame accepted (bytes). The tunnel's own writes are at
    /// most 256 KiB (so this must be at least that, checked at construction); 1 MiB leaves
    /// headroom and caps what one message can make us buffer.
    pub max_ws_message: usize,
}

impl H2Config {
    /// Refuses settings the tunnel cannot run with (frame size outside HTTP/2's range, a
    /// WebSocket message limit below what the peer writes).
    pub(crate) fn check(&self) -> Result<(), crate::TunnelError> {
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return Err(crate::TunnelError::Config(
                "max_frame_size must be 16 KiB to 16 MiB - 1".into(),
            ));
        }
        if self.max_ws_message < crate::ws_io::MAX_CHUNK {
            return Err(crate::TunnelError::Config(format!(
                "max_ws_message must be at least {} bytes (the tunnel's largest write)",
                crate::ws_io::MAX_CHUNK
            )));
        }
        Ok(())
    }
}

impl Default for H2Config {
    fn default() -> Self {
        Self {
            stream_window: 4 << 20,
            connection_window: 8 << 20,
            max_frame_size: 64 << 10,
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            max_ws_message: 1 << 20,
        }
    }
}

/// The gateway side's configuration ([`crate::TunnelServer`]).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The gateway's own host name as providers dial it (no port, lowercase), bound into
    /// every challenge. A provider refuses a challenge for another host, so a signature
    /// obtained by a rogue gateway cannot be replayed at this one.
    pub host: String,
    /// Chain id of the registry the gateway resolves names on, bound into every challenge.
    pub chain_id: u64,
    /// Most tunnels served at once. Each costs a socket, HTTP/2 state and up to
    /// `connection_window` of buffered data; 10 000 bounds that to what one gateway can hold.
    pub max_tunnels: usize,
    /// Deadline for the whole handshake (WebSocket upgrade to `accepted`), registry lookup
    /// included. 10 s is generous for a signature and one RPC, and short enough that
    /// idle sockets cannot pile up.
    pub handshake_timeout: Duration,
    /// How long a nonce stays valid. Longer than `handshake_timeout` so an honest answer
    /// never races its nonce's expiry; the nonce is single-use anyway.
    pub nonce_ttl: Duration,
    /// Most handshakes in progress (= outstanding nonces). When reached, new tunnels are
    /// refused as `busy` rather than evicting others' nonces. 1024 bounds a handshake flood.
    pub max_outstanding_nonces: usize,
    /// Most requests in flight on one tunnel, enforced by the gateway whatever the
    /// provider advertises; beyond it `send_request` fails fast with `Overloaded` (503)
    /// instead of queueing without bound.
    pub max_streams_per_tunnel: usize,
    /// How long a drained tunnel (replaced by a newer one, or at `shutdown`) may take to
    /// finish its in-flight requests before it is closed. 30 s: long enough for ordinary
    /// calls, bounded so a stuck stream cannot hold a shutdown forever.
    pub drain_timeout: Duration,
    /// HTTP/2 and WebSocket settings.
    pub h2: H2Config,
}

impl ServerConfig {
    /// Defaults for everything except what only the deployment knows.
    pub fn new(host: impl Into<String>, chain_id: u64) -> Self {
        Self {
            host: host.into(),
            chain_id,
            max_tunnels: 10_000,
            handshake_timeout: Duration::from_secs(10),
            nonce_ttl: Duration::from_secs(30),
            max_outstanding_nonces: 1024,
            max_streams_per_tunnel: 256,
            drain_timeout: Duration::from_secs(30),
            h2: H2Config::default(),
        }
    }
}

/// The provider side's configuration ([`crate::TunnelClient`]).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The gateway, as `http(s)://host[:port]` or `ws(s)://host[:port]`; the tunnel path
    /// is appended. `https`/`wss` use TLS.
    pub gateway_url: String,
    /// The registered provider name this tunnel serves.
    pub name: String,
    /// When set, a challenge for another chain is refused (the provider would otherwise
    /// prove its key for a registry it is not registered on).
    pub chain_id: Option<u64>,
    /// Deadline for TCP connect, TLS and the WebSocket upgrade together.
    pub connect_timeout: Duration,
    /// Deadline for the signed handshake after the upgrade.
    pub handshake_timeout: Duration,
    /// First reconnect delay; doubled per failed attempt up to `backoff_max`, each delay
    /// drawn uniformly from its upper half (jitter, so providers cut off by one gateway
    /// restart do not reconnect in lockstep). 250 ms makes a gateway restart cost well
    /// under a second.
    pub backoff_initial: Duration,
    /// Ceiling of the reconnect delay: 30 s keeps an outage from costing the gateway more
    /// than one attempt per provider every ~half minute.
    pub backoff_max: Duration,
    /// Delay after a refusal retrying cannot fix (wrong key, unregistered name, wrong
    /// gateway): 5 min, so a misconfigured provider does not hammer the gateway while its
    /// operator fixes the registry record.
    pub refused_backoff: Duration,
    /// On shutdown, how long in-flight requests may run after GOAWAY before the tunnel
    /// is closed under them.
    pub drain_timeout: Duration,
    /// SETTINGS_MAX_CONCURRENT_STREAMS the provider advertises: the gateway cannot open
    /// more streams than this however loaded it is.
    pub max_concurrent_streams: u32,
    /// HTTP/2 and WebSocket settings.
    pub h2: H2Config,
    /// TLS client configuration for `https`/`wss` gateways; `None` uses the platform's
    /// trust store (rustls-platform-verifier). ALPN is forced to `http/1.1` either way
    /// (the WebSocket upgrade is an HTTP/1.1 request).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    /// Defaults for everything except the gateway and the name.
    pub fn new(gateway_url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            gateway_url: gateway_url.into(),
            name: name.into(),
            chain_id: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            refused_backoff: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            max_concurrent_streams: 256,
            h2: H2Config::default(),
            tls: None,
        }
    }
}
