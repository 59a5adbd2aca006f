//! The publishing steps, in the order a crash or a refusal loses nothing: the spec is
//! validated and the seal target known before the artifact is uploaded, and the spec is
//! uploaded last.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use khachapuri_chain::{PrivateKeySigner, ProviderRecord, U256};
use khachapuri_store::KuboClient;
use khachapuri_types::{Cid, Envelope, Limits, PayerPolicy, RuntimeKind, Spec};

use crate::error::PublishError;

/// The function to publish.
#[derive(Debug, Clone)]
pub struct Function {
    /// The artifact's bytes (a component, a module, or a native archive).
    pub artifact: Bytes,
    /// How providers run it.
    pub runtime: RuntimeKind,
    /// Environment the function sees (secrets only ever in a sealed spec).
    pub env: BTreeMap<String, String>,
    /// What it asks for (timeout, memory, body sizes).
    pub limits: Limits,
}

/// A sponsored deployment: the owner's voucher rides in the (sealed) spec.
#[derive(Debug, Clone)]
pub struct Sponsor {
    /// `Khachapuri-Payment` value of the owner's voucher.
    pub voucher: String,
    /// This deployment's share of it, in base units.
    pub budget: U256,
}

/// The provider a spec is sealed to.
#[derive(Debug, Clone)]
pub struct SealTo {
    /// Its registry record (operator address, X25519 key, endpoint).
    pub record: ProviderRecord,
    /// The owner's voucher when callers pay nothing.
    pub sponsor: Option<Sponsor>,
}

/// What was published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The callable CID (the envelope's).
    pub cid: Cid,
    /// The artifact's CID.
    pub artifact_cid: Cid,
    /// Whether the spec is sealed (else public).
    pub sealed: bool,
}

/// Uploads `data` as `name` and checks the store computed the CID we compute locally.
pub async fn upload_checked(
    kubo: &KuboClient,
    name: &str,
    what: &'static str,
    data: Bytes,
) -> Result<Cid, PublishError> {
    let (local, _) = khachapuri_store::import_bytes(&data).map_err(PublishError::Import)?;
    let added = kubo
        .add_bytes(name, data)
        .await
        .map_err(|source| PublishError::Upload { what, source })?;
    if added.cid != local.cid {
        return Err(PublishError::CidMismatch {
            store: added.cid.to_string(),
            local: local.cid.to_string(),
        });
    }
    Ok(local.cid)
}

/// Publishes `function` signed by `owner`, sealed to `to` (or public when `None`).
pub async fn publish(
    kubo: &KuboClient,
    function: Function,
    to: Option<&SealTo>,
    owner: &PrivateKeySigner,
) -> Result<Published, PublishError> {
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Validate everything but the artifact CID before uploading anything.
    let mut spec = Spec::new(String::new(), function.runtime, created_at);
    spec.env = function.env;
    spec.limits = function.limits;
    if let Some(t) = to {
        spec.provider = Some(format!("{:#x}", t.record.operator));
        if let Some(s) = &t.sponsor {
            spec.payer = PayerPolicy::Sponsored;
            spec.sponsor_voucher = Some(s.voucher.clone());
            spec.sponsor_budget = Some(s.budget.to_string());
        }
    }
    spec.validate()?;
    let name = match function.runtime {
        RuntimeKind::Process => "artifact.tar",
        _ => "artifact.wasm",
    };
    let artifact_cid = upload_checked(kubo, name, "artifact", function.artifact).await?;
    spec.artifact = artifact_cid.to_string();
    khachapuri_chain::sign_spec(&mut spec, owner)?;
    let envelope = match to {
        None => Envelope::Public { spec },
        Some(t) => khachapuri_seal::seal(
            &spec,
            &format!("{:#x}", t.record.operator),
            &t.record.pubkey,
        )
        .map_err(|source| PublishError::Seal {
            name: t.record.name.clone(),
            source,
        })?,
    };
    let cid = upload_checked(kubo, "spec.json", "spec", envelope.to_bytes().into()).await?;
    Ok(Published {
        cid,
        artifact_cid,
        sealed: to.is_some(),
    })
}
