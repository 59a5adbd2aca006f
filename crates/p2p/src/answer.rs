//! The provider's side of the protocols: what it must check in an order, and how its
//! answers are signed. The provider node supplies the facts (keys, prices, the chain);
//! the rules of the protocol stay here, beside the publisher's checks.

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use libp2p::PeerId;

use crate::error::P2pError;
use crate::messages::{CapacityOffer, ProvisionOrder, ProvisionRequest, ProvisionResult, Signed};
use crate::protocol::MAX_FIELD;
use crate::signing::{self, CAPACITY_DOMAIN, ORDER_DOMAIN, PROVISION_DOMAIN};

/// Signs a capacity offer with the operator key.
pub fn sign_offer(operator: &PrivateKeySigner, offer: &CapacityOffer) -> Result<Signed, P2pError> {
    let body = prost::Message::encode_to_vec(offer);
    let signature = signing::sign(operator, CAPACITY_DOMAIN, &body)?;
    Ok(Signed { body, signature })
}

/// Signs a provision result with the operator key.
pub fn sign_result(
    operator: &PrivateKeySigner,
    result: &ProvisionResult,
) -> Result<Signed, P2pError> {
    let body = prost::Message::encode_to_vec(result);
    let signature = signing::sign(operator, PROVISION_DOMAIN, &body)?;
    Ok(Signed { body, signature })
}

/// An order the provider may act on: the payer proved it signed it, for us, in time.
#[derive(Debug, Clone)]
pub struct Order {
    /// The spec CID to provision (not yet parsed: the provider's store does that).
    pub spec_cid: String,
    /// Who pays (recovered from the signature, and equal to the payer named).
    pub payer: Address,
    /// Unix seconds after which the order is void.
    pub expires: u64,
}

/// Checks a provision request before any work: the payer's signature, that it names us,
/// that it has not expired (and does not reach more than `max_ahead_s` into the future,
/// so one signature is not good forever). Only then does the provider look at the chain.
pub fn open_order(
    request: &ProvisionRequest,
    us: &PeerId,
    now: u64,
    max_ahead_s: u64,
) -> Result<Order, P2pError> {
    let order: ProvisionOrder = crate::codec::decode_body(&request.order)?;
    if order.spec_cid.is_empty() || order.spec_cid.len() > MAX_FIELD {
        return Err(P2pError::malformed("spec_cid must be 1-512 characters"));
    }
    let payer = address(&order.payer, "payer")?;
    if order.provider != us.to_bytes() {
        return Err(P2pError::Signature(
            "the order is for another provider".into(),
        ));
    }
    if order.expires < now {
        return Err(P2pError::Signature("the order has expired".into()));
    }
    if order.expires > now.saturating_add(max_ahead_s) {
        return Err(P2pError::Signature(format!(
            "the order expires more than {max_ahead_s} s from now"
        )));
    }
    signing::verify(ORDER_DOMAIN, &request.order, &request.signature, payer)?;
    Ok(Order {
        spec_cid: order.spec_cid,
        payer,
        expires: order.expires,
    })
}

/// A 20-byte address field.
pub fn address(bytes: &[u8], what: &str) -> Result<Address, P2pError> {
    <[u8; 20]>::try_from(bytes)
        .map(Address::from)
        .map_err(|_| P2pError::malformed(format!("{what} must be 20 bytes, not {}", bytes.len())))
}

/// A refusal, signed like a success so a publisher can prove what it was told.
pub fn refusal(code: &str, message: impl Into<String>, spec_cid: &str) -> ProvisionResult {
    let mut message = message.into();
    crate::protocol::clip(&mut message, MAX_FIELD);
    ProvisionResult {
        status: "refused".into(),
        code: code.into(),
        message,
        spec_cid: spec_cid.chars().take(MAX_FIELD).collect(),
        ..ProvisionResult::default()
    }
}
