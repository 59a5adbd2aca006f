//! What a node needs to know to join the network.

use std::time::Duration;

use libp2p::Multiaddr;

/// A node's p2p settings (the provider's `[p2p]` table resolves into this).
#[derive(Debug, Clone)]
pub struct P2pConfig {
    /// Where to listen (`/ip4/0.0.0.0/tcp/4001`, `/ip4/0.0.0.0/udp/4001/quic-v1`).
    pub listen: Vec<Multiaddr>,
    /// Peers to join through; each ends in `/p2p/<peer id>`.
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses others can reach us at, announced in the DHT and by identify.
    pub external: Vec<Multiaddr>,
    /// Announce our listen addresses as reachable (loopback tests, a LAN, `dev`): without
    /// it only `external` and confirmed addresses are announced.
    pub announce_listen_addrs: bool,
    /// Answer DHT queries (providers, bootstrap nodes); publishers only ask.
    pub dht_server: bool,
    /// Put a provider record under the providers key (provider nodes).
    pub announce: bool,
    /// Relay connections for others (relay v2), so nodes behind NAT can be reached.
    pub relay_server: bool,
    /// Deadline of one request-response exchange.
    pub request_timeout: Duration,
    /// Deadline of one DHT query.
    pub query_timeout: Duration,
    /// Connections idle this long are closed.
    pub idle_timeout: Duration,
    /// Inbound requests answered at once (per protocol streams, and in all by the
    /// responder); more are refused, never queued.
    pub max_inbound: usize,
    /// Provider records kept per key (the DHT store's only use).
    pub max_providers: usize,
    /// Inbound connections established at once.
    pub max_connections: u32,
    /// Inbound connections still in their handshake at once.
    pub max_pending_incoming: u32,
    /// Connections to or from one peer.
    pub max_connections_per_peer: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            external: Vec::new(),
            announce_listen_addrs: false,
            dht_server: false,
            announce: false,
            relay_server: false,
            request_timeout: Duration::from_secs(30),
            query_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_inbound: 32,
            max_providers: 64,
            max_connections: 256,
            max_pending_incoming: 64,
            max_connections_per_peer: 4,
        }
    }
}

impl P2pConfig {
    /// A loopback node for tests and `dev`: TCP and QUIC on ephemeral ports, listen
    /// addresses announced, short timeouts.
    pub fn loopback() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/127.0.0.1/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            announce_listen_addrs: true,
            dht_server: true,
            request_timeout: Duration::from_secs(20),
            query_timeout: Duration::from_secs(5),
            ..Self::default()
        }
    }
}
