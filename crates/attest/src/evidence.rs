//! Attestation evidence and its wire encoding (a tagged binary that the p2p crate
//! carries in a protobuf `bytes` field).

use crate::AttestError;

/// Largest encoded evidence accepted by [`Evidence::from_bytes`]: a TDX quote with
/// its collateral is about 25 KiB, an SNP report with its chain about 5 KiB.
pub const MAX_EVIDENCE_BYTES: usize = 256 * 1024;

/// Longest [`Evidence::None`] reason kept, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// Longest test measurement, in bytes (SNP and TDX measurements are 48).
pub(crate) const MAX_TEST_MEASUREMENT: usize = 64;

const MAGIC: &[u8; 4] = b"KATT";
const VERSION: u8 = 1;
const TAG_NONE: u8 = 0;
const TAG_SNP: u8 = 1;
const TAG_TDX: u8 = 2;
const TAG_TEST: u8 = 3;

/// What a provider answers to an attestation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The provider has no TEE (or does not use it) and says so; the publisher's
    /// policy decides whether that is acceptable.
    None {
        /// Human-readable why (e.g. "no SEV-SNP or TDX hardware").
        reason: String,
    },
    /// An AMD SEV-SNP attestation report and the chip's VCEK certificate.
    SevSnp {
        /// The raw attestation report as the firmware returned it (1184 bytes).
        report: Vec<u8>,
        /// The VCEK certificate (DER) that signed the report.
        vcek: Vec<u8>,
        /// Optional ASK (DER); when present it must be AMD's built-in one.
        ask: Option<Vec<u8>>,
        /// Optional ARK (DER); when present it must be AMD's built-in one.
        ark: Option<Vec<u8>>,
    },
    /// An Intel TDX (or SGX) DCAP quote and the collateral to verify it offline.
    Tdx {
        /// The raw quote.
        quote: Vec<u8>,
        /// The collateral as dcap-qvl's `QuoteCollateralV3` JSON.
        collateral: Vec<u8>,
    },
    /// Khachapuri's own test hierarchy (dev mode and tests): accepted only when the
    /// policy names the test root.
    Test(TestEvidence),
}

/// A report of the test hierarchy: a root-certified leaf key signs
/// (report_data, measurement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestEvidence {
    /// The report's report_data (the binding hash).
    pub report_data: [u8; 64],
    /// The report's measurement (at most 64 bytes).
    pub measurement: Vec<u8>,
    /// The leaf's secp256k1 public key, SEC1 compressed.
    pub leaf_key: [u8; 33],
    /// Leaf validity start (Unix seconds).
    pub not_before: u64,
    /// Leaf validity end (Unix seconds).
    pub not_after: u64,
    /// The root's signature over the leaf certificate.
    pub leaf_sig: [u8; 64],
    /// The leaf's signature over the report.
    pub report_sig: [u8; 64],
}

impl Evidence {
    /// A short name of the variant, for errors and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Evidence::None { .. } => "none",
            Evidence::SevSnp { .. } => "sev-snp",
            Evidence::Tdx { .. } => "tdx",
            Evidence::Test(_) => "test",
        }
    }

    /// Encodes for the wire: `"KATT" ‖ version ‖ tag ‖ fields`, each variable field a
    /// big-endian u32 length then bytes, optional fields behind a 0/1 byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        match self {
            Evidence::None { reason } => {
                out.push(TAG_NONE);
                put(&mut out, reason.as_bytes());
            }
            Evidence::SevSnp {
                report,
                vcek,
                ask,
                ark,
            } => {
                out.push(TAG_SNP);
                put(&mut out, report);
                put(&mut out, vcek);
                put_opt(&mut out, ask.as_deref());
                put_opt(&mut out, ark.as_deref());
            }
            Evidence::Tdx { quote, collateral } => {
                out.push(TAG_TDX);
                put(&mut out, quote);
                put(&mut out, collateral);
            }
            Evidence::Test(t) => {
                out.push(TAG_TEST);
                out.extend_from_slice(&t.report_data);
                put(&mut out, &t.measurement);
                out.extend_from_slice(&t.leaf_key);
                out.extend_from_slice(&t.not_before.to_be_bytes());
                out.extend_from_slice(&t.not_after.to_be_bytes());
                out.extend_from_slice(&t.leaf_sig);
                out.extend_from_slice(&t.report_sig);
            }
        }
        out
    }

    /// Decodes what [`Evidence::to_bytes`] wrote. Refuses more than
    /// [`MAX_EVIDENCE_BYTES`], unknown versions or tags, truncation and trailing
    /// bytes; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, AttestError> {
        if bytes.len() > MAX_EVIDENCE_BYTES {
            return Err(malformed("evidence larger than the cap"));
        }
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(malformed("bad magic"));
        }
        if r.byte()? != VERSION {
            return Err(malformed("unknown evidence version"));
        }
        let ev = match r.byte()? {
            TAG_NONE => {
                let reason = r.field()?;
                if reason.len() > MAX_REASON_BYTES {
                    return Err(malformed("reason too long"));
                }
                let reason = std::str::from_utf8(reason)
                    .map_err(|_| malformed("reason is not UTF-8"))?
                    .to_owned();
                Evidence::None { reason }
            }
            TAG_SNP => Evidence::SevSnp {
                report: r.field()?.to_vec(),
                vcek: r.field()?.to_vec(),
                ask: r.opt_field()?,
                ark: r.opt_field()?,
            },
            TAG_TDX => Evidence::Tdx {
                quote: r.field()?.to_vec(),
                collateral: r.field()?.to_vec(),
            },
            TAG_TEST => {
                let report_data = r.array::<64>()?;
                let measurement = r.field()?.to_vec();
                if measurement.len() > MAX_TEST_MEASUREMENT {
                    return Err(malformed("test measurement too long"));
                }
                Evidence::Test(TestEvidence {
                    report_data,
                    measurement,
                    leaf_key: r.array::<33>()?,
                    not_before: u64::from_be_bytes(r.array::<8>()?),
                    not_after: u64::from_be_bytes(r.array::<8>()?),
                    leaf_sig: r.array::<64>()?,
                    report_sig: r.array::<64>()?,
                })
            }
            _ => return Err(malformed("unknown evidence kind")),
        };
        if !r.0.is_empty() {
            return Err(malformed("trailing bytes after evidence"));
        }
        Ok(ev)
    }
}

fn malformed(what: &str) -> AttestError {
    AttestError::Malformed(what.to_owned())
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    // Fields come from our own evidence, far below 4 GiB; saturating keeps this total.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

fn put_opt(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(0),
        Some(f) => {
            out.push(1);
            put(out, f);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestError> {
        if self.0.len() < n {
            return Err(malformed("truncated evidence"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, AttestError> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttestError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn field(&mut self) -> Result<&'a [u8], AttestError> {
        let len = u32::from_be_bytes(self.array::<4>()?);
        let len = usize::try_from(len).map_err(|_| malformed("field length"))?;
        self.take(len)
    }

    fn opt_field(&mut self) -> Result<Option<Vec<u8>>, AttestError> {
        match self.byte()? {
            0 => Ok(None),
            1 => Ok(Some(self.field()?.to_vec())),
            _ => Err(malformed("bad option flag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Evidence> {
        vec![
            Evidence::None {
                reason: "no TEE".into(),
            },
            Evidence::SevSnp {
                report: vec![1, 2, 3],
                vcek: vec![4],
                ask: None,
                ark: Some(vec![5, 6]),
            },
            Evidence::Tdx {
                quote: vec![7; 10],
                collateral: b"{}".to_vec(),
            },
            Evidence::Test(TestEvidence {
                report_data: [9; 64],
                measurement: vec![8; 48],
                leaf_key: [2; 33],
                not_before: 1,
                not_after: 2,
                leaf_sig: [3; 64],
                report_sig: [4; 64],
            }),
        ]
    }

    #[test]
    fn round_trips() {
        for e in samples() {
            assert_eq!(Evidence::from_bytes(&e.to_bytes()), Ok(e));
        }
    }

    #[test]
    fn refuses_truncation_trailing_and_oversize() {
        for e in samples() {
            let b = e.to_bytes();
            for n in 0..b.len() {
                assert!(
                    Evidence::from_bytes(&b[..n]).is_err(),
                    "prefix {n} of {e:?}"
                );
            }
            let mut t = b.clone();
            t.push(0);
            assert!(Evidence::from_bytes(&t).is_err());
        }
        let mut big = Evidence::Tdx {
            quote: vec![0; MAX_EVIDENCE_BYTES],
            collateral: vec![],
        }
        .to_bytes();
        assert!(matches!(
            Evidence::from_bytes(&big),
            Err(AttestError::Malformed(_))
        ));
        big.truncate(16);
        assert!(Evidence::from_bytes(&big).is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Evidence::from_bytes(&bytes);
            let mut framed = b"KATT\x01".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = Evidence::from_bytes(&framed);
        }
    }
}
