//! The publisher's side: find a provider, check its attestation against a policy, open
//! its signed offer, order a deployment and open the signed result. Every answer is
//! checked before it is believed: signatures recover to the attested operator, the
//! offer's chain and escrow are the attested ones, nothing is expired.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use khachapuri_attest::{Binding, Evidence, Policy, Verified};
use libp2p::PeerId;

use crate::answer::address;
use crate::codec::decode_body;
use crate::error::P2pError;
use crate::messages::{
    AttestRequest, AttestResponse, CapacityOffer, CapacityRequest, ProvisionOrder,
    ProvisionRequest, ProvisionResult, Signed,
};
use crate::node::P2pNode;
use crate::protocol::{MAX_FIELD, MAX_LIST};
use crate::signing::{self, CAPACITY_DOMAIN, ORDER_DOMAIN, PROVISION_DOMAIN};

/// What a verified attestation tells the publisher about a provider.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The peer that answered (authenticated by noise/TLS).
    pub peer: PeerId,
    /// Its operator address: every later answer must be signed by it.
    pub operator: Address,
    /// The X25519 key specs are sealed to.
    pub x25519: [u8; 32],
    /// Chain of the escrow.
    pub chain_id: u64,
    /// The escrow.
    pub escrow: Address,
    /// What the evidence proved (kind `None` when the provider has no TEE and the policy
    /// allowed it).
    pub verified: Verified,
}

/// 32 fresh random bytes.
pub fn new_nonce() -> Result<[u8; 32], P2pError> {
    let mut n = [0u8; 32];
    getrandom::getrandom(&mut n).map_err(|e| P2pError::Config(format!("no randomness: {e}")))?;
    Ok(n)
}

/// Checks an attest answer from `peer` for `nonce`: the evidence verifies under `policy`
/// at `now` and binds exactly this peer id, the keys claimed, the nonce, chain and escrow.
pub fn check_attestation(
    peer: PeerId,
    nonce: [u8; 32],
    response: &AttestResponse,
    policy: &Policy,
    now: SystemTime,
) -> Result<Attested, P2pError> {
    let operator = address(&response.operator, "operator")?;
    let escrow = address(&response.escrow, "escrow")?;
    let x25519 = <[u8; 32]>::try_from(response.x25519.as_slice())
        .map_err(|_| P2pError::malformed("x25519 must be 32 bytes"))?;
    let evidence = Evidence::from_bytes(&response.evidence)?;
    let binding = Binding {
        peer_id: peer.to_bytes(),
        operator: operator.into_array(),
        x25519,
        nonce,
        chain_id: response.chain_id,
        escrow: escrow.into_array(),
    };
    let verified = khachapuri_attest::verify(&evidence, &binding, policy, now)?;
    Ok(Attested {
        peer,
        operator,
        x25519,
        chain_id: response.chain_id,
        escrow,
        verified,
    })
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bounded(list: &[String], what: &str) -> Result<(), P2pError> {
    if list.len() > MAX_LIST || list.iter().any(|s| s.len() > MAX_FIELD) {
        return Err(P2pError::malformed(format!("{what}: too many or too long")));
    }
    Ok(())
}

/// Opens a signed offer from an attested provider: signed by its operator, paying to it,
/// on the attested chain and escrow, still valid, fields within bounds.
pub fn open_offer(
    signed: &Signed,
    provider: &Attested,
    now: SystemTime,
) -> Result<CapacityOffer, P2pError> {
    signing::verify(
        CAPACITY_DOMAIN,
        &signed.body,
        &signed.signature,
        provider.operator,
    )?;
    let offer: CapacityOffer = decode_body(&signed.body)?;
    bounded(&offer.runtimes, "runtimes")?;
    bounded(&offer.regions, "regions")?;
    if offer.endpoint.len() > MAX_FIELD || offer.refusal.len() > MAX_FIELD {
        return Err(P2pError::malformed("endpoint or refusal too long"));
    }
    if !offer.available {
        return Err(P2pError::Refused {
            code: "unavailable".into(),
            message: offer.refusal,
        });
    }
    if address(&offer.payment_address, "payment_address")? != provider.operator {
        return Err(P2pError::Signature("the offer pays someone else".into()));
    }
    if offer.chain_id != provider.chain_id || address(&offer.escrow, "escrow")? != provider.escrow {
        return Err(P2pError::Signature(
            "the offer names another chain or escrow".into(),
        ));
    }
    if offer.valid_until < unix(now) {
        return Err(P2pError::Signature("the offer has expired".into()));
    }
    Ok(offer)
}

/// A provision request for `spec_cid` to `provider`, signed by the payer, valid `ttl`.
pub fn make_order(
    payer: &PrivateKeySigner,
    spec_cid: &str,
    provider: PeerId,
    now: SystemTime,
    ttl: Duration,
) -> Result<ProvisionRequest, P2pError> {
    let order = ProvisionOrder {
        spec_cid: spec_cid.to_string(),
        payer: payer.address().to_vec(),
        provider: provider.to_bytes(),
        expires: unix(now) + ttl.as_secs(),
    };
    let body = prost::Message::encode_to_vec(&order);
    let signature = signing::sign(payer, ORDER_DOMAIN, &body)?;
    Ok(ProvisionRequest {
        order: body,
        signature,
    })
}

/// Opens a signed provision result: signed by the operator, for the CID ordered; a
/// refusal becomes [`P2pError::Refused`].
pub fn open_result(
    signed: &Signed,
    provider: &Attested,
    spec_cid: &str,
) -> Result<ProvisionResult, P2pError> {
    signing::verify(
        PROVISION_DOMAIN,
        &signed.body,
        &signed.signature,
        provider.operator,
    )?;
    let result: ProvisionResult = decode_body(&signed.body)?;
    if result.status != "provisioned" {
        let mut message = result.message;
        crate::protocol::clip(&mut message, MAX_FIELD);
        let mut code = result.code;
        crate::protocol::clip(&mut code, 64);
        return Err(P2pError::Refused { code, message });
    }
    if result.spec_cid != spec_cid {
        return Err(P2pError::Signature("the result is for another CID".into()));
    }
    if result.url.len() > MAX_FIELD {
        return Err(P2pError::malformed("url too long"));
    }
    Ok(result)
}

/// Everything the publisher learnt, and how long each step took.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The attested provider.
    pub provider: Attested,
    /// Its offer.
    pub offer: CapacityOffer,
    /// The provisioned deployment.
    pub result: ProvisionResult,
    /// Round trip of attest, capacity, provision.
    pub timings: [Duration; 3],
}

/// What to ask for and how to judge the answers.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The publisher's attestation policy.
    pub policy: Policy,
    /// Resources wanted.
    pub capacity: CapacityRequest,
    /// The published spec's CID.
    pub spec_cid: String,
    /// How long the signed order stays valid.
    pub order_ttl: Duration,
}

/// attest → capacity → provision against `peer`, each answer checked.
pub async fn provision(
    node: &P2pNode,
    peer: PeerId,
    payer: &PrivateKeySigner,
    ask: &Ask,
) -> Result<Provisioned, P2pError> {
    let (provider, attest_rtt) = attest(node, peer, &ask.policy).await?;
    finish(node, provider, attest_rtt, payer, ask).await
}

/// Attests `peer` under `policy`: the checked answer and the round trip.
pub async fn attest(
    node: &P2pNode,
    peer: PeerId,
    policy: &Policy,
) -> Result<(Attested, Duration), P2pError> {
    let nonce = new_nonce()?;
    let t = Instant::now();
    let answer = node
        .attest(
            peer,
            AttestRequest {
                nonce: nonce.to_vec(),
            },
        )
        .await?;
    let rtt = t.elapsed();
    Ok((
        check_attestation(peer, nonce, &answer, policy, SystemTime::now())?,
        rtt,
    ))
}

async fn finish(
    node: &P2pNode,
    provider: Attested,
    attest_rtt: Duration,
    payer: &PrivateKeySigner,
    ask: &Ask,
) -> Result<Provisioned, P2pError> {
    let peer = provider.peer;
    let t = Instant::now();
    let signed = node.capacity(peer, ask.capacity.clone()).await?;
    let capacity_rtt = t.elapsed();
    let offer = open_offer(&signed, &provider, SystemTime::now())?;

    let order = make_order(payer, &ask.spec_cid, peer, SystemTime::now(), ask.order_ttl)?;
    let t = Instant::now();
    let signed = node.provision(peer, order).await?;
    let provision_rtt = t.elapsed();
    let result = open_result(&signed, &provider, &ask.spec_cid)?;
    Ok(Provisioned {
        provider,
        offer,
        result,
        timings: [attest_rtt, capacity_rtt, provision_rtt],
    })
}

/// Provisions at a provider that advertises stable addresses (its registry record's
/// `p2p`), without the DHT: dials each address until one attests and passes `accept`.
pub async fn provision_at(
    node: &P2pNode,
    addrs: &[libp2p::Multiaddr],
    payer: &PrivateKeySigner,
    ask: &Ask,
    accept: impl Fn(&Attested) -> Result<(), String>,
) -> Result<Provisioned, P2pError> {
    let mut why = Vec::new();
    for addr in addrs {
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
            why.push(format!("{addr}: does not end in /p2p/<peer id>"));
            continue;
        };
        if let Err(e) = node.dial(addr.clone()).await {
            why.push(format!("{addr}: {e}"));
            continue;
        }
        match attest(node, peer, &ask.policy).await {
            Ok((a, rtt)) => match accept(&a) {
                Ok(()) => return finish(node, a, rtt, payer, ask).await,
                Err(e) => why.push(format!("{addr}: {e}")),
            },
            Err(e) => why.push(format!("{addr}: {e}")),
        }
    }
    Err(P2pError::NotFound(format!(
        "no advertised address answered acceptably: {}",
        why.join("; ")
    )))
}

/// Finds providers through the DHT (at most `candidates`), attests each until one
/// passes the policy and `accept` (e.g. "its operator and X25519 key are the registry
/// record's"), then takes its offer and provisions there. Each refusal is kept, so the
/// error says why every candidate was passed over.
pub async fn find_and_provision(
    node: &P2pNode,
    payer: &PrivateKeySigner,
    ask: &Ask,
    candidates: usize,
    accept: impl Fn(&Attested) -> Result<(), String>,
) -> Result<Provisioned, P2pError> {
    let found = node.find_providers(candidates).await?;
    let mut why = Vec::new();
    for peer in found.into_iter().take(candidates) {
        let attested = match attest(node, peer, &ask.policy).await {
            Ok(a) => a,
            Err(e) => {
                why.push(format!("{peer}: {e}"));
                continue;
            }
        };
        if let Err(e) = accept(&attested.0) {
            why.push(format!("{peer}: {e}"));
            continue;
        }
        return finish(node, attested.0, attested.1, payer, ask).await;
    }
    Err(P2pError::NotFound(format!(
        "no provider found through the DHT was acceptable: {}",
        why.join("; ")
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::answer::{open_order, sign_offer, sign_result};
    use khachapuri_attest::{TeeKind, TestAuthority};
    use libp2p::identity::Keypair;

    struct Fixture {
        authority: TestAuthority,
        peer: PeerId,
        operator: PrivateKeySigner,
        nonce: [u8; 32],
        answer: AttestResponse,
    }

    fn fixture() -> Fixture {
        let authority = TestAuthority::generate().unwrap();
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        let operator = PrivateKeySigner::random();
        let nonce = new_nonce().unwrap();
        let binding = Binding {
            peer_id: peer.to_bytes(),
            operator: operator.address().into_array(),
            x25519: [3; 32],
            nonce,
            chain_id: 5,
            escrow: [4; 20],
        };
        let answer = AttestResponse {
            evidence: authority.attest(&binding, b"m").to_bytes(),
            operator: operator.address().to_vec(),
            x25519: vec![3; 32],
            chain_id: 5,
            escrow: vec![4; 20],
        };
        Fixture {
            authority,
            peer,
            operator,
            nonce,
            answer,
        }
    }

    fn policy(f: &Fixture) -> Policy {
        Policy {
            require_tee: true,
            accepted_kinds: vec![TeeKind::Test],
            accepted_measurements: vec![],
            allow_test_root: Some(f.authority.root()),
        }
    }

    #[test]
    fn each_altered_binding_field_is_refused() {
        let f = fixture();
        let p = policy(&f);
        let now = SystemTime::now();
        check_attestation(f.peer, f.nonce, &f.answer, &p, now).unwrap();
        let mut alter: Vec<AttestResponse> = Vec::new();
        let mut a = f.answer.clone();
        a.operator = vec![1; 20];
        alter.push(a);
        let mut a = f.answer.clone();
        a.x25519[0] ^= 1;
        alter.push(a);
        let mut a = f.answer.clone();
        a.chain_id = 6;
        alter.push(a);
        let mut a = f.answer.clone();
        a.escrow[19] ^= 1;
        alter.push(a);
        let mut a = f.answer.clone();
        a.x25519.pop();
        alter.push(a);
        for a in alter {
            assert!(check_attestation(f.peer, f.nonce, &a, &p, now).is_err());
        }
        let mut nonce = f.nonce;
        nonce[31] ^= 1;
        assert!(check_attestation(f.peer, nonce, &f.answer, &p, now).is_err());
        let other = Keypair::generate_ed25519().public().to_peer_id();
        assert!(check_attestation(other, f.nonce, &f.answer, &p, now).is_err());
        // No TEE: the policy decides.
        let none = AttestResponse {
            evidence: Evidence::None {
                reason: "no TEE".into(),
            }
            .to_bytes(),
            ..f.answer.clone()
        };
        assert!(check_attestation(f.peer, f.nonce, &none, &p, now).is_err());
        let lax = Policy {
            require_tee: false,
            ..p
        };
        let v = check_attestation(f.peer, f.nonce, &none, &lax, now).unwrap();
        assert_eq!(v.verified.kind, TeeKind::None);
    }

    fn offer(f: &Fixture) -> CapacityOffer {
        CapacityOffer {
            available: true,
            payment_address: f.operator.address().to_vec(),
            chain_id: 5,
            escrow: vec![4; 20],
            valid_until: unix(SystemTime::now()) + 60,
            ..CapacityOffer::default()
        }
    }

    #[test]
    fn offers_must_be_signed_by_the_attested_operator_and_match_it() {
        let f = fixture();
        let now = SystemTime::now();
        let attested = check_attestation(f.peer, f.nonce, &f.answer, &policy(&f), now).unwrap();
        open_offer(
            &sign_offer(&f.operator, &offer(&f)).unwrap(),
            &attested,
            now,
        )
        .unwrap();
        let stranger = PrivateKeySigner::random();
        assert!(open_offer(&sign_offer(&stranger, &offer(&f)).unwrap(), &attested, now).is_err());
        let mut pays_other = offer(&f);
        pays_other.payment_address = stranger.address().to_vec();
        assert!(open_offer(
            &sign_offer(&f.operator, &pays_other).unwrap(),
            &attested,
            now
        )
        .is_err());
        let mut expired = offer(&f);
        expired.valid_until = 1;
        assert!(open_offer(&sign_offer(&f.operator, &expired).unwrap(), &attested, now).is_err());
        let mut other_chain = offer(&f);
        other_chain.chain_id = 1;
        assert!(open_offer(
            &sign_offer(&f.operator, &other_chain).unwrap(),
            &attested,
            now
        )
        .is_err());
        let mut signed = sign_offer(&f.operator, &offer(&f)).unwrap();
        signed.body.push(0);
        assert!(open_offer(&signed, &attested, now).is_err());
    }

    #[test]
    fn orders_bind_payer_provider_and_time() {
        let f = fixture();
        let payer = PrivateKeySigner::random();
        let now = SystemTime::now();
        let req = make_order(&payer, "bafy", f.peer, now, Duration::from_secs(60)).unwrap();
        let order = open_order(&req, &f.peer, unix(now), 3600).unwrap();
        assert_eq!(order.payer, payer.address());
        let other = Keypair::generate_ed25519().public().to_peer_id();
        assert!(
            open_order(&req, &other, unix(now), 3600).is_err(),
            "another provider"
        );
        assert!(
            open_order(&req, &f.peer, unix(now) + 61, 3600).is_err(),
            "expired"
        );
        assert!(
            open_order(&req, &f.peer, unix(now), 10).is_err(),
            "too far ahead"
        );
        // Naming someone else's channel: the signature recovers to the signer, not them.
        let mut forged: ProvisionOrder = decode_body(&req.order).unwrap();
        forged.payer = PrivateKeySigner::random().address().to_vec();
        let forged = ProvisionRequest {
            order: prost::Message::encode_to_vec(&forged),
            signature: req.signature.clone(),
        };
        assert!(open_order(&forged, &f.peer, unix(now), 3600).is_err());
    }

    #[test]
    fn results_must_be_signed_and_for_the_cid_ordered() {
        let f = fixture();
        let now = SystemTime::now();
        let attested = check_attestation(f.peer, f.nonce, &f.answer, &policy(&f), now).unwrap();
        let ok = ProvisionResult {
            status: "provisioned".into(),
            spec_cid: "bafy".into(),
            ..ProvisionResult::default()
        };
        open_result(&sign_result(&f.operator, &ok).unwrap(), &attested, "bafy").unwrap();
        assert!(open_result(&sign_result(&f.operator, &ok).unwrap(), &attested, "bafz").is_err());
        let stranger = PrivateKeySigner::random();
        assert!(open_result(&sign_result(&stranger, &ok).unwrap(), &attested, "bafy").is_err());
        let no = crate::answer::refusal("channel_empty", "fund it", "bafy");
        let err =
            open_result(&sign_result(&f.operator, &no).unwrap(), &attested, "bafy").unwrap_err();
        assert!(matches!(err, P2pError::Refused { ref code, .. } if code == "channel_empty"));
        // A provider's long multibyte refusal is cut at a character boundary, not a panic.
        let long = ProvisionResult {
            status: "refused".into(),
            code: "→".repeat(30),
            message: "→".repeat(400),
            ..ProvisionResult::default()
        };
        let err =
            open_result(&sign_result(&f.operator, &long).unwrap(), &attested, "bafy").unwrap_err();
        let P2pError::Refused { code, message } = err else {
            panic!("{err}")
        };
        assert_eq!((code.len(), message.len()), (63, 510));
    }
}
