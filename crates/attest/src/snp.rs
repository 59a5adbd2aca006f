//! AMD SEV-SNP: the report signed by the chip's VCEK, the VCEK certified by AMD's
//! ASK and ARK (the `sev` crate's built-in Milan, Genoa and Turin roots).
//!
//! Not checked (yet): the certificates' validity periods against the verification
//! time (`sev`'s pure-Rust chain check ignores them; AMD's ARK/ASK are valid for 25
//! years, VCEKs for 7) and VCEK revocation (AMD's CRL would have to travel with the
//! evidence).

use sev::certs::snp::{builtin, ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use crate::{AttestError, TeeKind, Verified};

type Roots = fn() -> std::io::Result<Certificate>;

/// The built-in (ARK, ASK) pairs, one per product generation.
const PRODUCTS: [(&str, Roots, Roots); 3] = [
    ("milan", builtin::milan::ark, builtin::milan::ask),
    ("genoa", builtin::genoa::ark, builtin::genoa::ask),
    ("turin", builtin::turin::ark, builtin::turin::ask),
];

fn same_der(given: Option<&[u8]>, builtin: &Certificate) -> bool {
    match given {
        None => true,
        Some(g) => builtin.to_der().map(|d| d == g).unwrap_or(false),
    }
}

pub(crate) fn verify(
    report: &[u8],
    vcek: &[u8],
    ask: Option<&[u8]>,
    ark: Option<&[u8]>,
) -> Result<Verified, AttestError> {
    let vcek = Certificate::from_der(vcek)
        .map_err(|e| AttestError::Malformed(format!("VCEK certificate: {e}")))?;
    let parsed = AttestationReport::from_bytes(report)
        .map_err(|e| AttestError::Malformed(format!("SNP report: {e}")))?;

    // The VCEK must chain to one of AMD's roots; supplied ASK/ARK are only accepted
    // when they are those very certificates (a provider cannot bring its own root).
    let mut chain = None;
    for (name, ark_fn, ask_fn) in PRODUCTS {
        let (Ok(b_ark), Ok(b_ask)) = (ark_fn(), ask_fn()) else {
            continue;
        };
        let candidate = Chain {
            ca: ca::Chain {
                ark: b_ark.clone(),
                ask: b_ask.clone(),
            },
            vek: vcek.clone(),
        };
        if (&candidate).verify().is_ok() {
            if !same_der(ask, &b_ask) || !same_der(ark, &b_ark) {
                return Err(AttestError::BadChain(format!(
                    "supplied ASK/ARK are not AMD's {name} certificates"
                )));
            }
            chain = Some(candidate);
            break;
        }
    }
    let chain = chain.ok_or_else(|| {
        AttestError::BadChain("VCEK is not certified by AMD's Milan, Genoa or Turin roots".into())
    })?;
    (&chain, &parsed)
        .verify()
        .map_err(|e| AttestError::BadSignature(format!("SNP report: {e}")))?;

    Ok(Verified {
        kind: TeeKind::SevSnp,
        measurement: parsed.measurement.to_vec(),
        report_data: parsed.report_data,
        tcb: format!("{:?}", parsed.reported_tcb),
    })
}
