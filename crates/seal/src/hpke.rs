//! RFC 9180 HPKE, base mode, for exactly one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305 (ids 0x0020, 0x0001, 0x0003), single-shot.
//!
//! Written out here (a hundred lines on top of audited primitives) rather than pulled in
//! through a generic HPKE crate: one suite is all a spec envelope needs, and the RFC's
//! appendix A.2 vector in the tests pins every step.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::SealError;

const KEM_ID: u16 = 0x0020;
const KDF_ID: u16 = 0x0001;
const AEAD_ID: u16 = 0x0003;
const MODE_BASE: u8 = 0x00;
const N_SECRET: usize = 32;
const N_K: usize = 32;
const N_N: usize = 12;

fn kem_suite_id() -> [u8; 5] {
    let [a, b] = KEM_ID.to_be_bytes();
    [b'K', b'E', b'M', a, b]
}

fn hpke_suite_id() -> [u8; 10] {
    let [k0, k1] = KEM_ID.to_be_bytes();
    let [d0, d1] = KDF_ID.to_be_bytes();
    let [a0, a1] = AEAD_ID.to_be_bytes();
    [b'H', b'P', b'K', b'E', k0, k1, d0, d1, a0, a1]
}

/// `LabeledExtract(salt, label, ikm)`: the pseudorandom key.
fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut labeled = Zeroizing::new(Vec::with_capacity(
        7 + suite_id.len() + label.len() + ikm.len(),
    ));
    labeled.extend_from_slice(b"HPKE-v1");
    labeled.extend_from_slice(suite_id);
    labeled.extend_from_slice(label);
    labeled.extend_from_slice(ikm);
    let salt = (!salt.is_empty()).then_some(salt);
    Zeroizing::new(Hkdf::<Sha256>::extract(salt, &labeled).0.into())
}

/// `LabeledExpand(prk, label, info, L)` into `out` (L = `out.len()`, 12 or 32 here).
fn labeled_expand(prk: &[u8; 32], suite_id: &[u8], label: &[u8], info: &[u8], out: &mut [u8]) {
    let len = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    let parts: [&[u8]; 5] = [&len, b"HPKE-v1", suite_id, label, info];
    // A 32-byte PRK is always accepted, and 12/32-byte outputs are far below HKDF's
    // 255·HashLen cap, so neither step can fail.
    if let Ok(hk) = Hkdf::<Sha256>::from_prk(prk) {
        let _ = hk.expand_multi_info(&parts, out);
    }
}

/// DHKEM `ExtractAndExpand(dh, enc || pkR)`; refuses the all-zero DH output that a
/// low-order public key produces (RFC 9180 §7.1.4).
fn shared_secret(
    dh: &[u8; 32],
    enc: &[u8; 32],
    pk_r: &[u8; 32],
) -> Result<Zeroizing<[u8; N_SECRET]>, SealError> {
    if dh.iter().all(|b| *b == 0) {
        return Err(SealError::InvalidKey);
    }
    let suite = kem_suite_id();
    let prk = labeled_extract(&suite, b"", b"eae_prk", dh);
    let mut kem_context = [0u8; 64];
    kem_context[..32].copy_from_slice(enc);
    kem_context[32..].copy_from_slice(pk_r);
    let mut out = Zeroizing::new([0u8; N_SECRET]);
    labeled_expand(&prk, &suite, b"shared_secret", &kem_context, out.as_mut());
    Ok(out)
}

/// The base-mode key schedule: (key, base_nonce) for `shared_secret` and `info`.
fn key_schedule(shared: &[u8; N_SECRET], info: &[u8]) -> (Zeroizing<[u8; N_K]>, [u8; N_N]) {
    let suite = hpke_suite_id();
    let psk_id_hash = labeled_extract(&suite, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(&suite, b"", b"info_hash", info);
    let mut context = [0u8; 65];
    context[0] = MODE_BASE;
    context[1..33].copy_from_slice(psk_id_hash.as_ref());
    context[33..].copy_from_slice(info_hash.as_ref());
    let secret = labeled_extract(&suite, shared, b"secret", b"");
    let mut key = Zeroizing::new([0u8; N_K]);
    labeled_expand(&secret, &suite, b"key", &context, key.as_mut());
    let mut nonce = [0u8; N_N];
    labeled_expand(&secret, &suite, b"base_nonce", &context, &mut nonce);
    (key, nonce)
}

/// Single-shot seal with a given ephemeral secret (sequence number 0, so the nonce is
/// the base nonce). Returns (enc, ciphertext).
pub(crate) fn seal_with_ephemeral(
    sk_e: &[u8; 32],
    pk_r: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 32], Vec<u8>), SealError> {
    let sk_e = StaticSecret::from(*sk_e);
    let enc = *PublicKey::from(&sk_e).as_bytes();
    let dh = Zeroizing::new(*sk_e.diffie_hellman(&PublicKey::from(*pk_r)).as_bytes());
    let shared = shared_secret(&dh, &enc, pk_r)?;
    let (key, nonce) = key_schedule(&shared, info);
    let ct = ChaCha20Poly1305::new(key.as_ref().into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Decrypt)?;
    Ok((enc, ct))
}

/// Single-shot seal to `pk_r` with a fresh ephemeral key from the OS.
pub(crate) fn seal(
    pk_r: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 32], Vec<u8>), SealError> {
    let sk_e = Zeroizing::new(StaticSecret::random_from_rng(rand::rngs::OsRng).to_bytes());
    seal_with_ephemeral(&sk_e, pk_r, info, aad, plaintext)
}

/// Single-shot open by the holder of `sk_r`.
pub(crate) fn open(
    sk_r: &[u8; 32],
    enc: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let sk_r = StaticSecret::from(*sk_r);
    let pk_r = *PublicKey::from(&sk_r).as_bytes();
    let dh = Zeroizing::new(*sk_r.diffie_hellman(&PublicKey::from(*enc)).as_bytes());
    let shared = shared_secret(&dh, enc, &pk_r)?;
    let (key, nonce) = key_schedule(&shared, info);
    ChaCha20Poly1305::new(key.as_ref().into())
        .decrypt(
            (&nonce).into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| SealError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex(s).try_into().expect("32 bytes")
    }

    // RFC 9180 appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    // mode base, encryption sequence number 0.
    const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    const SK_EM: &str = "f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600";
    const PK_EM: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    const SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    const PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    const SHARED: &str = "0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7";
    const KEY: &str = "ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91";
    const BASE_NONCE: &str = "5c4d98150661b848853b547f";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    const AAD0: &str = "436f756e742d30";
    const CT0: &str = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";

    #[test]
    fn rfc9180_a2_intermediate_values() {
        let sk_r = StaticSecret::from(hex32(SK_RM));
        assert_eq!(PublicKey::from(&sk_r).as_bytes(), &hex32(PK_RM));
        let dh = sk_r.diffie_hellman(&PublicKey::from(hex32(PK_EM)));
        let shared = shared_secret(dh.as_bytes(), &hex32(PK_EM), &hex32(PK_RM)).expect("ss");
        assert_eq!(shared.as_ref(), &hex32(SHARED));
        let (key, nonce) = key_schedule(&shared, &hex(INFO));
        assert_eq!(key.as_ref(), &hex32(KEY));
        assert_eq!(nonce.to_vec(), hex(BASE_NONCE));
    }

    #[test]
    fn rfc9180_a2_seal_and_open() {
        let (enc, ct) = seal_with_ephemeral(
            &hex32(SK_EM),
            &hex32(PK_RM),
            &hex(INFO),
            &hex(AAD0),
            &hex(PT),
        )
        .expect("seal");
        assert_eq!(enc, hex32(PK_EM));
        assert_eq!(ct, hex(CT0));
        let pt = open(&hex32(SK_RM), &enc, &hex(INFO), &hex(AAD0), &ct).expect("open");
        assert_eq!(pt, hex(PT));
    }

    #[test]
    fn low_order_key_is_refused() {
        assert!(matches!(
            seal(&[0u8; 32], b"i", b"a", b"p"),
            Err(SealError::InvalidKey)
        ));
        assert!(matches!(
            open(&hex32(SK_RM), &[0u8; 32], b"i", b"a", &[0u8; 32]),
            Err(SealError::InvalidKey)
        ));
    }
}
