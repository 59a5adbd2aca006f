//! The protobuf messages of `/khachapuri/attest/1`, `/khachapuri/capacity/1` and
//! `/khachapuri/provision/1`, written as prost structs (no `.proto` compilation step).
//!
//! Every answer that commits the provider to something (an offer, a provisioned
//! deployment) travels as a [`Signed`] body: the exact encoded bytes plus the operator's
//! EIP-191 signature over them ([`crate::signing`]), so the publisher verifies what was
//! sent, not a re-encoding of it. Decoders are strict about sizes ([`crate::codec`]) and
//! the typed views ([`crate::protocol`]) check every field's length.

/// `/khachapuri/attest/1` request: the publisher's fresh nonce.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttestRequest {
    /// 32 random bytes; bound into the report so an old report cannot be replayed.
    #[prost(bytes = "vec", tag = "1")]
    pub nonce: Vec<u8>,
}

/// `/khachapuri/attest/1` response: evidence plus the keys it claims to bind (the
/// publisher recomputes the binding from these, its nonce and the peer id it dialled).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttestResponse {
    /// `khachapuri_attest::Evidence::to_bytes` (at most `MAX_EVIDENCE_BYTES`).
    #[prost(bytes = "vec", tag = "1")]
    pub evidence: Vec<u8>,
    /// Operator address (20 bytes): who signs offers and is paid.
    #[prost(bytes = "vec", tag = "2")]
    pub operator: Vec<u8>,
    /// X25519 public key (32 bytes) specs are sealed to.
    #[prost(bytes = "vec", tag = "3")]
    pub x25519: Vec<u8>,
    /// Chain id of the escrow the provider is paid through.
    #[prost(uint64, tag = "4")]
    pub chain_id: u64,
    /// Escrow address (20 bytes).
    #[prost(bytes = "vec", tag = "5")]
    pub escrow: Vec<u8>,
}

/// `/khachapuri/capacity/1` request: what the publisher needs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CapacityRequest {
    /// Memory per instance, MiB (0: no preference).
    #[prost(uint32, tag = "1")]
    pub memory_mib: u32,
    /// Concurrent instances wanted (0: no preference).
    #[prost(uint32, tag = "2")]
    pub instances: u32,
    /// Runtimes the deployment needs (`wasi-http`, `wagi`, `process`).
    #[prost(string, repeated, tag = "3")]
    pub runtimes: Vec<String>,
    /// TEE kind wanted (`sev-snp`, `tdx`, `sgx`, empty: any or none).
    #[prost(string, tag = "4")]
    pub tee: String,
    /// Region wanted (empty: any).
    #[prost(string, tag = "5")]
    pub region: String,
    /// CPU cores one call may use (0: no preference).
    #[prost(uint32, tag = "6")]
    pub cpus: u32,
}

/// Prices in micro-USDC (decimal strings, so no precision is lost on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Prices {
    /// Per request.
    #[prost(string, tag = "1")]
    pub per_request: String,
    /// Per millisecond of execution.
    #[prost(string, tag = "2")]
    pub per_ms: String,
    /// Per MB of response.
    #[prost(string, tag = "3")]
    pub per_mb: String,
}

/// The signed body of a capacity answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CapacityOffer {
    /// Whether the provider can serve what was asked; when false, `refusal` says why.
    #[prost(bool, tag = "1")]
    pub available: bool,
    /// Why not (empty when available).
    #[prost(string, tag = "2")]
    pub refusal: String,
    /// Memory per instance offered, MiB.
    #[prost(uint32, tag = "3")]
    pub memory_mib: u32,
    /// Concurrent instances offered.
    #[prost(uint32, tag = "4")]
    pub instances: u32,
    /// Runtimes the provider runs.
    #[prost(string, repeated, tag = "5")]
    pub runtimes: Vec<String>,
    /// The TEE the provider runs in (`none` when it has none).
    #[prost(string, tag = "6")]
    pub tee: String,
    /// Regions served.
    #[prost(string, repeated, tag = "7")]
    pub regions: Vec<String>,
    /// The pricing table.
    #[prost(message, optional, tag = "8")]
    pub prices: Option<Prices>,
    /// Address vouchers are made out to (20 bytes).
    #[prost(bytes = "vec", tag = "9")]
    pub payment_address: Vec<u8>,
    /// Chain id.
    #[prost(uint64, tag = "10")]
    pub chain_id: u64,
    /// Escrow address (20 bytes).
    #[prost(bytes = "vec", tag = "11")]
    pub escrow: Vec<u8>,
    /// Unix seconds after which the offer no longer holds.
    #[prost(uint64, tag = "12")]
    pub valid_until: u64,
    /// The HTTP endpoint calls go to (`http(s)://host[:port]`).
    #[prost(string, tag = "13")]
    pub endpoint: String,
    /// CPU cores the node has for calls.
    #[prost(uint32, tag = "14")]
    pub cpus: u32,
}

/// `/khachapuri/provision/1` request: a deployment and the channel that pays for it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProvisionRequest {
    /// The signed body ([`ProvisionOrder`] bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub order: Vec<u8>,
    /// The payer's EIP-191 signature over the order: proves the payer owns the channel
    /// named (anyone could name a rich stranger's channel otherwise).
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
}

/// What a publisher orders.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProvisionOrder {
    /// The callable CID of the (sealed) deployment spec, already published to IPFS.
    #[prost(string, tag = "1")]
    pub spec_cid: String,
    /// Payer address (20 bytes): the channel is escrow(payer → provider's operator).
    #[prost(bytes = "vec", tag = "2")]
    pub payer: Vec<u8>,
    /// The provider's peer id the order is for (an order cannot be replayed elsewhere).
    #[prost(bytes = "vec", tag = "3")]
    pub provider: Vec<u8>,
    /// Unix seconds after which the provider refuses the order.
    #[prost(uint64, tag = "4")]
    pub expires: u64,
}

/// The signed body of a provision answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProvisionResult {
    /// `provisioned`, or `refused` with `code` and `message`.
    #[prost(string, tag = "1")]
    pub status: String,
    /// Machine-readable refusal code (empty when provisioned).
    #[prost(string, tag = "2")]
    pub code: String,
    /// Human-readable detail.
    #[prost(string, tag = "3")]
    pub message: String,
    /// The CID provisioned (echoed, so the signature covers it).
    #[prost(string, tag = "4")]
    pub spec_cid: String,
    /// Where to call it: `{endpoint}/{cid}/`.
    #[prost(string, tag = "5")]
    pub url: String,
    /// What a call costs.
    #[prost(message, optional, tag = "6")]
    pub prices: Option<Prices>,
    /// The payer the channel was checked for (20 bytes).
    #[prost(bytes = "vec", tag = "7")]
    pub payer: Vec<u8>,
    /// What remained in the channel when checked, base units (decimal).
    #[prost(string, tag = "8")]
    pub channel_remaining: String,
}

/// A body and the operator's signature over it: capacity and provision answers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Signed {
    /// The encoded body ([`CapacityOffer`] or [`ProvisionResult`]).
    #[prost(bytes = "vec", tag = "1")]
    pub body: Vec<u8>,
    /// 65-byte EIP-191 signature by the operator over the domain tag and `body`.
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
}
