//! Sealing a [`Spec`] into an [`Envelope::Sealed`] and opening it again.
//!
//! The associated data is the provider's address in lower-case 0x-hex, so an envelope
//! relabelled to another provider fails authentication, and the opened spec must name
//! the same provider, so a provider cannot re-seal an owner-signed spec to someone else.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use khachapuri_types::{Envelope, Spec};
use zeroize::Zeroizing;

use crate::{hpke, SealError};

/// HPKE `info`: binds every envelope to this format and version.
pub const INFO: &[u8] = b"khachapuri/spec/v1";

/// Lower-case form of an address, the one spelling used as associated data.
fn normalize(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

/// Seals `spec` to the provider at `provider_address` whose X25519 key is
/// `provider_pubkey`. The spec's `provider` field should already name that address
/// (and be signed); [`open`] refuses a spec that names anyone else.
pub fn seal(
    spec: &Spec,
    provider_address: &str,
    provider_pubkey: &[u8; 32],
) -> Result<Envelope, SealError> {
    let provider = normalize(provider_address);
    let plaintext = Zeroizing::new(spec.canonical_bytes());
    let (enc, ciphertext) = hpke::seal(provider_pubkey, INFO, provider.as_bytes(), &plaintext)?;
    Ok(Envelope::Sealed {
        provider,
        enc: URL_SAFE_NO_PAD.encode(enc),
        ciphertext: URL_SAFE_NO_PAD.encode(ciphertext),
    })
}

/// Opens an envelope sealed to `my_address` with the matching X25519 secret. Fails with
/// [`SealError::WrongProvider`] before any decryption when the envelope names someone
/// else, and with [`SealError::Decrypt`] on any tampering or wrong key.
pub fn open(
    envelope: &Envelope,
    my_address: &str,
    my_secret: &[u8; 32],
) -> Result<Spec, SealError> {
    let Envelope::Sealed {
        provider,
        enc,
        ciphertext,
    } = envelope
    else {
        return Err(SealError::NotSealed);
    };
    let me = normalize(my_address);
    if normalize(provider) != me {
        return Err(SealError::WrongProvider {
            sealed_to: provider.clone(),
            me,
        });
    }
    let enc: [u8; 32] = URL_SAFE_NO_PAD
        .decode(enc)
        .map_err(|e| SealError::Malformed(format!("enc: {e}")))?
        .try_into()
        .map_err(|_| SealError::Malformed("enc must be 32 bytes".into()))?;
    let ciphertext = URL_SAFE_NO_PAD
        .decode(ciphertext)
        .map_err(|e| SealError::Malformed(format!("ciphertext: {e}")))?;
    let plaintext = hpke::open(my_secret, &enc, INFO, me.as_bytes(), &ciphertext)?;
    let spec = Spec::from_slice(&plaintext).map_err(|e| SealError::Spec(e.to_string()))?;
    match spec.provider.as_deref().map(normalize) {
        Some(p) if p == me => Ok(spec),
        Some(p) => Err(SealError::Spec(format!(
            "the sealed spec names provider {p}, not {me}"
        ))),
        None => Err(SealError::Spec(
            "a sealed spec must name the provider it is sealed to".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate_secret, public_key};
    use khachapuri_types::RuntimeKind;
    use proptest::prelude::*;

    const ME: &str = "0xAbCdEf0000000000000000000000000000000001";
    const OTHER: &str = "0x0000000000000000000000000000000000000002";

    fn spec_for(provider: &str) -> Spec {
        let mut s = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        s.env.insert("API_KEY".into(), "s3cret-value".into());
        s.provider = Some(provider.to_ascii_lowercase());
        s
    }

    fn parts(e: &Envelope) -> (String, String, String) {
        match e {
            Envelope::Sealed {
                provider,
                enc,
                ciphertext,
            } => (provider.clone(), enc.clone(), ciphertext.clone()),
            Envelope::Public { .. } => panic!("not sealed"),
        }
    }

    #[test]
    fn round_trip_and_no_plaintext() {
        let sk = generate_secret();
        let spec = spec_for(ME);
        let env = seal(&spec, ME, &public_key(&sk)).expect("seal");
        let bytes = env.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("s3cret-value"));
        assert!(!text.contains("API_KEY"));
        assert_eq!(parts(&env).0, ME.to_ascii_lowercase());
        let back = Envelope::from_slice(&bytes).expect("parse");
        assert_eq!(open(&back, ME, &sk).expect("open"), spec);
        // Address case does not matter to the opener.
        assert_eq!(
            open(&back, &ME.to_ascii_uppercase().replace("0X", "0x"), &sk).expect("open"),
            spec
        );
    }

    #[test]
    fn wrong_key_wrong_provider_wrong_aad_fail() {
        let sk = generate_secret();
        let env = seal(&spec_for(ME), ME, &public_key(&sk)).expect("seal");
        assert!(matches!(
            open(&env, ME, &generate_secret()),
            Err(SealError::Decrypt)
        ));
        assert!(matches!(
            open(&env, OTHER, &sk),
            Err(SealError::WrongProvider { .. })
        ));
        // Relabelled to another provider: the AAD no longer matches.
        let (_, enc, ciphertext) = parts(&env);
        let relabelled = Envelope::Sealed {
            provider: OTHER.into(),
            enc,
            ciphertext,
        };
        assert!(matches!(
            open(&relabelled, OTHER, &sk),
            Err(SealError::Decrypt)
        ));
        assert!(matches!(
            open(&Envelope::Public { spec: spec_for(ME) }, ME, &sk),
            Err(SealError::NotSealed)
        ));
    }

    #[test]
    fn spec_naming_another_provider_is_refused() {
        let sk = generate_secret();
        let env = seal(&spec_for(OTHER), ME, &public_key(&sk)).expect("seal");
        assert!(matches!(open(&env, ME, &sk), Err(SealError::Spec(_))));
        let mut anon = spec_for(ME);
        anon.provider = None;
        let env = seal(&anon, ME, &public_key(&sk)).expect("seal");
        assert!(matches!(open(&env, ME, &sk), Err(SealError::Spec(_))));
    }

    #[test]
    fn tampered_bytes_fail() {
        let sk = generate_secret();
        let env = seal(&spec_for(ME), ME, &public_key(&sk)).expect("seal");
        let (provider, enc, ciphertext) = parts(&env);
        let mut ct = URL_SAFE_NO_PAD.decode(&ciphertext).expect("b64");
        for i in [0, ct.len() / 2, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            let e = Envelope::Sealed {
                provider: provider.clone(),
                enc: enc.clone(),
                ciphertext: URL_SAFE_NO_PAD.encode(&bad),
            };
            assert!(matches!(open(&e, ME, &sk), Err(SealError::Decrypt)));
        }
        ct.truncate(10);
        let e = Envelope::Sealed {
            provider: provider.clone(),
            enc: enc.clone(),
            ciphertext: URL_SAFE_NO_PAD.encode(&ct),
        };
        assert!(matches!(open(&e, ME, &sk), Err(SealError::Decrypt)));
        let e = Envelope::Sealed {
            provider: provider.clone(),
            enc: "!!".into(),
            ciphertext: ciphertext.clone(),
        };
        assert!(matches!(open(&e, ME, &sk), Err(SealError::Malformed(_))));
        let mut enc_bytes = URL_SAFE_NO_PAD.decode(&enc).expect("b64");
        enc_bytes[0] ^= 1;
        let e = Envelope::Sealed {
            provider,
            enc: URL_SAFE_NO_PAD.encode(&enc_bytes),
            ciphertext,
        };
        assert!(open(&e, ME, &sk).is_err());
    }

    /// An envelope sealed by the hand-written HPKE this crate used before it moved to the
    /// `hpke` crate: the format did not change, so it must still open.
    #[test]
    fn envelope_sealed_by_the_old_code_still_opens() {
        let bytes = include_bytes!("../tests/fixtures/sealed-v1.json");
        let me = "0xabcdef0000000000000000000000000000000001";
        let env = Envelope::from_slice(bytes).expect("parse");
        assert_eq!(env.to_bytes(), bytes.to_vec(), "wire bytes round-trip");
        let spec = open(&env, me, &[0x42u8; 32]).expect("open");
        let mut want = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        want.env.insert("API_KEY".into(), "s3cret-value".into());
        want.env.insert("GREETING".into(), "hello, world".into());
        want.provider = Some(me.into());
        assert_eq!(spec, want);
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            env in proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", ".{0,40}", 0..6),
            created in any::<u64>(),
            key in any::<[u8; 32]>(),
        ) {
            let mut spec = Spec::new("bafkreiabc", RuntimeKind::Wagi, created);
            spec.env = env;
            spec.provider = Some(ME.to_ascii_lowercase());
            let pk = public_key(&key);
            let sealed = seal(&spec, ME, &pk).expect("seal");
            let back = Envelope::from_slice(&sealed.to_bytes()).expect("parse");
            prop_assert_eq!(open(&back, ME, &key).expect("open"), spec);
        }

        #[test]
        fn prop_open_arbitrary_never_panics(
            enc in ".{0,60}",
            ciphertext in ".{0,200}",
            key in any::<[u8; 32]>(),
        ) {
            let e = Envelope::Sealed { provider: ME.into(), enc, ciphertext };
            prop_assert!(open(&e, ME, &key).is_err());
        }
    }
}
