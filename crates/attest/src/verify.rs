//! The publisher's side: policy and verification of evidence against an expected
//! binding, in two steps so a caller (and the tests) can tell "the TEE vouches for
//! something" from "it vouches for this session".

use std::time::{SystemTime, UNIX_EPOCH};

use crate::testroot::{verify_test, TestRoot};
use crate::{report_data, snp, tdx, AttestError, Binding, Evidence};

/// The kinds of evidence a publisher can accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeeKind {
    /// No TEE: the provider said so ([`Evidence::None`]).
    None,
    /// AMD SEV-SNP.
    SevSnp,
    /// Intel TDX (DCAP quote).
    Tdx,
    /// Intel SGX (DCAP quote).
    Sgx,
    /// Khachapuri's test hierarchy.
    Test,
}

/// What a publisher accepts. The default is strict: a real TEE (SEV-SNP or TDX),
/// any measurement, no test root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Refuse providers that answer [`Evidence::None`].
    pub require_tee: bool,
    /// Hardware kinds accepted ([`TeeKind::SevSnp`], [`TeeKind::Tdx`], [`TeeKind::Sgx`]).
    pub accepted_kinds: Vec<TeeKind>,
    /// Accepted measurements (SNP launch digest, TDX MRTD, SGX MRENCLAVE); empty = any.
    pub accepted_measurements: Vec<Vec<u8>>,
    /// Accept [`Evidence::Test`] signed under this root (tests, dev mode only).
    pub allow_test_root: Option<TestRoot>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            require_tee: true,
            accepted_kinds: vec![TeeKind::SevSnp, TeeKind::Tdx],
            accepted_measurements: Vec::new(),
            allow_test_root: None,
        }
    }
}

/// What verified evidence vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Which kind of TEE signed it ([`TeeKind::None`] when the provider has none).
    pub kind: TeeKind,
    /// The measurement of the code the TEE runs (empty for [`TeeKind::None`]).
    pub measurement: Vec<u8>,
    /// The report's report_data (all zero for [`TeeKind::None`]).
    pub report_data: [u8; 64],
    /// The platform's TCB, human-readable (SNP reported TCB, DCAP TCB status and
    /// advisories).
    pub tcb: String,
}

/// Verifies `evidence` completely: signatures and chains at `now`, the policy's kinds
/// and measurements, and that it vouches for `expected`.
pub fn verify(
    evidence: &Evidence,
    expected: &Binding,
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified, AttestError> {
    let v = verify_evidence_only(evidence, policy, now)?;
    check_binding(&v, expected, policy)?;
    Ok(v)
}

/// The cryptographic step: the evidence is genuine (signature, chain to the vendor's
/// or the named test root, collateral valid at `now`) and of an accepted kind. Does
/// not look at the binding or the measurement list.
pub fn verify_evidence_only(
    evidence: &Evidence,
    policy: &Policy,
    now: SystemTime,
) -> Result<Verified, AttestError> {
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AttestError::Expired("verification time before 1970".into()))?
        .as_secs();
    let v = match evidence {
        Evidence::None { reason } => {
            if policy.require_tee {
                return Err(AttestError::NoTee {
                    reason: reason.clone(),
                });
            }
            return Ok(Verified {
                kind: TeeKind::None,
                measurement: Vec::new(),
                report_data: [0; 64],
                tcb: String::new(),
            });
        }
        Evidence::Test(t) => {
            let root = policy
                .allow_test_root
                .as_ref()
                .ok_or(AttestError::KindNotAccepted("test"))?;
            verify_test(t, root, now_secs)?;
            Verified {
                kind: TeeKind::Test,
                measurement: t.measurement.clone(),
                report_data: t.report_data,
                tcb: "test".into(),
            }
        }
        Evidence::SevSnp {
            report,
            vcek,
            ask,
            ark,
        } => {
            accept_kind(policy, TeeKind::SevSnp, "sev-snp")?;
            snp::verify(report, vcek, ask.as_deref(), ark.as_deref())?
        }
        Evidence::Tdx { quote, collateral } => {
            // Tdx and Sgx share the variant; which one it is shows after parsing.
            if !policy.accepted_kinds.contains(&TeeKind::Tdx)
                && !policy.accepted_kinds.contains(&TeeKind::Sgx)
            {
                return Err(AttestError::KindNotAccepted("tdx"));
            }
            let v = tdx::verify(quote, collateral, now_secs)?;
            let name = if v.kind == TeeKind::Sgx { "sgx" } else { "tdx" };
            accept_kind(policy, v.kind, name)?;
            v
        }
    };
    Ok(v)
}

fn accept_kind(policy: &Policy, kind: TeeKind, name: &'static str) -> Result<(), AttestError> {
    if policy.accepted_kinds.contains(&kind) {
        Ok(())
    } else {
        Err(AttestError::KindNotAccepted(name))
    }
}

/// The session step: the verified report vouches for `expected` (report_data equals
/// [`report_data`]`(expected)`) and runs an accepted measurement. Evidence of kind
/// [`TeeKind::None`] carries no binding and passes (the policy admitted it).
pub fn check_binding(
    verified: &Verified,
    expected: &Binding,
    policy: &Policy,
) -> Result<(), AttestError> {
    if verified.kind == TeeKind::None {
        return Ok(());
    }
    if verified.report_data != report_data(expected) {
        return Err(AttestError::BindingMismatch);
    }
    if !policy.accepted_measurements.is_empty()
        && !policy
            .accepted_measurements
            .iter()
            .any(|m| m == &verified.measurement)
    {
        return Err(AttestError::MeasurementNotAccepted(hex(
            &verified.measurement
        )));
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
