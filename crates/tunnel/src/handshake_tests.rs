use super::*;
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use proptest::prelude::*;

fn challenge() -> Challenge {
    Challenge {
        nonce: Nonce([0xab; 32]),
        host: "gw.example".into(),
        chain_id: 31337,
        expires: 1_790_000_000,
    }
}

fn signed(signer: &PrivateKeySigner, c: &Challenge, name: &str) -> Hello {
    let text = signing_text(c, name, signer.address());
    let sig = signer.sign_message_sync(text.as_bytes()).expect("sign");
    Hello {
        name: name.into(),
        operator: signer.address(),
        nonce: c.nonce,
        signature: sig.as_bytes(),
    }
}

#[test]
fn signature_recovers_to_the_signer() {
    let s = PrivateKeySigner::random();
    let c = challenge();
    let h = signed(&s, &c, "dev");
    assert_eq!(recover_signer(&c, &h).expect("recovers"), s.address());
}

#[test]
fn every_bound_field_changes_the_signer() {
    let s = PrivateKeySigner::random();
    let c = challenge();
    let h = signed(&s, &c, "dev");
    let variants = [
        Challenge {
            nonce: Nonce([0xac; 32]),
            ..c.clone()
        },
        Challenge {
            host: "other.example".into(),
            ..c.clone()
        },
        Challenge {
            chain_id: 1,
            ..c.clone()
        },
        Challenge {
            expires: c.expires + 1,
            ..c.clone()
        },
    ];
    for v in variants {
        assert_ne!(
            recover_signer(&v, &h).ok(),
            Some(s.address()),
            "{v:?} accepted the same signature"
        );
    }
    let renamed = Hello {
        name: "dev2".into(),
        ..h.clone()
    };
    assert_ne!(recover_signer(&c, &renamed).ok(), Some(s.address()));
}

#[test]
fn the_signed_text_is_fixed() {
    let op: Address = "0x00000000000000000000000000000000000000aa"
        .parse()
        .expect("addr");
    let text = signing_text(&challenge(), "dev", op);
    assert!(text.starts_with("khachapuri-tunnel-login-v1\n"), "{text}");
    assert!(
        text.contains("\ngateway: gw.example\nchain id: 31337\nname: dev\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "nonce: 0x{}\nexpires: 1790000000",
            "ab".repeat(32)
        )),
        "{text}"
    );
}

#[test]
fn known_wire_forms_decode() {
    let c = format!(
        r#"{{"type":"challenge","v":1,"nonce":"0x{}","host":"gw.example","chain_id":8453,"expires":5}}"#,
        "00".repeat(32)
    );
    assert!(matches!(decode(c.as_bytes()), Ok(Message::Challenge(_))));
    assert_eq!(
        decode(br#"{"type":"accepted","v":1}"#).ok(),
        Some(Message::Accepted)
    );
    let r = decode(br#"{"type":"refused","v":1,"code":"unregistered_name","message":"name x is not registered"}"#);
    assert!(matches!(
        r,
        Ok(Message::Refused {
            code: RefusalCode::UnregisteredName,
            ..
        })
    ));
}

#[test]
fn strictness() {
    let nonce = "00".repeat(32);
    let bad = [
        r#"{"type":"accepted","v":2}"#.to_owned(),
        r#"{"type":"accepted","v":1,"extra":0}"#.to_owned(),
        r#"{"type":"accepted"}"#.to_owned(),
        r#"{"type":"welcome","v":1}"#.to_owned(),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"{nonce}","host":"gw","chain_id":1,"expires":5}}"#
        ),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"0x{}","host":"gw","chain_id":1,"expires":5}}"#,
            "00".repeat(31)
        ),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"0x{nonce}","host":"GW","chain_id":1,"expires":5}}"#
        ),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"0x{nonce}","host":"gw:80","chain_id":1,"expires":5}}"#
        ),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"0x{nonce}","host":"gw\nname: x","chain_id":1,"expires":5}}"#
        ),
        format!(
            r#"{{"type":"challenge","v":1,"nonce":"0x{nonce}","host":"gw","chain_id":-1,"expires":5}}"#
        ),
        format!(
            r#"{{"type":"hello","v":1,"name":"Dev","operator":"0x{}","nonce":"0x{nonce}","signature":"0x{}"}}"#,
            "11".repeat(20),
            "22".repeat(65)
        ),
        format!(
            r#"{{"type":"hello","v":1,"name":"dev","operator":"0x{}","nonce":"0x{nonce}","signature":"0x{}"}}"#,
            "11".repeat(20),
            "zz".repeat(65)
        ),
        "[]".to_owned(),
        String::new(),
    ];
    for b in bad {
        assert!(decode(b.as_bytes()).is_err(), "accepted {b}");
    }
    let long = format!(
        r#"{{"type":"refused","v":1,"code":"busy","message":"{}"}}"#,
        "x".repeat(MAX_MESSAGE_BYTES)
    );
    assert!(decode(long.as_bytes()).is_err(), "oversize accepted");
}

#[test]
fn names_and_hosts() {
    for ok in ["dev", "dev2", "a", "my-provider", &"a".repeat(63)] {
        assert!(check_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "-dev",
        "dev-",
        "Dev",
        "dev.x",
        "dev x",
        "dev\n",
        &"a".repeat(64),
        "дев",
    ] {
        assert!(check_name(bad).is_err(), "{bad:?}");
    }
    for ok in ["gw.example", "127.0.0.1", "[::1]", "localhost"] {
        assert!(check_host(ok).is_ok(), "{ok}");
    }
    for bad in ["", "gw:443", "GW", "gw/x", "::1", "gw\n"] {
        assert!(check_host(bad).is_err(), "{bad:?}");
    }
}

fn arb_nonce() -> impl Strategy<Value = Nonce> {
    any::<[u8; 32]>().prop_map(Nonce)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let host = "[a-z0-9][a-z0-9.-]{0,60}";
    let name = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?";
    prop_oneof![
        (arb_nonce(), host, any::<u64>(), any::<u64>()).prop_map(
            |(nonce, host, chain_id, expires)| Message::Challenge(Challenge {
                nonce,
                host,
                chain_id,
                expires
            })
        ),
        (
            name,
            any::<[u8; 20]>(),
            arb_nonce(),
            proptest::collection::vec(any::<u8>(), 65)
        )
            .prop_map(|(name, op, nonce, sig)| {
                let mut signature = [0u8; 65];
                signature.copy_from_slice(&sig);
                Message::Hello(Hello {
                    name,
                    operator: Address::from(op),
                    nonce,
                    signature,
                })
            }),
        Just(Message::Accepted),
        (
            prop_oneof![
                Just(RefusalCode::UnregisteredName),
                Just(RefusalCode::WrongOperator),
                Just(RefusalCode::BadSignature),
                Just(RefusalCode::Nonce),
                Just(RefusalCode::Busy),
                Just(RefusalCode::LookupFailed),
                Just(RefusalCode::Protocol),
                Just(RefusalCode::WrongGateway),
            ],
            "\\PC{0,200}"
        )
            .prop_map(|(code, message)| Message::Refused { code, message }),
    ]
}

proptest! {
    #[test]
    fn round_trip(m in arb_message()) {
        let text = encode(&m);
        prop_assert!(text.len() <= MAX_MESSAGE_BYTES);
        prop_assert_eq!(decode(text.as_bytes()).expect("own encoding decodes"), m);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8192)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn oversize_is_refused(m in arb_message(), pad in MAX_MESSAGE_BYTES..MAX_MESSAGE_BYTES * 2) {
        // Valid JSON padded with whitespace past the cap must be refused by size alone.
        let mut text = encode(&m);
        text.push_str(&" ".repeat(pad));
        prop_assert!(matches!(decode(text.as_bytes()), Err(TunnelError::Malformed(ref w)) if w.contains("limit")));
    }

    #[test]
    fn mutated_valid_messages_never_panic(m in arb_message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode(&m).into_bytes();
        let i = at % bytes.len();
        bytes[i] = byte;
        if let Ok(Message::Hello(h)) = decode(&bytes) {
            prop_assert!(check_name(&h.name).is_ok());
        }
    }

    #[test]
    fn unknown_fields_are_refused(m in arb_message(), key in "[a-z_]{1,12}") {
        let mut v: serde_json::Value = serde_json::from_str(&encode(&m)).expect("json");
        let obj = v.as_object_mut().expect("object");
        prop_assume!(!obj.contains_key(&key));
        obj.insert(key, serde_json::Value::from(1));
        prop_assert!(decode(v.to_string().as_bytes()).is_err());
    }
}
