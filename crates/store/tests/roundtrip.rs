//! Property tests: import then export gives the bytes back, and every block the importer
//! emits hashes to its CID, for one-chunk, multi-chunk and two-level trees.

use bytes::Bytes;
use khachapuri_store::{export, import_bytes, Block, BlockSource, Cid, FileBuilder, Result};
use proptest::prelude::*;
use std::collections::HashMap;

struct MapSource(HashMap<Cid, Bytes>);

impl BlockSource for MapSource {
    async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        self.0
            .get(&cid)
            .cloned()
            .ok_or(khachapuri_store::StoreError::NotFound(cid))
    }
}

fn check(blocks: &[Block], root: Cid, expected: &[u8]) -> std::result::Result<(), TestCaseError> {
    for b in blocks {
        prop_assert!(
            b.cid.verify(&b.data),
            "block {} does not hash to its CID",
            b.cid
        );
    }
    let source = MapSource(blocks.iter().map(|b| (b.cid, b.data.clone())).collect());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut out = Vec::new();
    let n = rt
        .block_on(export(&source, root, &mut out, u64::MAX))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(n as usize, expected.len());
    prop_assert!(out == expected, "exported bytes differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn real_chunks_round_trip(len in prop_oneof![0usize..4096, (1usize << 20) - 2..(1 << 20) + 2, 0usize..(3 << 20) + 7], seed in any::<u8>()) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let (imported, blocks) = import_bytes(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(imported.size, len as u64);
        prop_assert_eq!(imported.blocks as usize, blocks.len());
        prop_assert_eq!(blocks.last().map(|b| b.cid), Some(imported.cid));
        prop_assert_eq!(imported.dag_size, blocks.iter().map(|b| b.data.len() as u64).sum::<u64>());
        check(&blocks, imported.cid, &data)?;
    }

    /// Small chunks make trees with 1024-link nodes and several levels cheap to build.
    #[test]
    fn deep_trees_round_trip(chunks in 0usize..2200, chunk_len in 1usize..4) {
        let mut builder = FileBuilder::new();
        let mut blocks = Vec::new();
        let mut data = Vec::new();
        let mut emit = |b: Block| { blocks.push(b); Ok(()) };
        for i in 0..chunks {
            let chunk: Vec<u8> = (0..chunk_len).map(|j| (i * 7 + j) as u8).collect();
            data.extend_from_slice(&chunk);
            builder.push_chunk(Bytes::from(chunk), &mut emit).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let imported = builder.finish(&mut emit).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&blocks, imported.cid, &data)?;
    }
}

#[tokio::test]
async fn async_import_matches_sync_import_and_stores_every_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = khachapuri_store::Blockstore::open(dir.path())
        .expect("open")
        .without_fsync();
    let data: Vec<u8> = (0..(2 << 20) + 5).map(|i: usize| (i % 253) as u8).collect();
    let (expected, blocks) = import_bytes(&data).expect("import");
    let imported = khachapuri_store::import_async(&data[..], &store)
        .await
        .expect("async import");
    assert_eq!(imported, expected);
    for b in &blocks {
        assert_eq!(store.get(&b.cid).expect("get").as_ref(), Some(&b.data));
    }
    let mut out = Vec::new();
    export(&store, imported.cid, &mut out, u64::MAX)
        .await
        .expect("export");
    assert_eq!(out, data);
}
