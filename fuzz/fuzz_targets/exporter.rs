//! The UnixFS exporter and the DAG walker read blocks that came from any gateway (each
//! block matches its CID, but its links and sizes are the publisher's choice): neither
//! may panic, and the exporter never writes more than its `max_size`.
//!
//! Input: blocks, each as a 2-byte little-endian length then the bytes; the root is the
//! dag-pb CID of the first block. The source answers a CID with the block it names when
//! one matches, and otherwise with block `digest[0] % n`, so that the fuzzer can build
//! links (and even cycles, which real hashes forbid) without forging SHA-256. A fetch
//! budget keeps such cycles from looping forever.
#![no_main]
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use khachapuri_store::{export, BlockSource, Cid, DagWalker, StoreError};
use libfuzzer_sys::fuzz_target;

/// Fetches allowed per input: enough for small real DAGs, few enough to stay fast.
const BUDGET: usize = 512;
/// The exporter's size cap for this target.
const MAX_SIZE: u64 = 1 << 16;

struct Blocks {
    by_cid: HashMap<Cid, usize>,
    blocks: Vec<bytes::Bytes>,
    fetches: AtomicUsize,
}

impl Blocks {
    fn pick(&self, cid: &Cid) -> Option<bytes::Bytes> {
        if self.fetches.fetch_add(1, Ordering::Relaxed) >= BUDGET || self.blocks.is_empty() {
            return None;
        }
        let i = match self.by_cid.get(cid) {
            Some(&i) => i,
            None => cid.digest()[0] as usize % self.blocks.len(),
        };
        Some(self.blocks[i].clone())
    }
}

impl BlockSource for Blocks {
    async fn get_block(&self, cid: Cid) -> khachapuri_store::Result<bytes::Bytes> {
        self.pick(&cid).ok_or(StoreError::NotFound(cid))
    }
}

fn split(mut data: &[u8]) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        let rest = &data[2..];
        let block = &rest[..len.min(rest.len())];
        out.push(bytes::Bytes::copy_from_slice(block));
        data = &rest[block.len()..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let blocks = split(data);
    let Some(first) = blocks.first() else {
        return;
    };
    let root = Cid::dag_pb(first);
    let mut by_cid = HashMap::new();
    for (i, b) in blocks.iter().enumerate() {
        by_cid.entry(Cid::dag_pb(b)).or_insert(i);
        by_cid.entry(Cid::raw(b)).or_insert(i);
    }
    let source = Blocks {
        by_cid,
        blocks,
        fetches: AtomicUsize::new(0),
    };

    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let mut out = Vec::new();
    if let Ok(n) = rt.block_on(export(&source, root, &mut out, MAX_SIZE)) {
        assert_eq!(n, out.len() as u64);
        assert!(n <= MAX_SIZE);
    }

    // The walk the CAR writer and completeness check share, with a fresh budget.
    source.fetches.store(0, Ordering::Relaxed);
    let mut walker = DagWalker::new(root);
    for _ in 0..BUDGET {
        let Ok(Some(cid)) = walker.next_cid() else { break };
        let Some(block) = source.pick(&cid) else {
            break;
        };
        if walker.visit(cid, &block).is_err() {
            break;
        }
    }
});
