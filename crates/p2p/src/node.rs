//! A running libp2p node: the swarm in its own task, driven through a command channel.
//!
//! Outbound requests are awaited by the caller; inbound ones go to a [`Responder`] in
//! tasks of their own, at most `max_inbound` at once (more are dropped, which the peer
//! sees as a failed request), and their answers come back to the swarm through a
//! channel. The loop never blocks on a peer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::store::RecordStore;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{dcutr, identify, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::config::P2pConfig;
use crate::error::P2pError;
use crate::messages::{AttestRequest, AttestResponse, CapacityRequest, ProvisionRequest, Signed};
use crate::protocol::providers_key;

/// What a provider answers. Implemented by the provider node; the p2p crate only
/// transports, caps and dispatches.
#[async_trait::async_trait]
pub trait Responder: Send + Sync + 'static {
    /// Evidence bound to our keys and `from`'s nonce.
    async fn attest(&self, from: PeerId, request: AttestRequest) -> AttestResponse;
    /// A signed offer for what `from` asks.
    async fn capacity(&self, from: PeerId, request: CapacityRequest) -> Signed;
    /// Provision what the order names; a signed result either way.
    async fn provision(&self, from: PeerId, request: ProvisionRequest) -> Signed;
}

type Reply<T> = oneshot::Sender<Result<T, P2pError>>;

enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Dial(Multiaddr, Reply<()>),
    Listen(Multiaddr, Reply<()>),
    FindProviders(usize, Reply<Vec<PeerId>>),
    Attest(PeerId, AttestRequest, Reply<AttestResponse>),
    Capacity(PeerId, CapacityRequest, Reply<Signed>),
    Provision(PeerId, ProvisionRequest, Reply<Signed>),
    Connected(oneshot::Sender<Vec<PeerId>>),
    Connections(PeerId, oneshot::Sender<Vec<(Multiaddr, bool)>>),
    CloseRelayed(PeerId, oneshot::Sender<usize>),
    Stop,
}

enum Answer {
    Attest(ResponseChannel<AttestResponse>, AttestResponse),
    Capacity(ResponseChannel<Signed>, Signed),
    Provision(ResponseChannel<Signed>, Signed),
}

/// A handle on a running node. Dropping it stops the node.
pub struct P2pNode {
    peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl P2pNode {
    /// Builds the swarm, starts listening and bootstrapping, and spawns the event loop.
    /// `responder` makes this a provider node (it answers the three protocols).
    pub async fn start(
        keypair: Keypair,
        config: P2pConfig,
        responder: Option<Arc<dyn Responder>>,
    ) -> Result<Self, P2pError> {
        let peer_id = keypair.public().to_peer_id();
        let answers = responder.is_some();
        let cfg = config.clone();
        let transport_err = |e: &dyn std::fmt::Display| P2pError::Config(e.to_string());
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| transport_err(&e))?
            .with_quic()
            .with_relay_client(noise::Config::new, yamux::Config::default)
            .map_err(|e| transport_err(&e))?
            .with_behaviour(|key, relay| Behaviour::new(key, relay, &cfg, answers))
            .map_err(|e| transport_err(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_timeout))
            .build();
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Config(format!("listen on {addr}: {e}")))?;
        }
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        for addr in &config.bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(P2pError::Config(format!(
                    "bootstrap address {addr} does not end in /p2p/<peer id>"
                )));
            };
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        if !config.bootstrap.is_empty() {
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
        let (commands, rx) = mpsc::channel(64);
        let inbound = Arc::new(Semaphore::new(config.max_inbound));
        let (answers_tx, answers_rx) = mpsc::channel(config.max_inbound.max(1));
        let event_loop = EventLoop {
            swarm,
            config,
            responder,
            inbound,
            answers_tx,
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            providers: HashMap::new(),
            attest: HashMap::new(),
            capacity: HashMap::new(),
            provision: HashMap::new(),
            connections: HashMap::new(),
            announced: false,
        };
        let task = tokio::spawn(event_loop.run(rx, answers_rx));
        Ok(Self {
            peer_id,
            commands,
            task: Some(task),
        })
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, P2pError> {
        self.query(make).await?
    }

    async fn query<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// The addresses we listen on (waits until each configured listener is bound), each with
    /// `/p2p/<our id>`, ready to hand to another node as a bootstrap address.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.query(Command::ListenAddrs).await
    }

    /// Peers we are connected to now.
    pub async fn connected(&self) -> Result<Vec<PeerId>, P2pError> {
        self.query(Command::Connected).await
    }

    /// Our open connections to `peer`: each one's remote address and whether it is
    /// relayed (`/p2p-circuit`) rather than direct, e.g. to see DCUtR's hole punching.
    pub async fn connections(&self, peer: PeerId) -> Result<Vec<(Multiaddr, bool)>, P2pError> {
        self.query(|tx| Command::Connections(peer, tx)).await
    }

    /// Closes our relayed connections to `peer` (once a direct one exists, the relay is no
    /// longer needed); returns how many were closing.
    pub async fn close_relayed(&self, peer: PeerId) -> Result<usize, P2pError> {
        self.query(|tx| Command::CloseRelayed(peer, tx)).await
    }

    /// Dials `addr` (resolves once the dial is started, not when it connects).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.ask(|r| Command::Dial(addr, r)).await
    }

    /// Listens on another address, e.g. `<relay addr>/p2p-circuit` to be reachable
    /// through a relay.
    pub async fn listen_on(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.ask(|r| Command::Listen(addr, r)).await
    }

    /// Provider nodes found through the DHT: returns once `want` are found or the query
    /// has asked every peer it could (`query_timeout` at most).
    pub async fn find_providers(&self, want: usize) -> Result<Vec<PeerId>, P2pError> {
        self.ask(|r| Command::FindProviders(want.max(1), r)).await
    }

    /// `/khachapuri/attest/1` to `peer`.
    pub async fn attest(
        &self,
        peer: PeerId,
        request: AttestRequest,
    ) -> Result<AttestResponse, P2pError> {
        self.ask(|r| Command::Attest(peer, request, r)).await
    }

    /// `/khachapuri/capacity/1` to `peer`.
    pub async fn capacity(
        &self,
        peer: PeerId,
        request: CapacityRequest,
    ) -> Result<Signed, P2pError> {
        self.ask(|r| Command::Capacity(peer, request, r)).await
    }

    /// `/khachapuri/provision/1` to `peer`.
    pub async fn provision(
        &self,
        peer: PeerId,
        request: ProvisionRequest,
    ) -> Result<Signed, P2pError> {
        self.ask(|r| Command::Provision(peer, request, r)).await
    }

    /// Stops the event loop and waits for it (connections close with it).
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Stop).await;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for P2pNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A running `find_providers`: how many are wanted, found so far, who waits.
type ProviderQuery = (usize, HashSet<PeerId>, Reply<Vec<PeerId>>);

struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: P2pConfig,
    responder: Option<Arc<dyn Responder>>,
    inbound: Arc<Semaphore>,
    answers_tx: mpsc::Sender<Answer>,
    listen_addrs: Vec<Multiaddr>,
    listen_waiters: Vec<oneshot::Sender<Vec<Multiaddr>>>,
    providers: HashMap<QueryId, ProviderQuery>,
    attest: HashMap<OutboundRequestId, Reply<AttestResponse>>,
    capacity: HashMap<OutboundRequestId, Reply<Signed>>,
    provision: HashMap<OutboundRequestId, Reply<Signed>>,
    /// Open connections per peer: remote address, relayed or not.
    connections: HashMap<PeerId, HashMap<ConnectionId, (Multiaddr, bool)>>,
    announced: bool,
}

impl EventLoop {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut answers: mpsc::Receiver<Answer>,
    ) {
        if self.config.announce {
            self.announce();
        }
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Stop) | None => break,
                    Some(c) => self.command(c),
                },
                Some(answer) = answers.recv() => self.answer(answer),
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
    }

    fn announce(&mut self) {
        match self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(providers_key())
        {
            Ok(_) => self.announced = true,
            Err(e) => tracing::warn!(error = %e, "could not announce in the DHT"),
        }
    }

    fn with_id(&self, addr: &Multiaddr) -> Multiaddr {
        addr.clone()
            .with_p2p(*self.swarm.local_peer_id())
            .unwrap_or_else(|a| a)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs(tx) => {
                if self.listen_addrs.len() < self.config.listen.len().max(1) {
                    self.listen_waiters.push(tx);
                } else {
                    let _ = tx.send(self.listen_addrs.iter().map(|a| self.with_id(a)).collect());
                }
            }
            Command::Connected(tx) => {
                let _ = tx.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Connections(peer, tx) => {
                let conns = self.connections.get(&peer).into_iter().flatten();
                let _ = tx.send(conns.map(|(_, c)| c.clone()).collect());
            }
            Command::CloseRelayed(peer, tx) => {
                let conns = self.connections.get(&peer).into_iter().flatten();
                let relayed: Vec<_> = conns.filter(|(_, c)| c.1).map(|(id, _)| *id).collect();
                let closing = relayed
                    .into_iter()
                    .filter(|id| self.swarm.close_connection(*id));
                let _ = tx.send(closing.count());
            }
            Command::Dial(addr, tx) => {
                let r = self.swarm.dial(addr.clone());
                let _ = tx.send(r.map_err(|e| P2pError::Request {
                    peer: addr.to_string(),
                    reason: e.to_string(),
                }));
            }
            Command::Listen(addr, tx) => {
                let r = self.swarm.listen_on(addr.clone());
                let _ = tx.send(
                    r.map(|_| ())
                        .map_err(|e| P2pError::Config(format!("listen on {addr}: {e}"))),
                );
            }
            Command::FindProviders(want, tx) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(providers_key());
                self.providers.insert(id, (want, HashSet::new(), tx));
            }
            Command::Attest(peer, req, tx) => {
                let id = self.swarm.behaviour_mut().attest.send_request(&peer, req);
                self.attest.insert(id, tx);
            }
            Command::Capacity(peer, req, tx) => {
                let id = self.swarm.behaviour_mut().capacity.send_request(&peer, req);
                self.capacity.insert(id, tx);
            }
            Command::Provision(peer, req, tx) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .provision
                    .send_request(&peer, req);
                self.provision.insert(id, tx);
            }
            Command::Stop => {}
        }
    }

    fn answer(&mut self, answer: Answer) {
        // A peer that hung up meanwhile makes send_response fail: nothing to do.
        let b = self.swarm.behaviour_mut();
        match answer {
            Answer::Attest(ch, r) => {
                let _ = b.attest.send_response(ch, r);
            }
            Answer::Capacity(ch, r) => {
                let _ = b.capacity.send_response(ch, r);
            }
            Answer::Provision(ch, r) => {
                let _ = b.provision.send_response(ch, r);
            }
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "p2p listening");
                if self.config.announce_listen_addrs {
                    self.swarm.add_external_address(address.clone());
                }
                self.listen_addrs.push(address);
                // Answer once every configured listener has bound (one address or more each).
                if self.listen_addrs.len() < self.config.listen.len().max(1) {
                    return;
                }
                let addrs: Vec<_> = self.listen_addrs.iter().map(|a| self.with_id(a)).collect();
                for w in self.listen_waiters.drain(..) {
                    let _ = w.send(addrs.clone());
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.contains(&crate::protocol::KAD) => {
                // Only peers speaking our DHT go into our routing table.
                for addr in info
                    .listen_addrs
                    .into_iter()
                    .take(crate::protocol::MAX_LIST)
                {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let addr = endpoint.get_remote_address().clone();
                let relayed = endpoint.is_relayed();
                let conns = self.connections.entry(peer_id).or_default();
                conns.insert(connection_id, (addr, relayed));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                if let Some(conns) = self.connections.get_mut(&peer_id) {
                    conns.remove(&connection_id);
                    if conns.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(id) => tracing::info!(peer = %remote_peer_id, ?id, "hole punched: direct"),
                Err(e) => tracing::info!(peer = %remote_peer_id, error = %e, "hole punch failed"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.kad_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Attest(e)) => {
                self.rr_event(
                    e,
                    |l| &mut l.attest,
                    Answer::Attest,
                    |r, p, q| Box::pin(async move { r.attest(p, q).await }),
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Capacity(e)) => {
                self.rr_event(
                    e,
                    |l| &mut l.capacity,
                    Answer::Capacity,
                    |r, p, q| Box::pin(async move { r.capacity(p, q).await }),
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Provision(e)) => {
                self.rr_event(
                    e,
                    |l| &mut l.provision,
                    Answer::Provision,
                    |r, p, q| Box::pin(async move { r.provision(p, q).await }),
                );
            }
            _ => {}
        }
    }

    fn kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::AddProvider {
                        record: Some(record),
                    },
            } if record.key == providers_key() => {
                // Provider records under our one key are all this DHT stores.
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record);
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                    providers, ..
                })) => {
                    let done = if let Some((want, found, _)) = self.providers.get_mut(&id) {
                        for p in providers {
                            // Dial while the query still knows the provider's addresses.
                            let _ = self.swarm.dial(p);
                            found.insert(p);
                        }
                        found.len() >= *want
                    } else {
                        false
                    };
                    if done || step.last {
                        self.finish_providers(id);
                    }
                }
                QueryResult::GetProviders(_) if step.last => self.finish_providers(id),
                QueryResult::Bootstrap(Ok(_)) if step.last && self.config.announce => {
                    // Re-announce once we know more of the network.
                    self.announce();
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn finish_providers(&mut self, id: QueryId) {
        if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
            q.finish();
        }
        if let Some((_, found, tx)) = self.providers.remove(&id) {
            let result = if found.is_empty() {
                Err(P2pError::NotFound("no provider found in the DHT".into()))
            } else {
                Ok(found.into_iter().collect())
            };
            let _ = tx.send(result);
        }
    }

    #[allow(clippy::type_complexity)]
    fn rr_event<Req, Resp>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        pending: impl FnOnce(&mut Self) -> &mut HashMap<OutboundRequestId, Reply<Resp>>,
        wrap: fn(ResponseChannel<Resp>, Resp) -> Answer,
        handle: fn(
            Arc<dyn Responder>,
            PeerId,
            Req,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Resp> + Send>>,
    ) where
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Some(responder) = self.responder.clone() else {
                        return;
                    };
                    let Ok(permit) = self.inbound.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "p2p node full: request dropped");
                        return;
                    };
                    let answers = self.answers_tx.clone();
                    tokio::spawn(async move {
                        let response = handle(responder, peer, request).await;
                        let _ = answers.send(wrap(channel, response)).await;
                        drop(permit);
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(tx) = pending(self).remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(tx) = pending(self).remove(&request_id) {
                    let _ = tx.send(Err(P2pError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound p2p request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}
