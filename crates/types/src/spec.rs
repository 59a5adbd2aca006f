//! The deployment spec: what a provider needs to run a function, and who pays.
//!
//! The spec is the contract between a publisher and a provider, so its bytes must be
//! reproducible: [`Spec::canonical_bytes`] is compact JSON with a fixed field order,
//! sorted maps and absent optionals omitted. The owner signs [`Spec::hash`] (EIP-191
//! `personal_sign` over the 32-byte hash) so a provider can refuse a spec nobody vouches
//! for; signing and recovery live with the wallet code, not here (no crypto keys in types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TypesError;

/// Current spec format version; bumped on any incompatible change.
pub const SPEC_VERSION: u32 = 1;

/// How the artifact is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// A component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy` world).
    #[default]
    WasiHttp,
    /// A WASI preview1 module speaking CGI on stdin/stdout.
    Wagi,
    /// A native Linux executable run under bubblewrap (providers opt in).
    Process,
}

impl RuntimeKind {
    /// The spelling used in specs, manifests and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WasiHttp => "wasi-http",
            Self::Wagi => "wagi",
            Self::Process => "process",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = TypesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "wasi-http" => Ok(Self::WasiHttp),
            "wagi" => Ok(Self::Wagi),
            "process" => Ok(Self::Process),
            other => Err(TypesError::InvalidSpec(format!(
                "unknown runtime {other:?} (expected wasi-http, wagi or process)"
            ))),
        }
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits the publisher asks for; the provider caps each with its own maximum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget of one call in milliseconds (provider default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Linear memory cap in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Largest request body accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<u64>,
    /// Largest response body the function may produce, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
}

/// Who pays for calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayerPolicy {
    /// Each caller pays with its own vouchers (or nothing on a free provider).
    #[default]
    Caller,
    /// The owner pays from a voucher carried in the (sealed) spec.
    Sponsored,
}

/// A deployment spec as published (inside an envelope).
///
/// Its `Debug` output redacts env values and the sponsor voucher (see [`RedactedEnv`]):
/// sealed specs carry secrets, and specs end up in logs and error messages.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Format version; readers refuse versions they do not know.
    pub version: u32,
    /// CID of the artifact (wasm component/module, or archive for `process`).
    pub artifact: String,
    /// How to run the artifact.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// Environment variables (and secrets, in sealed specs) the function sees.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Requested limits.
    #[serde(default)]
    pub limits: Limits,
    /// Who pays.
    #[serde(default)]
    pub payer: PayerPolicy,
    /// For `sponsored`: the owner's voucher (the `Khachapuri-Payment` value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_voucher: Option<String>,
    /// For `sponsored`: what this deployment's callers may draw, in token base units
    /// (decimal string), before any top-up naming it. The voucher above is cumulative for
    /// the owner's whole channel (it also covers the owner's own paid calls and other
    /// sponsored deployments); this owner-signed figure is the deployment's own share.
    /// Absent (specs from before this field): the carried voucher's amount is the budget.
    /// Omitted from the canonical bytes when absent, so older specs keep their bytes,
    /// hash and signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_budget: Option<String>,
    /// Owner address (0x-hex); the signature must recover to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Unix seconds at creation, so two deploys of the same artifact get distinct CIDs.
    pub created_at: u64,
    /// Provider address the spec is meant for; `None` for public specs any provider runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Owner's EIP-191 signature (0x-hex, 65 bytes) over [`Spec::hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What `Debug` prints in place of a secret value.
pub const REDACTED: &str = "<redacted>";

/// `Debug`s as a map of env var names to [`REDACTED`]: the names help debugging, the values
/// may be secrets (API keys in a sealed spec) that must never reach a log line.
pub struct RedactedEnv<'a>(Vec<&'a str>);

impl<'a> RedactedEnv<'a> {
    /// Shows the names `keys`, in the given order, and none of their values.
    pub fn new(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(keys.into_iter().collect())
    }
}

impl std::fmt::Debug for RedactedEnv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|k| (k, REDACTED)))
            .finish()
    }
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sponsor voucher is a bearer payment: whoever holds it can spend it at the
        // provider, so it is as secret as the env.
        let voucher = self.sponsor_voucher.as_ref().map(|_| REDACTED);
        f.debug_struct("Spec")
            .field("version", &self.version)
            .field("artifact", &self.artifact)
            .field("runtime", &self.runtime)
            .field(
                "env",
                &RedactedEnv::new(self.env.keys().map(String::as_str)),
            )
            .field("limits", &self.limits)
            .field("payer", &self.payer)
            .field("sponsor_voucher", &voucher)
            .field("sponsor_budget", &self.sponsor_budget)
            .field("owner", &self.owner)
            .field("created_at", &self.created_at)
            .field("provider", &self.provider)
            .field("signature", &self.signature)
            .finish()
    }
}

impl Spec {
    /// A fresh, unsigned spec for `artifact`.
    pub fn new(artifact: impl Into<String>, runtime: RuntimeKind, created_at: u64) -> Self {
        Self {
            version: SPEC_VERSION,
            artifact: artifact.into(),
            runtime,
            env: BTreeMap::new(),
            limits: Limits::default(),
            payer: PayerPolicy::Caller,
            sponsor_voucher: None,
            sponsor_budget: None,
            owner: None,
            created_at,
            provider: None,
            signature: None,
        }
    }

    /// Deterministic encoding: same spec, same bytes (and so the same CID).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of plain fields and BTreeMaps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// SHA-256 of the canonical bytes with the signature removed: what the owner signs.
    pub fn hash(&self) -> [u8; 32] {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        Sha256::digest(unsigned.canonical_bytes()).into()
    }

    /// Parses and validates a spec from its canonical JSON.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypesError> {
        let spec: Spec =
            serde_json::from_slice(bytes).map_err(|e| TypesError::InvalidSpec(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what serde cannot: version, env names, payer/voucher consistency.
    pub fn validate(&self) -> Result<(), TypesError> {
        if self.version != SPEC_VERSION {
            return Err(TypesError::InvalidSpec(format!(
                "spec version {} is not supported (this node reads version {SPEC_VERSION})",
                self.version
            )));
        }
        for key in self.env.keys() {
            let ok = !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !key.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(TypesError::InvalidSpec(format!(
                    "env var name {key:?} must be letters, digits and _ and not start with a digit"
                )));
            }
        }
        if self.payer == PayerPolicy::Sponsored && self.sponsor_voucher.is_none() {
            return Err(TypesError::InvalidSpec(
                "a sponsored spec needs a sponsor voucher".into(),
            ));
        }
        if let Some(budget) = &self.sponsor_budget {
            if self.payer != PayerPolicy::Sponsored {
                return Err(TypesError::InvalidSpec(
                    "a sponsor budget needs payer = sponsored".into(),
                ));
            }
            // One spelling per number: the budget is part of what the owner signs.
            let canonical = !budget.is_empty()
                && budget.len() <= 78
                && budget.bytes().all(|b| b.is_ascii_digit())
                && (budget == "0" || !budget.starts_with('0'));
            if !canonical {
                return Err(TypesError::InvalidSpec(format!(
                    "sponsor budget {budget:?} must be a decimal number of base units"
                )));
            }
        }
        Ok(())
    }
}

/// What is stored under a callable CID: a public spec, or a spec sealed to one provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Envelope {
    /// A spec in the clear that any provider may run.
    #[serde(rename = "khachapuri/spec")]
    Public {
        /// The signed spec.
        spec: Spec,
    },
    /// An HPKE-sealed spec only the named provider can open.
    #[serde(rename = "khachapuri/sealed")]
    Sealed {
        /// Provider address used as associated data (0x-hex).
        provider: String,
        /// HPKE encapsulated key (base64url, no padding).
        enc: String,
        /// Ciphertext of the canonical spec bytes (base64url, no padding).
        ciphertext: String,
    },
}

impl Envelope {
    /// Canonical bytes, uploaded to the store; their CID is the callable CID.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses an envelope fetched by CID.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypesError> {
        let env: Envelope = serde_json::from_slice(bytes).map_err(|e| {
            TypesError::InvalidSpec(format!("not a Khachapuri deployment envelope: {e}"))
        })?;
        if let Envelope::Public { spec } = &env {
            spec.validate()?;
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Spec {
        let mut s = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        s.env.insert("ZED".into(), "1".into());
        s.env.insert("ALPHA".into(), "2".into());
        s.limits.timeout_ms = Some(5000);
        s
    }

    #[test]
    fn canonical_bytes_are_stable_and_sorted() {
        let a = sample();
        let text = String::from_utf8(a.canonical_bytes()).expect("utf8");
        assert_eq!(
            text,
            r#"{"version":1,"artifact":"bafkreiabc","runtime":"wasi-http","env":{"ALPHA":"2","ZED":"1"},"limits":{"timeout_ms":5000},"payer":"caller","created_at":1700000000}"#
        );
        let back = Spec::from_slice(text.as_bytes()).expect("parse");
        assert_eq!(back, a);
        assert_eq!(back.canonical_bytes(), a.canonical_bytes());
    }

    #[test]
    fn an_absent_budget_keeps_the_old_bytes() {
        let mut s = sample();
        s.payer = PayerPolicy::Sponsored;
        s.sponsor_voucher = Some("v".into());
        let old = String::from_utf8(s.canonical_bytes()).expect("utf8");
        assert!(!old.contains("sponsor_budget"), "{old}");
        let hash = s.hash();
        s.sponsor_budget = Some("5000".into());
        let new = String::from_utf8(s.canonical_bytes()).expect("utf8");
        assert!(
            new.contains(r#""sponsor_voucher":"v","sponsor_budget":"5000""#),
            "{new}"
        );
        assert_ne!(s.hash(), hash, "the budget is signed");
        assert_eq!(Spec::from_slice(new.as_bytes()).expect("parse"), s);
    }

    #[test]
    fn hash_ignores_signature_only() {
        let a = sample();
        let mut b = a.clone();
        b.signature = Some("0x00".into());
        assert_eq!(a.hash(), b.hash());
        b.env.insert("NEW".into(), "x".into());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Spec::from_slice(b"{}").is_err());
        let mut s = sample();
        s.version = 9;
        assert!(Spec::from_slice(&s.canonical_bytes()).is_err());
        let mut s = sample();
        s.env.insert("1BAD".into(), "x".into());
        assert!(Spec::from_slice(&s.canonical_bytes()).is_err());
        let mut s = sample();
        s.payer = PayerPolicy::Sponsored;
        assert!(s.validate().is_err());
        s.sponsor_voucher = Some("v".into());
        s.sponsor_budget = Some("5000".into());
        assert!(s.validate().is_ok());
        for bad in ["", "05", "-1", "1.5", "0x10"] {
            s.sponsor_budget = Some(bad.into());
            assert!(s.validate().is_err(), "{bad:?}");
        }
        let mut s = sample();
        s.sponsor_budget = Some("1".into());
        assert!(s.validate().is_err(), "a budget without payer = sponsored");
        assert!(Envelope::from_slice(b"{\"type\":\"other\"}").is_err());
        assert!(Envelope::from_slice(b"\xff\x00").is_err());
    }

    #[test]
    fn envelope_round_trips() {
        let e = Envelope::Public { spec: sample() };
        assert_eq!(Envelope::from_slice(&e.to_bytes()).expect("parse"), e);
        let s = Envelope::Sealed {
            provider: "0xabc".into(),
            enc: "AAAA".into(),
            ciphertext: "BBBB".into(),
        };
        assert_eq!(Envelope::from_slice(&s.to_bytes()).expect("parse"), s);
    }

    #[test]
    fn debug_shows_env_names_but_never_secret_values() {
        let mut s = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        s.env.insert("API_KEY".into(), "sk-live-hunter2".into());
        s.env.insert("EMPTYISH".into(), "x".into());
        s.sponsor_voucher = Some("voucher-bearer-secret".into());
        let text = format!("{s:?}");
        let pretty = format!("{s:#?}");
        for out in [&text, &pretty] {
            assert!(!out.contains("sk-live-hunter2"), "secret leaked: {out}");
            assert!(
                !out.contains("voucher-bearer-secret"),
                "voucher leaked: {out}"
            );
            assert!(out.contains("API_KEY"), "names stay visible: {out}");
            assert!(out.contains(REDACTED));
        }
        assert!(text.contains(r#""API_KEY": "<redacted>""#), "{text}");
        let env = Envelope::Public { spec: s };
        assert!(!format!("{env:?}").contains("sk-live-hunter2"));
    }
}
