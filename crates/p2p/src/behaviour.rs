//! The composed libp2p behaviour of a Khachapuri node.

use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::kad::{self, Mode, StoreInserts};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour};
use libp2p::{connection_limits, dcutr, identify, identity::Keypair, ping, relay};

use libp2p::StreamProtocol;

use crate::codec::{Limits, ProtoCodec};
use crate::config::P2pConfig;
use crate::messages::{AttestRequest, AttestResponse, CapacityRequest, ProvisionRequest, Signed};
use crate::protocol::{
    ATTEST, ATTEST_LIMITS, CAPACITY, CAPACITY_LIMITS, IDENTIFY_VERSION, KAD, PROVISION,
    PROVISION_LIMITS,
};

/// One request-response protocol with its capped codec.
pub type Rr<Req, Resp> = request_response::Behaviour<ProtoCodec<Req, Resp>>;

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Caps on connections: a stranger cannot open unbounded many.
    pub limits: connection_limits::Behaviour,
    /// Addresses and protocols of peers (feeds Kademlia).
    pub identify: identify::Behaviour,
    /// Discovery: providers are provider records under [`crate::protocol::providers_key`].
    pub kad: kad::Behaviour<MemoryStore>,
    /// Liveness and round-trip times.
    pub ping: ping::Behaviour,
    /// Reservations on relays, for nodes behind NAT.
    pub relay_client: relay::client::Behaviour,
    /// Relaying for others (only when configured).
    pub relay: Toggle<relay::Behaviour>,
    /// Upgrading relayed connections to direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    /// `/khachapuri/attest/1`.
    pub attest: Rr<AttestRequest, AttestResponse>,
    /// `/khachapuri/capacity/1`.
    pub capacity: Rr<CapacityRequest, Signed>,
    /// `/khachapuri/provision/1`.
    pub provision: Rr<ProvisionRequest, Signed>,
}

impl Behaviour {
    /// Builds the behaviour; `answers` says whether this node answers the three protocols
    /// (a provider) or only asks (a publisher).
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        config: &P2pConfig,
        answers: bool,
    ) -> Self {
        let peer_id = key.public().to_peer_id();
        let mut kad_config = kad::Config::new(KAD);
        kad_config.set_query_timeout(config.query_timeout);
        // Only provider records under our key are kept, and only by our own decision
        // (see the node's event loop): strangers cannot fill the store with values.
        kad_config.set_record_filtering(StoreInserts::FilterBoth);
        let store = MemoryStore::with_config(
            peer_id,
            MemoryStoreConfig {
                max_records: 0,
                max_value_bytes: 0,
                max_providers_per_key: config.max_providers,
                max_provided_keys: 4,
            },
        );
        let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
        if config.dht_server {
            kad.set_mode(Some(Mode::Server));
        }
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_inbound);
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_established_incoming(Some(config.max_connections))
            .with_max_established_per_peer(Some(config.max_connections_per_peer));
        Self {
            limits: connection_limits::Behaviour::new(limits),
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_VERSION.to_string(),
                key.public(),
            )),
            kad,
            ping: ping::Behaviour::new(ping::Config::new()),
            relay_client,
            relay: config
                .relay_server
                .then(|| relay::Behaviour::new(peer_id, relay::Config::default()))
                .into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            attest: rr(ATTEST_LIMITS, ATTEST, answers, rr_config.clone()),
            capacity: rr(CAPACITY_LIMITS, CAPACITY, answers, rr_config.clone()),
            provision: rr(PROVISION_LIMITS, PROVISION, answers, rr_config),
        }
    }
}

/// One request-response behaviour: answering (`Full`) only on nodes that answer.
fn rr<Req, Resp>(
    limits: Limits,
    protocol: StreamProtocol,
    answers: bool,
    config: request_response::Config,
) -> Rr<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    let support = if answers {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    request_response::Behaviour::with_codec(ProtoCodec::new(limits), [(protocol, support)], config)
}
