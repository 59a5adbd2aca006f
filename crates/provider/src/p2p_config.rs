//! The provider's `[p2p]` table: off unless present.

use std::path::{Path, PathBuf};
use std::time::Duration;

use khachapuri_p2p::{Multiaddr, P2pConfig};
use serde::{Deserialize, Serialize};

use crate::ProviderError;

/// Publisher ↔ provider over libp2p beside HTTP (seed 003).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// Multiaddrs to listen on; loopback by default, like HTTP.
    pub listen: Vec<String>,
    /// Peers to join the DHT through (`…/p2p/<peer id>`).
    pub bootstrap: Vec<String>,
    /// Addresses publishers can reach this node at (announced in the DHT).
    pub external: Vec<String>,
    /// Announce the listen addresses themselves (a LAN, loopback, `dev`).
    pub announce_listen_addrs: bool,
    /// Relay connections for nodes behind NAT (relay v2).
    pub relay_server: bool,
    /// The node's libp2p identity (ed25519, protobuf-encoded); created on first start.
    /// Default: `<data_dir>/p2p.key`.
    pub key_file: Option<PathBuf>,
    /// The HTTP endpoint provisioned deployments are called at, as offers and results
    /// name it (default `http://<listen>`).
    pub endpoint: Option<String>,
    /// Regions offered.
    pub regions: Vec<String>,
    /// Deadline of one request-response exchange (ms).
    pub request_timeout_ms: u64,
    /// Inbound requests answered at once; more are refused, never queued.
    pub max_inbound: usize,
    /// Inbound libp2p connections established at once.
    pub max_connections: u32,
    /// Connections to or from one peer.
    pub max_connections_per_peer: u32,
    /// Provisioning orders one payer may place a minute (each may fetch and compile before
    /// any call is paid); 0 = no limit.
    pub provisions_per_payer_per_min: u32,
    /// Payers whose order counts are remembered (least recently seen forgotten first).
    pub max_tracked_payers: usize,
    /// How long a capacity offer holds (s).
    pub offer_valid_secs: u64,
    /// How far ahead a publisher's signed order may expire (s): one signature is not
    /// good forever.
    pub order_max_ahead_secs: u64,
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/127.0.0.1/tcp/4001".into(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            external: Vec::new(),
            announce_listen_addrs: false,
            relay_server: false,
            key_file: None,
            endpoint: None,
            regions: Vec::new(),
            request_timeout_ms: 30_000,
            max_inbound: 32,
            max_connections: 256,
            max_connections_per_peer: 4,
            provisions_per_payer_per_min: 10,
            max_tracked_payers: 4096,
            offer_valid_secs: 600,
            order_max_ahead_secs: 3600,
        }
    }
}

fn addrs(list: &[String], what: &str) -> Result<Vec<Multiaddr>, ProviderError> {
    list.iter()
        .map(|a| {
            a.parse().map_err(|e| {
                ProviderError::Config(format!("p2p.{what}: {a:?} is not a multiaddr: {e}"))
            })
        })
        .collect()
}

impl P2pSection {
    /// The libp2p node's settings (multiaddrs parsed: a typo fails before anything binds).
    pub fn to_p2p_config(&self) -> Result<P2pConfig, ProviderError> {
        if self.max_inbound == 0 || self.request_timeout_ms == 0 {
            return Err(ProviderError::Config(
                "p2p.max_inbound and p2p.request_timeout_ms must be at least 1".into(),
            ));
        }
        Ok(P2pConfig {
            listen: addrs(&self.listen, "listen")?,
            bootstrap: addrs(&self.bootstrap, "bootstrap")?,
            external: addrs(&self.external, "external")?,
            announce_listen_addrs: self.announce_listen_addrs,
            dht_server: true,
            announce: true,
            relay_server: self.relay_server,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            max_inbound: self.max_inbound,
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            ..P2pConfig::default()
        })
    }

    /// Where the identity key lives.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("p2p.key"))
    }
}
