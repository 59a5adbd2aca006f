//! End-to-end verification: the vendors' shipped sample evidence (genuine, but bound
//! to someone else's report_data) and our own test hierarchy (bound to ours).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use khachapuri_attest::{
    check_binding, report_data, verify, verify_evidence_only, AttestError, Binding, Evidence,
    Policy, TeeKind, TestAuthority,
};

const SNP_REPORT: &[u8] = include_bytes!("data/snp_report_milan.bin");
const SNP_VCEK: &[u8] = include_bytes!("data/snp_vcek_milan.der");
const TDX_QUOTE: &[u8] = include_bytes!("data/tdx_quote.bin");
const TDX_COLLATERAL: &[u8] = include_bytes!("data/tdx_quote_collateral.json");

/// 2025-06-25T00:00:00Z: inside the TDX sample collateral's validity
/// (TCB info and QE identity issued 2025-06-19, next update 2025-07-19).
const PINNED: u64 = 1_750_809_600;

fn pinned() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(PINNED)
}

fn binding() -> Binding {
    Binding {
        peer_id: b"\x00\x24\x08\x01\x12\x20peer-id-bytes-of-the-provider".to_vec(),
        operator: [0x11; 20],
        x25519: [0x22; 32],
        nonce: [0x33; 32],
        chain_id: 8453,
        escrow: [0x44; 20],
    }
}

fn snp() -> Evidence {
    Evidence::SevSnp {
        report: SNP_REPORT.to_vec(),
        vcek: SNP_VCEK.to_vec(),
        ask: None,
        ark: None,
    }
}

fn tdx() -> Evidence {
    Evidence::Tdx {
        quote: TDX_QUOTE.to_vec(),
        collateral: TDX_COLLATERAL.to_vec(),
    }
}

#[test]
fn shipped_snp_report_verifies_then_mismatches_our_binding() {
    let policy = Policy::default();
    let v = verify_evidence_only(&snp(), &policy, pinned()).expect("genuine SNP report");
    assert_eq!(v.kind, TeeKind::SevSnp);
    assert_eq!(v.measurement.len(), 48);
    assert_eq!(
        verify(&snp(), &binding(), &policy, pinned()),
        Err(AttestError::BindingMismatch)
    );
    // Through the wire encoding too.
    let decoded = Evidence::from_bytes(&snp().to_bytes()).expect("round trip");
    assert_eq!(
        verify(&decoded, &binding(), &policy, pinned()),
        Err(AttestError::BindingMismatch)
    );
}

#[test]
fn snp_flipped_report_byte_fails_signature() {
    let mut report = SNP_REPORT.to_vec();
    report[0x50] ^= 0x01; // inside report_data, part of the signed body
    let ev = Evidence::SevSnp {
        report,
        vcek: SNP_VCEK.to_vec(),
        ask: None,
        ark: None,
    };
    let err = verify_evidence_only(&ev, &Policy::default(), pinned()).expect_err("tampered");
    assert!(matches!(err, AttestError::BadSignature(_)), "{err:?}");
}

#[test]
fn snp_tampered_vcek_fails_chain() {
    let mut vcek = SNP_VCEK.to_vec();
    vcek[40] ^= 0xff;
    let ev = Evidence::SevSnp {
        report: SNP_REPORT.to_vec(),
        vcek,
        ask: None,
        ark: None,
    };
    let err = verify_evidence_only(&ev, &Policy::default(), pinned()).expect_err("tampered");
    assert!(
        matches!(err, AttestError::BadChain(_) | AttestError::Malformed(_)),
        "{err:?}"
    );
}

#[test]
fn snp_foreign_ark_is_refused() {
    let ev = Evidence::SevSnp {
        report: SNP_REPORT.to_vec(),
        vcek: SNP_VCEK.to_vec(),
        ask: None,
        ark: Some(SNP_VCEK.to_vec()),
    };
    let err = verify_evidence_only(&ev, &Policy::default(), pinned()).expect_err("foreign ARK");
    assert!(matches!(err, AttestError::BadChain(_)), "{err:?}");
}

#[test]
fn shipped_tdx_quote_verifies_then_mismatches_our_binding() {
    let policy = Policy::default();
    let v = verify_evidence_only(&tdx(), &policy, pinned()).expect("genuine TDX quote");
    assert_eq!(v.kind, TeeKind::Tdx);
    assert_eq!(v.measurement.len(), 48);
    assert!(v.tcb.starts_with("UpToDate"), "{}", v.tcb);
    assert_eq!(
        check_binding(&v, &binding(), &policy),
        Err(AttestError::BindingMismatch)
    );
    assert_eq!(
        verify(&tdx(), &binding(), &policy, pinned()),
        Err(AttestError::BindingMismatch)
    );
}

#[test]
fn tdx_flipped_body_byte_fails_signature() {
    let mut quote = TDX_QUOTE.to_vec();
    quote[200] ^= 0x01; // MRTD, inside the signed TD report
    let ev = Evidence::Tdx {
        quote,
        collateral: TDX_COLLATERAL.to_vec(),
    };
    let err = verify_evidence_only(&ev, &Policy::default(), pinned()).expect_err("tampered");
    assert!(matches!(err, AttestError::BadSignature(_)), "{err:?}");
}

#[test]
fn tdx_tampered_collateral_is_refused() {
    let mut collateral = TDX_COLLATERAL.to_vec();
    let mid = collateral.len() / 2; // inside the TCB info issuer chain
    collateral[mid] ^= 0x01;
    let ev = Evidence::Tdx {
        quote: TDX_QUOTE.to_vec(),
        collateral,
    };
    let err = verify_evidence_only(&ev, &Policy::default(), pinned()).expect_err("tampered");
    assert!(matches!(err, AttestError::BadChain(_)), "{err:?}");
}

#[test]
fn tdx_outside_collateral_validity_is_expired() {
    let late = UNIX_EPOCH + Duration::from_secs(PINNED + 365 * 24 * 3600);
    let err = verify_evidence_only(&tdx(), &Policy::default(), late).expect_err("stale");
    assert!(matches!(err, AttestError::Expired(_)), "{err:?}");
}

#[test]
fn kinds_not_in_policy_are_refused() {
    let only_tdx = Policy {
        accepted_kinds: vec![TeeKind::Tdx],
        ..Policy::default()
    };
    assert_eq!(
        verify_evidence_only(&snp(), &only_tdx, pinned()),
        Err(AttestError::KindNotAccepted("sev-snp"))
    );
    let only_snp = Policy {
        accepted_kinds: vec![TeeKind::SevSnp],
        ..Policy::default()
    };
    assert_eq!(
        verify_evidence_only(&tdx(), &only_snp, pinned()),
        Err(AttestError::KindNotAccepted("tdx"))
    );
}

#[test]
fn measurement_policy_applies_after_binding() {
    let ta = TestAuthority::generate().expect("test authority");
    let ev = ta.attest(&binding(), &[7; 48]);
    let mut policy = Policy {
        allow_test_root: Some(ta.root()),
        accepted_measurements: vec![vec![8; 48]],
        ..Policy::default()
    };
    assert!(matches!(
        verify(&ev, &binding(), &policy, pinned()),
        Err(AttestError::MeasurementNotAccepted(_))
    ));
    policy.accepted_measurements.push(vec![7; 48]);
    verify(&ev, &binding(), &policy, pinned()).expect("listed measurement");
}

/// Changes one field of an expected binding.
type Alter = fn(&mut Binding);

#[test]
fn test_hierarchy_binds_end_to_end() {
    let ta = TestAuthority::generate().expect("test authority");
    let ev = ta.attest(&binding(), b"measurement");
    let policy = Policy {
        allow_test_root: Some(ta.root()),
        ..Policy::default()
    };
    let v = verify(&ev, &binding(), &policy, pinned()).expect("good test evidence");
    assert_eq!(v.kind, TeeKind::Test);
    assert_eq!(v.report_data, report_data(&binding()));
    let wire = Evidence::from_bytes(&ev.to_bytes()).expect("round trip");
    verify(&wire, &binding(), &policy, pinned()).expect("after the wire");

    let alterations: [(&str, Alter); 6] = [
        ("peer id", |b| b.peer_id[3] ^= 1),
        ("nonce", |b| b.nonce[0] ^= 1),
        ("x25519", |b| b.x25519[31] ^= 1),
        ("operator", |b| b.operator[5] ^= 1),
        ("chain id", |b| b.chain_id += 1),
        ("escrow", |b| b.escrow[19] ^= 1),
    ];
    for (what, alter) in alterations {
        let mut expected = binding();
        alter(&mut expected);
        assert_eq!(
            verify(&ev, &expected, &policy, pinned()),
            Err(AttestError::BindingMismatch),
            "altered {what}"
        );
    }
}

#[test]
fn test_evidence_needs_its_root_named() {
    let ta = TestAuthority::generate().expect("test authority");
    let other = TestAuthority::generate().expect("other authority");
    let ev = ta.attest(&binding(), b"m");
    assert_eq!(
        verify(&ev, &binding(), &Policy::default(), pinned()),
        Err(AttestError::KindNotAccepted("test"))
    );
    let wrong_root = Policy {
        allow_test_root: Some(other.root()),
        ..Policy::default()
    };
    assert!(matches!(
        verify(&ev, &binding(), &wrong_root, pinned()),
        Err(AttestError::BadChain(_))
    ));
}

#[test]
fn test_evidence_tampered_or_expired_is_refused() {
    let ta = TestAuthority::generate_valid(PINNED - 10, PINNED + 10).expect("test authority");
    let policy = Policy {
        allow_test_root: Some(ta.root()),
        ..Policy::default()
    };
    let ev = ta.attest(&binding(), b"m");
    verify(&ev, &binding(), &policy, pinned()).expect("valid now");
    let late = UNIX_EPOCH + Duration::from_secs(PINNED + 11);
    assert!(matches!(
        verify(&ev, &binding(), &policy, late),
        Err(AttestError::Expired(_))
    ));
    let Evidence::Test(mut t) = ev else {
        panic!("test authority made non-test evidence");
    };
    t.measurement[0] ^= 1;
    assert!(matches!(
        verify(&Evidence::Test(t), &binding(), &policy, pinned()),
        Err(AttestError::BadSignature(_))
    ));
}

#[test]
fn provider_without_tee_depends_on_policy() {
    let ev = Evidence::None {
        reason: "no SEV-SNP or TDX hardware".into(),
    };
    let lenient = Policy {
        require_tee: false,
        ..Policy::default()
    };
    let v = verify(&ev, &binding(), &lenient, pinned()).expect("lenient policy");
    assert_eq!(v.kind, TeeKind::None);
    assert_eq!(
        verify(&ev, &binding(), &Policy::default(), pinned()),
        Err(AttestError::NoTee {
            reason: "no SEV-SNP or TDX hardware".into()
        })
    );
}

/// Verification cost per report/quote; run with
/// `cargo test -p khachapuri-attest --release --test verify -- --ignored --nocapture timing`.
#[test]
#[ignore]
#[allow(clippy::print_stdout)]
fn timing() {
    for (name, ev) in [("sev-snp", snp()), ("tdx", tdx())] {
        let n = 20u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            verify_evidence_only(&ev, &Policy::default(), pinned()).expect("verifies");
        }
        println!("{name}: {:?} per verification", start.elapsed() / n);
    }
}
