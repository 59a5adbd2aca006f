//! RFC 9180 HPKE, base mode, for exactly one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305 (ids 0x0020, 0x0001, 0x0003), single-shot.
//!
//! A thin adapter over the maintained `hpke` crate (rather than our own composition of
//! primitives): this module only fixes the suite, maps errors to [`SealError`] and keeps
//! every secret it handles in zeroizing storage. The RFC's appendix A.2 vector in the
//! tests pins the wire result, so the envelope bytes cannot drift with the crate.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, HpkeError, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, Zeroizing};

use crate::SealError;

/// The one KEM a spec envelope uses.
type Kem = X25519HkdfSha256;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;
type PublicKey = <Kem as hpke::Kem>::PublicKey;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

/// Maps the crate's errors onto ours. A DH that yields the all-zero output (a low-order
/// public key, RFC 9180 §7.1.4) surfaces as an encap/decap error: that is a bad key, not
/// a tampered envelope.
fn map_err(e: HpkeError) -> SealError {
    match e {
        HpkeError::EncapError | HpkeError::DecapError => SealError::InvalidKey,
        HpkeError::IncorrectInputLength(want, got) => {
            SealError::Malformed(format!("expected {want} bytes, got {got}"))
        }
        _ => SealError::Decrypt,
    }
}

/// The X25519 secret `sk` as the crate's key type (clamped; equivalent for X25519).
fn private_key(sk: &[u8; 32]) -> PrivateKey {
    match PrivateKey::from_bytes(sk) {
        Ok(k) => k,
        // The length is fixed at 32, the only thing `from_bytes` checks.
        Err(_) => unreachable!("a 32-byte X25519 secret always parses"),
    }
}

/// The public key of `sk`.
pub(crate) fn public_key(sk: &[u8; 32]) -> [u8; 32] {
    Kem::sk_to_pk(&private_key(sk)).to_bytes().into()
}

/// A fresh X25519 secret from the OS random source.
pub(crate) fn generate_secret() -> [u8; 32] {
    let (sk, _) = Kem::gen_keypair();
    let mut bytes = sk.to_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    bytes.as_mut_slice().zeroize();
    out
}

/// Single-shot seal with the given random source (sequence number 0). Returns
/// (enc, ciphertext). The source is the ephemeral key's input keying material; only the
/// RFC vector test needs to choose it.
#[cfg(test)]
fn seal_with_rng(
    pk_r: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl hpke::rand_core::CryptoRng,
) -> Result<([u8; 32], Vec<u8>), SealError> {
    let pk = PublicKey::from_bytes(pk_r).map_err(map_err)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        rng,
    )
    .map_err(map_err)?;
    Ok((enc.to_bytes().into(), ct))
}

/// Single-shot seal to `pk_r` with a fresh ephemeral key from the OS.
pub(crate) fn seal(
    pk_r: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; 32], Vec<u8>), SealError> {
    let pk = PublicKey::from_bytes(pk_r).map_err(map_err)?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
    )
    .map_err(map_err)?;
    Ok((enc.to_bytes().into(), ct))
}

/// Single-shot open by the holder of `sk_r`. The plaintext is zeroized when dropped.
pub(crate) fn open(
    sk_r: &[u8; 32],
    enc: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let sk = private_key(sk_r);
    let enc = EncappedKey::from_bytes(enc).map_err(map_err)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeR::Base,
        &sk,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex(s).try_into().expect("32 bytes")
    }

    /// Hands out fixed bytes: the RFC vector's `ikmE`, so the ephemeral key is the
    /// vector's `skEm`.
    struct FixedRng(Vec<u8>);

    impl hpke::rand_core::TryRng for FixedRng {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            unreachable!("only fill_bytes is used")
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            unreachable!("only fill_bytes is used")
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            let n = dst.len();
            dst.copy_from_slice(&self.0[..n]);
            self.0.drain(..n);
            Ok(())
        }
    }
    impl hpke::rand_core::TryCryptoRng for FixedRng {}

    // RFC 9180 appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    // mode base, encryption sequence number 0.
    const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
    const IKM_E: &str = "909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b";
    const PK_EM: &str = "1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a";
    const IKM_R: &str = "1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df";
    const SK_RM: &str = "8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb";
    const PK_RM: &str = "4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a";
    const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
    const AAD0: &str = "436f756e742d30";
    const CT0: &str = "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28";

    #[test]
    fn rfc9180_a2_keys() {
        assert_eq!(public_key(&hex32(SK_RM)), hex32(PK_RM));
        let (sk, pk) = Kem::derive_keypair(&hex(IKM_R));
        // The crate stores X25519 secrets clamped, the vector does not: compare as keys.
        assert!(sk == private_key(&hex32(SK_RM)));
        assert_eq!(pk.to_bytes().as_slice(), hex(PK_RM).as_slice());
    }

    #[test]
    fn rfc9180_a2_seal_and_open() {
        let mut rng = FixedRng(hex(IKM_E));
        let (enc, ct) =
            seal_with_rng(&hex32(PK_RM), &hex(INFO), &hex(AAD0), &hex(PT), &mut rng).expect("seal");
        assert_eq!(enc, hex32(PK_EM));
        assert_eq!(ct, hex(CT0));
        let pt = open(&hex32(SK_RM), &enc, &hex(INFO), &hex(AAD0), &ct).expect("open");
        assert_eq!(pt.as_slice(), hex(PT).as_slice());
    }

    #[test]
    fn fresh_secrets_differ_and_round_trip() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        let (enc, ct) = seal(&public_key(&a), b"i", b"a", b"p").expect("seal");
        assert_eq!(
            open(&a, &enc, b"i", b"a", &ct).expect("open").as_slice(),
            b"p"
        );
        assert!(matches!(
            open(&b, &enc, b"i", b"a", &ct),
            Err(SealError::Decrypt)
        ));
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
