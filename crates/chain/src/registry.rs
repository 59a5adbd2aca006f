//! Typed client of the `Registry` contract: provider names and records, pricing tables,
//! reputation.

use std::borrow::Cow;

use alloy::primitives::{keccak256, Address, Bytes, B256, U256};
use alloy::providers::DynProvider;
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;
use alloy::sol_types::{Eip712Domain, SolEvent, SolStruct};
use serde::Serialize;

use crate::bindings::Registry::{self, RegistryInstance};
use crate::client::Chain;
use crate::error::{ChainError, Result};

/// An operator's consent as the registry takes it: the deadline and the EIP-712 signature.
pub use crate::bindings::OperatorConsent::Consent;

alloy::sol! {
    /// What an operator signs to let `owner` point `node` at it with `pubkey` (EIP-712,
    /// see `OperatorConsent.sol`); `nonce` is the operator's current registry nonce.
    #[derive(Debug, PartialEq, Eq)]
    struct OperatorConsent {
        bytes32 node;
        address owner;
        address operator;
        bytes32 pubkey;
        uint256 nonce;
        uint256 deadline;
    }
}

/// EIP-712 domain of the registry at `registry` on `chain_id`: a consent signed for one
/// registry or chain is worthless on any other.
pub fn consent_domain(chain_id: u64, registry: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Borrowed("Khachapuri Registry")),
        Some(Cow::Borrowed("1")),
        Some(U256::from(chain_id)),
        Some(registry),
        None,
    )
}

/// The registry node of a name: `keccak256(bytes(name))` (what `addr`/`text` take).
pub fn node_of(name: &str) -> B256 {
    keccak256(name.as_bytes())
}

/// A provider's record, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderRecord {
    /// The registered name.
    pub name: String,
    /// `keccak256(name)`.
    pub node: B256,
    /// Who controls the name.
    pub owner: Address,
    /// The node's signing address (ENS `addr`): where vouchers are made out to.
    pub operator: Address,
    /// Endpoint URL.
    pub url: String,
    /// X25519 public key that specs are sealed to.
    pub pubkey: [u8; 32],
    /// Regions the provider runs in.
    pub regions: Vec<String>,
    /// How to reach the operator.
    pub contact: String,
    /// Attestation CID (empty when none).
    pub attestation: String,
    /// Pricing table id (0: none).
    pub pricing_table: U256,
    /// Reputation points of the operator.
    pub reputation: U256,
    /// Distinct payers that paid the operator through the escrow.
    pub payers: U256,
    /// Total value (base units) the operator redeemed through the escrow.
    pub value_redeemed: U256,
}

/// A pricing table; prices are token base units × 1e6 (1 = a millionth of a base unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PricingTable {
    /// Table id.
    pub id: U256,
    /// Price per request.
    pub per_request: U256,
    /// Price per millisecond of execution.
    pub per_ms: U256,
    /// Price per MB of response.
    pub per_mb: U256,
    /// Who created it.
    pub creator: Address,
    /// How many names follow it.
    pub subscribers: U256,
}

/// What a provider publishes when it registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Name (a DNS label: `a-z0-9-`, 1–63 characters).
    pub name: String,
    /// Address the node signs with and is paid at.
    pub operator: Address,
    /// Endpoint URL.
    pub url: String,
    /// X25519 public key.
    pub pubkey: [u8; 32],
    /// Regions (joined with commas on chain).
    pub regions: Vec<String>,
    /// Contact.
    pub contact: String,
}

/// Client of the registry at one address.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    chain: Chain,
    instance: RegistryInstance<DynProvider>,
}

impl RegistryClient {
    /// A client for the registry at `address`.
    pub fn new(chain: &Chain, address: Address) -> Self {
        Self {
            chain: chain.clone(),
            instance: Registry::new(address, chain.provider().clone()),
        }
    }

    /// The registry's address.
    pub fn address(&self) -> Address {
        *self.instance.address()
    }

    /// Claims a name with its record; returns the node. The signer must be the operator
    /// (the registry refuses a record naming an operator that did not consent); an owner
    /// that is not uses [`Self::register_with_consent`].
    pub async fn register(&self, reg: &Registration) -> Result<B256> {
        let call = self.instance.register(
            reg.name.clone(),
            reg.operator,
            reg.url.clone(),
            reg.pubkey.into(),
            reg.regions.join(","),
            reg.contact.clone(),
        );
        self.chain.send("register", call).await?;
        Ok(node_of(&reg.name))
    }

    /// Claims a name for the signer (the owner) naming another operator, with the operator's
    /// signed consent (see [`Self::sign_consent`]); returns the node.
    pub async fn register_with_consent(
        &self,
        reg: &Registration,
        consent: &Consent,
    ) -> Result<B256> {
        let call = self.instance.registerWithConsent(
            reg.name.clone(),
            reg.operator,
            reg.url.clone(),
            reg.pubkey.into(),
            reg.regions.join(","),
            reg.contact.clone(),
            consent.clone(),
        );
        self.chain.send("registerWithConsent", call).await?;
        Ok(node_of(&reg.name))
    }

    /// The operator's current consent nonce (each consent uses one up).
    pub async fn consent_nonce(&self, operator: Address) -> Result<U256> {
        self.chain
            .view("nonces", self.instance.nonces(operator))
            .await
    }

    /// The registry's own EIP-712 digest of a consent (to cross-check off-chain hashing).
    pub async fn consent_digest(
        &self,
        name: &str,
        owner: Address,
        operator: Address,
        pubkey: [u8; 32],
        deadline: U256,
    ) -> Result<B256> {
        let call =
            self.instance
                .consentDigest(node_of(name), owner, operator, pubkey.into(), deadline);
        self.chain.view("consentDigest", call).await
    }

    /// Signs, as `operator` (its key), consent for `owner` to point `name` at it with
    /// `pubkey` until `deadline` (unix seconds), for the operator's current nonce. The digest
    /// is computed here, never taken from the RPC, so a node cannot be tricked into signing
    /// something else.
    pub async fn sign_consent(
        &self,
        operator: &PrivateKeySigner,
        name: &str,
        owner: Address,
        pubkey: [u8; 32],
        deadline: u64,
    ) -> Result<Consent> {
        let operator_address = operator.address();
        let nonce = self.consent_nonce(operator_address).await?;
        let consent = OperatorConsent {
            node: node_of(name),
            owner,
            operator: operator_address,
            pubkey: pubkey.into(),
            nonce,
            deadline: U256::from(deadline),
        };
        let hash =
            consent.eip712_signing_hash(&consent_domain(self.chain.chain_id(), self.address()));
        let sig = operator
            .sign_hash_sync(&hash)
            .map_err(|e| ChainError::BadSignature(e.to_string()))?;
        Ok(Consent {
            deadline: U256::from(deadline),
            signature: Bytes::from(sig.as_bytes().to_vec()),
        })
    }

    /// Replaces the record of a name the signer owns.
    pub async fn update(&self, reg: &Registration) -> Result<B256> {
        let node = node_of(&reg.name);
        let call = self.instance.update(
            node,
            reg.operator,
            reg.url.clone(),
            reg.pubkey.into(),
            reg.regions.join(","),
            reg.contact.clone(),
        );
        let r = self.chain.send("update", call).await?;
        Ok(r.transaction_hash)
    }

    /// Registers, or updates when the signer already owns the name (idempotent setup).
    pub async fn register_or_update(&self, reg: &Registration) -> Result<B256> {
        match self.resolve(&reg.name).await? {
            Some(existing) if Some(existing.owner) == self.chain.address() => {
                self.update(reg).await?;
                Ok(existing.node)
            }
            _ => self.register(reg).await,
        }
    }

    /// Gives a name to `to`.
    pub async fn transfer(&self, name: &str, to: Address) -> Result<B256> {
        let r = self
            .chain
            .send("transfer", self.instance.transfer(node_of(name), to))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Publishes where the node listens over libp2p (`text(name, "p2p")`): multiaddrs
    /// ending in `/p2p/<peer id>`, space-separated; empty clears it.
    pub async fn set_p2p(&self, name: &str, addrs: &[String]) -> Result<B256> {
        let r = self
            .chain
            .send(
                "setP2p",
                self.instance.setP2p(node_of(name), addrs.join(" ")),
            )
            .await?;
        Ok(r.transaction_hash)
    }

    /// The libp2p multiaddrs `name` publishes (empty when none).
    pub async fn p2p_addrs(&self, name: &str) -> Result<Vec<String>> {
        let text = self.text(name, "p2p").await?;
        Ok(text.split_whitespace().map(String::from).collect())
    }

    /// Releases a name.
    pub async fn drop_name(&self, name: &str) -> Result<B256> {
        let r = self
            .chain
            .send("drop", self.instance.drop(node_of(name)))
            .await?;
        Ok(r.transaction_hash)
    }

    /// The record of `name`, or `None` when unregistered.
    pub async fn resolve(&self, name: &str) -> Result<Option<ProviderRecord>> {
        self.record(node_of(name)).await
    }

    /// The record at `node`, or `None` when unregistered.
    pub async fn record(&self, node: B256) -> Result<Option<ProviderRecord>> {
        let r = self
            .chain
            .view("record", self.instance.record(node))
            .await?;
        if r.owner == Address::ZERO {
            return Ok(None);
        }
        Ok(Some(ProviderRecord {
            node,
            regions: r
                .regions
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            name: r.name,
            owner: r.owner,
            operator: r.operator,
            url: r.url,
            pubkey: r.pubkey.0,
            contact: r.contact,
            attestation: r.attestation,
            pricing_table: r.pricingTable,
            reputation: r.reputation,
            payers: r.payers,
            value_redeemed: r.valueRedeemed,
        }))
    }

    /// Every registered provider.
    pub async fn list(&self) -> Result<Vec<ProviderRecord>> {
        let nodes = self.chain.view("nodes", self.instance.nodes()).await?;
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Some(r) = self.record(node).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// ENS text record (`url`, `pubkey`, `regions`, `contact`, `attestation`, `p2p`).
    pub async fn text(&self, name: &str, key: &str) -> Result<String> {
        self.chain
            .view("text", self.instance.text(node_of(name), key.to_string()))
            .await
    }

    /// ENS address record: the operator of `name` (zero when unregistered).
    pub async fn addr(&self, name: &str) -> Result<Address> {
        self.chain
            .view("addr", self.instance.addr(node_of(name)))
            .await
    }

    /// Creates a pricing table (the signer must own a name) and returns its id.
    pub async fn create_table(
        &self,
        per_request: U256,
        per_ms: U256,
        per_mb: U256,
    ) -> Result<U256> {
        let r = self
            .chain
            .send(
                "createTable",
                self.instance.createTable(per_request, per_ms, per_mb),
            )
            .await?;
        r.inner
            .logs()
            .iter()
            .find_map(|log| Registry::TableCreated::decode_log_data(log.data()).ok())
            .map(|e| e.id)
            .ok_or_else(|| ChainError::Rpc("createTable receipt has no TableCreated event".into()))
    }

    /// Makes `name` follow table `id`.
    pub async fn subscribe(&self, name: &str, id: U256) -> Result<B256> {
        let r = self
            .chain
            .send("subscribe", self.instance.subscribe(node_of(name), id))
            .await?;
        Ok(r.transaction_hash)
    }

    /// Makes `name` leave its table (deleted if it was the last subscriber).
    pub async fn unsubscribe(&self, name: &str) -> Result<B256> {
        let r = self
            .chain
            .send("unsubscribe", self.instance.unsubscribe(node_of(name)))
            .await?;
        Ok(r.transaction_hash)
    }

    /// One pricing table, or `None` when it does not exist.
    pub async fn table(&self, id: U256) -> Result<Option<PricingTable>> {
        let t = self.chain.view("table", self.instance.table(id)).await?;
        if t.creator == Address::ZERO {
            return Ok(None);
        }
        Ok(Some(PricingTable {
            id,
            per_request: t.perRequest,
            per_ms: t.perMs,
            per_mb: t.perMb,
            creator: t.creator,
            subscribers: t.subscribers,
        }))
    }

    /// Every live pricing table.
    pub async fn tables(&self) -> Result<Vec<PricingTable>> {
        let ids = self
            .chain
            .view("tableIds", self.instance.tableIds())
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.table(id).await? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// Reputation points of an operator address.
    pub async fn reputation(&self, operator: Address) -> Result<U256> {
        self.chain
            .view("reputationOf", self.instance.reputationOf(operator))
            .await
    }

    /// Names the escrow allowed to report service (admin, once; `deploy_all` does it).
    pub async fn set_escrow(&self, escrow: Address) -> Result<B256> {
        let r = self
            .chain
            .send("setEscrow", self.instance.setEscrow(escrow))
            .await?;
        Ok(r.transaction_hash)
    }
}
