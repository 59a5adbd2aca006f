//! Intel TDX and SGX DCAP quotes, verified offline by `dcap-qvl` (pure-Rust crypto)
//! against the collateral the provider ships with the quote.

use std::fmt::Display;

use dcap_qvl::QuoteCollateralV3;

use crate::{AttestError, TeeKind, Verified};

/// dcap-qvl reports failures as messages only; sort them into our variants.
fn classify(e: impl Display) -> AttestError {
    let msg = format!("{e:#}");
    let lower = msg.to_ascii_lowercase();
    if lower.contains("expired") || lower.contains("in the future") || lower.contains("not valid") {
        AttestError::Expired(msg)
    } else if lower.contains("revoked") || lower.contains("tcb level") {
        AttestError::TcbRejected(msg)
    } else if lower.contains("signature") || lower.contains("hash mismatch") {
        AttestError::BadSignature(msg)
    } else if lower.contains("cert") || lower.contains("crl") || lower.contains("chain") {
        AttestError::BadChain(msg)
    } else {
        AttestError::Malformed(msg)
    }
}

pub(crate) fn verify(quote: &[u8], collateral: &[u8], now: u64) -> Result<Verified, AttestError> {
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral)
        .map_err(|e| AttestError::Malformed(format!("DCAP collateral: {e}")))?;
    let report = dcap_qvl::verify::rustcrypto::verify(quote, &collateral, now).map_err(classify)?;
    let mut tcb = report.status.clone();
    if !report.advisory_ids.is_empty() {
        tcb.push(' ');
        tcb.push_str(&report.advisory_ids.join(","));
    }
    let (kind, measurement, report_data) = if let Some(td) = report.report.as_td10() {
        (TeeKind::Tdx, td.mr_td.to_vec(), td.report_data)
    } else if let Some(sgx) = report.report.as_sgx() {
        (TeeKind::Sgx, sgx.mr_enclave.to_vec(), sgx.report_data)
    } else {
        return Err(AttestError::Malformed("unknown DCAP report type".into()));
    };
    Ok(Verified {
        kind,
        measurement,
        report_data,
        tcb,
    })
}
