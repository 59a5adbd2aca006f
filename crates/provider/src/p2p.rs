//! The provider node's answers to `/khachapuri/{attest,capacity,provision}/1`.
//!
//! The protocol's rules (what an order must prove, how answers are signed) live in
//! `khachapuri-p2p`; this module supplies the node's facts: its keys, runtimes, limits
//! and prices, the channel on chain, and the fetch-and-compile path calls already take.
//! Provisioning is real work (a fetch and a compile), so it happens only for an order a
//! payer signed for us, backed by a funded channel that is not being unlocked.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use khachapuri_attest::{Binding, Evidence, TestAuthority};
use khachapuri_chain::{Address, EscrowClient, PrivateKeySigner, U256};
use khachapuri_p2p::messages::{
    AttestRequest, AttestResponse, CapacityOffer, CapacityRequest, Prices, ProvisionRequest,
    ProvisionResult, Signed,
};
use khachapuri_p2p::{open_order, refusal, sign_offer, sign_result, P2pNode, PeerId, Responder};

use crate::node::Node;
use crate::p2p_config::P2pSection;
use crate::{PriceList, ProviderError};

/// Where attestation evidence comes from.
#[derive(Clone)]
pub enum Attester {
    /// No TEE on this machine: the node says so, with why.
    NoTee(String),
    /// Khachapuri's test hierarchy (dev and tests only; publishers accept it only when
    /// their policy names its root).
    Test(Arc<TestAuthority>),
}

/// What the node answers with, besides the node itself.
pub struct P2pFacts {
    /// Signs offers and results; vouchers are made out to its address.
    pub operator: PrivateKeySigner,
    /// Chain of the escrow.
    pub chain_id: u64,
    /// The escrow's address.
    pub escrow_address: Address,
    /// The escrow, to check a payer's channel before provisioning (`None`: a free node,
    /// nothing to check).
    pub escrow: Option<EscrowClient>,
    /// Prices offered.
    pub prices: PriceList,
    /// The least a channel must hold (base units) for an order to be provisioned.
    pub min_channel: U256,
    /// Evidence source.
    pub attester: Attester,
}

/// Starts the node's libp2p side: identity from `section`'s key file, the DHT
/// announcement, and the three protocols answered from `node` and `facts`.
pub async fn start_p2p(
    node: Arc<Node>,
    facts: P2pFacts,
    section: &P2pSection,
) -> Result<P2pNode, ProviderError> {
    let config = section.to_p2p_config()?;
    let key_path = section.key_path(&node.config().data_dir);
    let key = tokio::task::spawn_blocking(move || khachapuri_p2p::load_or_create_key(&key_path))
        .await
        .map_err(|e| ProviderError::Internal(e.to_string()))?
        .map_err(|e| ProviderError::Config(e.to_string()))?;
    let peer = key.public().to_peer_id();
    let x25519 = node
        .x25519_public()
        .ok_or_else(|| ProviderError::Config("p2p needs the node's x25519_key_file".into()))?;
    let endpoint = section
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{}", node.config().listen));
    let tracked = std::num::NonZeroUsize::new(section.max_tracked_payers.max(1))
        .unwrap_or(std::num::NonZeroUsize::MIN);
    let responder = ProviderAnswers {
        node,
        peer,
        x25519,
        endpoint,
        section: section.clone(),
        facts,
        orders: std::sync::Mutex::new(lru::LruCache::new(tracked)),
    };
    P2pNode::start(key, config, Some(Arc::new(responder)))
        .await
        .map_err(|e| ProviderError::Config(e.to_string()))
}

struct ProviderAnswers {
    node: Arc<Node>,
    peer: PeerId,
    x25519: [u8; 32],
    endpoint: String,
    section: P2pSection,
    facts: P2pFacts,
    /// Orders per payer in the current minute: provisioning compiles before any call is
    /// paid, so one funded payer may not keep the compiler busy (bounded in payers).
    orders: std::sync::Mutex<lru::LruCache<Address, (std::time::Instant, u32)>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ProviderAnswers {
    fn prices(&self) -> Prices {
        Prices {
            per_request: self.facts.prices.per_request.clone(),
            per_ms: self.facts.prices.per_ms.clone(),
            per_mb: self.facts.prices.per_mb_out.clone(),
        }
    }

    fn tee(&self) -> &'static str {
        match self.facts.attester {
            Attester::NoTee(_) => "none",
            Attester::Test(_) => "test",
        }
    }

    fn sign(&self, result: &ProvisionResult) -> Signed {
        // Signing with a local key cannot fail short of a bug; an unsigned answer is then
        // refused by the publisher, which is the safe outcome.
        sign_result(&self.facts.operator, result).unwrap_or_default()
    }

    /// Counts an order of `payer` against `provisions_per_payer_per_min`.
    fn take_order(&self, payer: Address) -> Result<(), Box<ProvisionResult>> {
        let limit = self.section.provisions_per_payer_per_min;
        if limit == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        let entry = orders.get_or_insert_mut(payer, || (now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return Err(Box::new(refusal(
                "rate_limited",
                format!("at most {limit} provisioning orders a minute per payer; try again later"),
                "",
            )));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Why a payer's channel cannot back an order, if it cannot.
    async fn check_channel(&self, payer: Address) -> Result<U256, ProvisionResult> {
        let Some(escrow) = &self.facts.escrow else {
            return Ok(U256::ZERO);
        };
        let operator = self.facts.operator.address();
        let channel = escrow.channel(payer, operator).await.map_err(|e| {
            refusal(
                "chain_unavailable",
                format!("cannot read the channel: {e}"),
                "",
            )
        })?;
        if channel.unlock_at != 0 {
            return Err(refusal(
                "channel_unlocking",
                format!("the channel {payer} → {operator} is being unlocked"),
                "",
            ));
        }
        let least = self.facts.min_channel.max(U256::from(1));
        if channel.remaining() < least {
            return Err(refusal(
                "channel_empty",
                format!(
                    "the channel {payer} → {operator} holds {} base units; fund it with at least {least}",
                    channel.remaining(),
                ),
                "",
            ));
        }
        Ok(channel.remaining())
    }
}

/// A machine-readable refusal code per error kind (matched on variants, never on text).
fn code_of(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::BadCid(_) => "bad_cid",
        ProviderError::NotFound { .. } => "not_found",
        ProviderError::Fetch { .. } => "fetch_failed",
        ProviderError::Spec(_) | ProviderError::Forbidden(_) => "bad_spec",
        ProviderError::RuntimeUnavailable { .. } => "runtime_unavailable",
        ProviderError::Busy(_)
        | ProviderError::CompileBusy(_)
        | ProviderError::SpecFetchBusy(_) => "busy",
        ProviderError::CompileTimeout { .. } => "compile_timeout",
        _ => "failed",
    }
}

#[async_trait::async_trait]
impl Responder for ProviderAnswers {
    async fn attest(&self, _from: PeerId, request: AttestRequest) -> AttestResponse {
        let operator = self.facts.operator.address();
        let evidence = match (
            &self.facts.attester,
            <[u8; 32]>::try_from(request.nonce.as_slice()),
        ) {
            (_, Err(_)) => Evidence::None {
                reason: "the nonce must be 32 bytes".into(),
            },
            (Attester::NoTee(reason), _) => Evidence::None {
                reason: reason.clone(),
            },
            (Attester::Test(authority), Ok(nonce)) => authority.attest(
                &Binding {
                    peer_id: self.peer.to_bytes(),
                    operator: operator.into_array(),
                    x25519: self.x25519,
                    nonce,
                    chain_id: self.facts.chain_id,
                    escrow: self.facts.escrow_address.into_array(),
                },
                b"khachapuri-dev",
            ),
        };
        AttestResponse {
            evidence: evidence.to_bytes(),
            operator: operator.to_vec(),
            x25519: self.x25519.to_vec(),
            chain_id: self.facts.chain_id,
            escrow: self.facts.escrow_address.to_vec(),
        }
    }

    async fn capacity(&self, _from: PeerId, request: CapacityRequest) -> Signed {
        let config = self.node.config();
        let mut missing = Vec::new();
        for r in &request.runtimes {
            if !config.runtimes.iter().any(|have| have == r) {
                missing.push(format!("runtime {r:?} is not offered"));
            }
        }
        let cpus = std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1);
        if request.cpus > cpus {
            missing.push(format!("at most {cpus} CPU cores"));
        }
        if u64::from(request.memory_mib) > config.max_memory_mb {
            missing.push(format!("at most {} MiB per instance", config.max_memory_mb));
        }
        if !request.tee.is_empty() && request.tee != self.tee() {
            missing.push(format!("this node's TEE is {:?}", self.tee()));
        }
        if !request.region.is_empty() && !self.section.regions.contains(&request.region) {
            missing.push(format!("region {:?} is not served", request.region));
        }
        let mut refusal = missing.join("; ");
        khachapuri_p2p::protocol::clip(&mut refusal, khachapuri_p2p::protocol::MAX_FIELD);
        let offer = CapacityOffer {
            available: missing.is_empty(),
            refusal,
            memory_mib: u32::try_from(config.max_memory_mb).unwrap_or(u32::MAX),
            instances: u32::try_from(config.max_instances).unwrap_or(u32::MAX),
            runtimes: config.runtimes.clone(),
            tee: self.tee().into(),
            regions: self.section.regions.clone(),
            prices: Some(self.prices()),
            payment_address: self.facts.operator.address().to_vec(),
            chain_id: self.facts.chain_id,
            escrow: self.facts.escrow_address.to_vec(),
            valid_until: now() + self.section.offer_valid_secs,
            endpoint: self.endpoint.clone(),
            cpus,
        };
        sign_offer(&self.facts.operator, &offer).unwrap_or_default()
    }

    async fn provision(&self, from: PeerId, request: ProvisionRequest) -> Signed {
        let order = match open_order(
            &request,
            &self.peer,
            now(),
            self.section.order_max_ahead_secs,
        ) {
            Ok(order) => order,
            Err(e) => return self.sign(&refusal("bad_order", e.to_string(), "")),
        };
        let checked = match self.take_order(order.payer) {
            Ok(()) => self.check_channel(order.payer).await,
            Err(refused) => Err(*refused),
        };
        let remaining = match checked {
            Ok(r) => r,
            Err(mut refused) => {
                refused.spec_cid = order.spec_cid.clone();
                return self.sign(&refused);
            }
        };
        tracing::info!(%from, cid = %order.spec_cid, payer = %order.payer, "provisioning over p2p");
        let deadline = Duration::from_millis(self.node.config().compile_timeout_ms)
            + self.node.config().fetch_timeout();
        let provisioned =
            tokio::time::timeout(deadline, self.node.provision(&order.spec_cid)).await;
        let result = match provisioned {
            Ok(Ok(_)) => ProvisionResult {
                status: "provisioned".into(),
                spec_cid: order.spec_cid.clone(),
                url: format!(
                    "{}/{}/",
                    self.endpoint.trim_end_matches('/'),
                    order.spec_cid
                ),
                prices: Some(self.prices()),
                payer: order.payer.to_vec(),
                channel_remaining: remaining.to_string(),
                ..ProvisionResult::default()
            },
            Ok(Err(e)) => refusal(code_of(&e), e.to_string(), &order.spec_cid),
            Err(_) => refusal("timeout", "provisioning took too long", &order.spec_cid),
        };
        self.sign(&result)
    }
}

/// What `provider run` does with a `[p2p]` table: the operator key from `[payments]`,
/// prices from its price list, the escrow to check channels with (`None`: the node
/// serves free, nothing to check), no TEE evidence (this build reads none from
/// hardware: it says so and the publisher's policy decides). `Ok(None)` without `[p2p]`.
pub async fn start_configured_p2p(
    node: Arc<Node>,
    escrow: Option<EscrowClient>,
    password: Option<&str>,
) -> Result<Option<P2pNode>, ProviderError> {
    let config = node.config();
    let Some(section) = config.p2p.clone() else {
        return Ok(None);
    };
    let payments = config.payments.as_ref().ok_or_else(|| {
        ProviderError::Config(
            "[p2p] needs [payments]: offers and results are signed by the operator key".into(),
        )
    })?;
    let operator = payments.load_operator(password)?;
    let min_channel = khachapuri_chain::parse_usdc(&payments.pricing.per_request)
        .map_err(|e| ProviderError::Config(format!("payments.pricing.per_request: {e}")))?;
    let facts = P2pFacts {
        operator,
        chain_id: payments.chain_id,
        escrow_address: payments.escrow,
        escrow,
        prices: payments.pricing.clone(),
        min_channel,
        attester: Attester::NoTee(NO_TEE.into()),
    };
    start_p2p(node.clone(), facts, &section).await.map(Some)
}

/// What a node without TEE evidence answers.
pub const NO_TEE: &str = "this node runs outside a TEE (no SEV-SNP or TDX evidence)";

/// What the node would answer to `/khachapuri/attest/1` for `nonce`, for
/// `khachapuri provider attest`: its identity, the binding and the evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttestPreview {
    /// The libp2p peer id (from the `[p2p]` key file, created if missing).
    pub peer_id: String,
    /// The operator address.
    pub operator: String,
    /// The X25519 key specs are sealed to (0x-hex).
    pub x25519: String,
    /// Chain of the escrow.
    pub chain_id: u64,
    /// The escrow.
    pub escrow: String,
    /// The nonce used (0x-hex).
    pub nonce: String,
    /// The 64 bytes a TEE report would have to carry (0x-hex).
    pub report_data: String,
    /// `none`, or the TEE kind.
    pub evidence: String,
    /// Why there is no evidence, when there is none.
    pub reason: Option<String>,
}

/// Builds the [`AttestPreview`] of a node configured by `config` (blocking: reads keys).
pub fn attest_preview(
    config: &crate::NodeConfig,
    operator: Address,
    nonce: [u8; 32],
) -> Result<AttestPreview, ProviderError> {
    let section = config.p2p.clone().unwrap_or_default();
    let payments = config.payments.as_ref().ok_or_else(|| {
        ProviderError::Config("attestation binds the escrow: the config has no [payments]".into())
    })?;
    let key = khachapuri_p2p::load_or_create_key(&section.key_path(&config.data_dir))
        .map_err(|e| ProviderError::Config(e.to_string()))?;
    let peer = key.public().to_peer_id();
    let x25519 = match &config.x25519_key_file {
        Some(path) => {
            let secret = zeroize::Zeroizing::new(
                khachapuri_seal::load_key_file(path)
                    .map_err(|e| ProviderError::Config(e.to_string()))?
                    .0,
            );
            khachapuri_seal::public_key(&secret)
        }
        None => {
            return Err(ProviderError::Config(
                "no x25519_key_file configured".into(),
            ))
        }
    };
    let binding = Binding {
        peer_id: peer.to_bytes(),
        operator: operator.into_array(),
        x25519,
        nonce,
        chain_id: payments.chain_id,
        escrow: payments.escrow.into_array(),
    };
    fn hex(bytes: impl AsRef<[u8]>) -> String {
        khachapuri_chain::alloy_hex::encode_prefixed(bytes)
    }
    Ok(AttestPreview {
        peer_id: peer.to_string(),
        operator: operator.to_string(),
        x25519: hex(x25519),
        chain_id: payments.chain_id,
        escrow: payments.escrow.to_string(),
        nonce: hex(nonce),
        report_data: hex(khachapuri_attest::report_data(&binding)),
        evidence: "none".into(),
        reason: Some(NO_TEE.into()),
    })
}
