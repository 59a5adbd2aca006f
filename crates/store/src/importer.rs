//! UnixFS file importer with Kubo's `unixfs-v1-2025` parameters: 1 MiB fixed chunks, raw
//! leaves, a balanced dag-pb tree of at most 1024 links per node, CIDv1 sha2-256.
//!
//! The tree is built bottom-up as chunks arrive: each level keeps at most 1024 pending
//! entries and is folded into a parent as soon as it is full, so memory stays constant
//! (a few KiB per level plus one chunk) whatever the file size. The shape equals Helia's
//! `balanced` layout (batch by 1024, repeat until one root) and Kubo's balanced builder.

use std::io::Read;

use bytes::Bytes;
use khachapuri_types::Cid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::blockstore::Blockstore;
use crate::dagpb::{PbLink, PbNode, UnixfsData};
use crate::error::Result;

/// Fixed chunk size of the profile (Kubo `size-1048576`).
pub const CHUNK_SIZE: usize = 1 << 20;
/// Maximum links per interior node.
pub const MAX_LINKS: usize = 1024;

/// A block and its CID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Identifier (hash of `data`).
    pub cid: Cid,
    /// Encoded block bytes.
    pub data: Bytes,
}

/// Result of importing one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Root CID (what Kubo's `ipfs add` prints).
    pub cid: Cid,
    /// File bytes.
    pub size: u64,
    /// Total encoded bytes of the DAG (Kubo's `Size` / link Tsize).
    pub dag_size: u64,
    /// Number of blocks written.
    pub blocks: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    cid: Cid,
    tsize: u64,
    filesize: u64,
}

/// Incremental balanced-DAG builder: feed chunks in order, then [`FileBuilder::finish`].
#[derive(Debug, Default)]
pub struct FileBuilder {
    levels: Vec<Vec<Entry>>,
    size: u64,
    blocks: u64,
}

impl FileBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next chunk (at most [`CHUNK_SIZE`] bytes); `emit` receives every block
    /// that becomes final (the leaf, and any interior node that filled up).
    pub fn push_chunk(
        &mut self,
        chunk: Bytes,
        emit: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<()> {
        let len = chunk.len() as u64;
        let cid = Cid::raw(&chunk);
        self.size += len;
        emit(self.block(cid, chunk))?;
        self.push_entry(
            0,
            Entry {
                cid,
                tsize: len,
                filesize: len,
            },
            emit,
        )
    }

    fn block(&mut self, cid: Cid, data: Bytes) -> Block {
        self.blocks += 1;
        Block { cid, data }
    }

    fn push_entry(
        &mut self,
        level: usize,
        entry: Entry,
        emit: &mut impl FnMut(Block) -> Result<()>,
    ) -> Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::with_capacity(MAX_LINKS));
        }
        self.levels[level].push(entry);
        if self.levels[level].len() == MAX_LINKS {
            let parent = self.fold(level, emit)?;
            self.push_entry(level + 1, parent, emit)?;
        }
        Ok(())
    }

    /// Turns the pending entries of `level` into one parent node.
    fn fold(&mut self, level: usize, emit: &mut impl FnMut(Block) -> Result<()>) -> Result<Entry> {
        let children = std::mem::take(&mut self.levels[level]);
        let node = PbNode {
            links: children
                .iter()
                .map(|c| PbLink {
                    hash: c.cid,
                    name: Some(String::new()),
                    tsize: Some(c.tsize),
                })
                .collect(),
            data: Some(UnixfsData::file(children.iter().map(|c| c.filesize).collect()).encode()),
        };
        let bytes = node.encode();
        let cid = Cid::dag_pb(&bytes);
        let entry = Entry {
            cid,
            tsize: bytes.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            filesize: children.iter().map(|c| c.filesize).sum(),
        };
        self.levels[level] = children;
        self.levels[level].clear();
        let block = self.block(cid, Bytes::from(bytes));
        emit(block)?;
        Ok(entry)
    }

    /// Folds what is left into the root. A file with no chunk at all is one empty raw
    /// block, as Kubo and Helia produce.
    pub fn finish(mut self, emit: &mut impl FnMut(Block) -> Result<()>) -> Result<Imported> {
        if self.blocks == 0 {
            self.push_chunk(Bytes::new(), emit)?;
        }
        let mut level = 0;
        loop {
            let higher_pending = self.levels[level + 1..].iter().any(|l| !l.is_empty());
            let here = self.levels[level].len();
            if here == 1 && !higher_pending {
                let root = self.levels[level][0];
                return Ok(Imported {
                    cid: root.cid,
                    size: self.size,
                    dag_size: root.tsize,
                    blocks: self.blocks,
                });
            }
            if here > 0 {
                let parent = self.fold(level, emit)?;
                if self.levels.len() <= level + 1 {
                    self.levels.push(Vec::new());
                }
                // No eager fold here: the level above is below 1024 or it would have folded.
                self.levels[level + 1].push(parent);
            }
            level += 1;
        }
    }
}

/// Imports everything `reader` yields, handing each block to `sink` as soon as it is final.
pub fn import_reader(
    mut reader: impl Read,
    mut sink: impl FnMut(Block) -> Result<()>,
) -> Result<Imported> {
    let mut builder = FileBuilder::new();
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        builder.push_chunk(Bytes::from(buf), &mut sink)?;
        if filled < CHUNK_SIZE {
            break;
        }
    }
    builder.finish(&mut sink)
}

/// Imports bytes already in memory (specs, small artifacts) and returns the blocks too.
pub fn import_bytes(data: &[u8]) -> Result<(Imported, Vec<Block>)> {
    let mut blocks = Vec::new();
    let imported = import_reader(data, |b| {
        blocks.push(b);
        Ok(())
    })?;
    Ok((imported, blocks))
}

/// Imports an async stream into `store` (blocks written through blocking tasks).
pub async fn import_async(
    mut reader: impl AsyncRead + Unpin,
    store: &Blockstore,
) -> Result<Imported> {
    let mut builder = FileBuilder::new();
    let mut pending = Vec::new();
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < CHUNK_SIZE {
            let n = reader.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        builder.push_chunk(Bytes::from(buf), &mut |b| {
            pending.push(b);
            Ok(())
        })?;
        store.put_many_trusted(std::mem::take(&mut pending)).await?;
        if filled < CHUNK_SIZE {
            break;
        }
    }
    let imported = builder.finish(&mut |b| {
        pending.push(b);
        Ok(())
    })?;
    store.put_many_trusted(pending).await?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_single_block_cids() {
        let (hello, blocks) = import_bytes(b"hello from the probe\n").expect("import");
        assert_eq!(
            hello.cid.to_string(),
            "bafkreig33ifb5qhpnr4liegexo227he6j5ghhrm4sxwap2dqwplq2t66ni"
        );
        assert_eq!((hello.size, hello.blocks, blocks.len()), (21, 1, 1));
        let (empty, blocks) = import_bytes(b"").expect("import");
        assert_eq!(
            empty.cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0].data.is_empty());
    }

    #[test]
    fn tree_shape_is_balanced() {
        // 1025 leaves of one byte each: root -> [node(1024 leaves), node(1 leaf)].
        let mut builder = FileBuilder::new();
        let mut blocks = Vec::new();
        let mut emit = |b: Block| {
            blocks.push(b);
            Ok(())
        };
        for i in 0..1025u32 {
            builder
                .push_chunk(Bytes::from(i.to_le_bytes().to_vec()), &mut emit)
                .expect("push");
        }
        let imported = builder.finish(&mut emit).expect("finish");
        assert_eq!(imported.blocks, 1025 + 3);
        let root = blocks.last().expect("root");
        assert_eq!(root.cid, imported.cid);
        let node = PbNode::decode(&root.data).expect("decode");
        assert_eq!(node.links.len(), 2);
        let fs = UnixfsData::decode(node.data.as_deref().unwrap_or_default()).expect("fs");
        assert_eq!(fs.blocksizes, vec![4096, 4]);
        assert_eq!(fs.filesize, Some(4100));
        let total: u64 = blocks.iter().map(|b| b.data.len() as u64).sum();
        assert_eq!(imported.dag_size, total);
    }
}
