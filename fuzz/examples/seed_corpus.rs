//! Writes the committed seed corpus, `fuzz/corpus/<target>/`: a handful of valid inputs
//! per fuzz target, made with the crates' own encoders so every seed is something the
//! parser really accepts (libFuzzer mutates from there and reaches the deep paths fast).
//!
//! Run from `fuzz/` after a format change: `cargo run --example seed_corpus` (a separate,
//! uninstrumented build of every dependency). Cheaper after `scripts/fuzz` has built the
//! targets: build it with cargo-fuzz's RUSTFLAGS into the same target dir, then run
//! `ASAN_OPTIONS=detect_odr_violation=0 target/x86_64-unknown-linux-gnu/release/examples/seed_corpus`.
//! The output is deterministic (fixed keys) except the sealed envelopes, whose HPKE
//! randomness is fresh: those files are only written when missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use khachapuri_chain::{dev_signer, Address, Voucher, B256, U256};
use khachapuri_payments::{encode_payment, Receipt, ReceiptProof};
use khachapuri_store::car;
use khachapuri_store::dagpb::{PbLink, PbNode, UnixfsData, UNIXFS_FILE};
use khachapuri_types::{Cid, Envelope, PayerPolicy, RuntimeKind, Spec};

/// The address and X25519 secret `fuzz_targets/seal_open.rs` opens with.
const SEAL_ME: &str = "0x00000000000000000000000000000000000000aa";
const SEAL_SECRET: [u8; 32] = [7; 32];

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn write_once(target: &str, name: &str, bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
        .join(name);
    if !path.exists() {
        write(target, name, bytes);
    }
}

/// A two-level file: a root over `leaves` raw blocks, one with inline data too.
fn small_dag() -> (PbNode, Vec<Vec<u8>>) {
    let leaves: Vec<Vec<u8>> = vec![
        b"hello ".to_vec(),
        b"fuzzing ".to_vec(),
        b"world\n".to_vec(),
    ];
    let fs = UnixfsData::file(leaves.iter().map(|l| l.len() as u64).collect());
    let node = PbNode {
        links: leaves
            .iter()
            .map(|l| PbLink {
                hash: Cid::raw(l),
                name: Some(String::new()),
                tsize: Some(l.len() as u64),
            })
            .collect(),
        data: Some(fs.encode()),
    };
    (node, leaves)
}

fn inline_file(data: &[u8]) -> PbNode {
    let fs = UnixfsData {
        kind: UNIXFS_FILE,
        data: Some(data.to_vec()),
        filesize: Some(data.len() as u64),
        blocksizes: Vec::new(),
    };
    PbNode {
        links: Vec::new(),
        data: Some(fs.encode()),
    }
}

/// The exporter target's input: each block as a u16 LE length and its bytes, root first.
fn framed(blocks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        out.extend_from_slice(&(b.len() as u16).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

fn spec() -> Spec {
    let mut s = Spec::new(
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        RuntimeKind::WasiHttp,
        1_700_000_000,
    );
    s.env.insert("GREETING".into(), "hello".into());
    s
}

fn main() {
    // dag-pb / UnixFS nodes.
    let (root, leaves) = small_dag();
    let root_bytes = root.encode();
    let inline = inline_file(b"inline bytes\n").encode();
    write("dagpb", "file-root", &root_bytes);
    write("dagpb", "file-inline", &inline);
    write(
        "dagpb",
        "unixfs-data",
        &UnixfsData::file(vec![1, 2, 3]).encode(),
    );
    write("dagpb", "empty-node", &PbNode::default().encode());

    // CIDs, binary and text.
    let cids = [Cid::raw(b"a"), Cid::dag_pb(&root_bytes)];
    for (i, cid) in cids.iter().enumerate() {
        write("cid", &format!("bin-{i}"), &cid.to_bytes());
        write("cid", &format!("text-{i}"), cid.to_string().as_bytes());
    }

    // CARs: one block, and the whole small DAG in walk order.
    let section = |cid: &Cid, block: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&car::section_prefix(cid, block.len()));
        out.extend_from_slice(block);
    };
    let root_cid = Cid::dag_pb(&root_bytes);
    let mut dag_car = car::header(&root_cid);
    section(&root_cid, &root_bytes, &mut dag_car);
    for l in &leaves {
        section(&Cid::raw(l), l, &mut dag_car);
    }
    write("car", "small-dag", &dag_car);
    let leaf = Cid::raw(b"raw leaf");
    let mut one = car::header(&leaf);
    section(&leaf, b"raw leaf", &mut one);
    write("car", "one-raw-block", &one);

    // Exporter: the small DAG, an inline file, and a two-level tree.
    let leaf_refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    let mut dag_blocks = vec![root_bytes.as_slice()];
    dag_blocks.extend(&leaf_refs);
    write("exporter", "small-dag", &framed(&dag_blocks));
    write("exporter", "inline-file", &framed(&[&inline]));
    let mid = PbNode {
        links: vec![PbLink {
            hash: root_cid,
            name: Some(String::new()),
            tsize: Some(root_bytes.len() as u64),
        }],
        data: Some(UnixfsData::file(vec![leaves.iter().map(|l| l.len() as u64).sum()]).encode()),
    }
    .encode();
    let mut deep = vec![mid.as_slice(), root_bytes.as_slice()];
    deep.extend(&leaf_refs);
    write("exporter", "two-levels", &framed(&deep));

    // Khachapuri-Payment: vouchers signed by an anvil dev key.
    let signer = dev_signer(0);
    for (i, amount) in [1u64, 1_000_000].into_iter().enumerate() {
        let v = Voucher {
            payer: signer.address(),
            provider: Address::repeat_byte(0x22),
            epoch: i as u64,
            amount: U256::from(amount),
        }
        .sign(&signer, 31337, Address::repeat_byte(0x33))
        .unwrap();
        write(
            "payment",
            &format!("voucher-{i}"),
            encode_payment(&v).as_bytes(),
        );
    }

    // Khachapuri-Receipt: plain and signed.
    let plain = Receipt {
        cost: U256::from(250u64),
        consumed: U256::from(1_250u64),
        authorized: U256::from(10_000u64),
        proof: None,
    };
    write("receipt", "plain", plain.encode().as_bytes());
    let signed = Receipt {
        proof: Some(ReceiptProof {
            payer: signer.address(),
            epoch: 3,
            call: B256::repeat_byte(0x44),
            signature: [0x55; 65],
        }),
        ..plain
    };
    write("receipt", "signed", signed.encode().as_bytes());
    write("receipt", "request-id", b"req-0001.a_b");

    // 402 bodies: first contact, and a known payer (numbers as strings and as JSON ints).
    let first = serde_json::json!({
        "error": "payment required",
        "price": "1500",
        "price_unit": "micro base units (1e-6 of a token base unit)",
        "pricing": {"per_request": "1000", "per_ms": "5", "per_mb_out": "100"},
        "provider": Address::repeat_byte(0x22).to_string(),
        "escrow": Address::repeat_byte(0x33).to_string(),
        "chain_id": 31337,
    });
    write(
        "payment_required",
        "first-contact",
        first.to_string().as_bytes(),
    );
    let mut known = first.clone();
    known["epoch"] = 2.into();
    known["consumed"] = "12000".into();
    known["authorized"] = 10000.into();
    known["funds"] = "5000000".into();
    write(
        "payment_required",
        "known-payer",
        known.to_string().as_bytes(),
    );

    // Envelopes: public, sponsored, and a sealed one.
    let public = Envelope::Public { spec: spec() };
    write("envelope", "public", &public.to_bytes());
    let mut sponsored = spec();
    sponsored.payer = PayerPolicy::Sponsored;
    sponsored.sponsor_voucher = Some("e30".into());
    sponsored.owner = Some(signer.address().to_string());
    write(
        "envelope",
        "sponsored",
        &Envelope::Public { spec: sponsored }.to_bytes(),
    );
    let mut for_me = spec();
    for_me.provider = Some(SEAL_ME.into());
    let pubkey = khachapuri_seal::public_key(&SEAL_SECRET);
    let sealed = khachapuri_seal::seal(&for_me, SEAL_ME, &pubkey).unwrap();
    write_once("envelope", "sealed", &sealed.to_bytes());

    // seal_open: one that opens with the target's key, one sealed to another key.
    write_once("seal_open", "opens", &sealed.to_bytes());
    let other = khachapuri_seal::seal(&for_me, SEAL_ME, &[9; 32]).unwrap();
    write_once("seal_open", "other-key", &other.to_bytes());
}
