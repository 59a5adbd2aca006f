//! Walking UnixFS DAGs: the depth-first order shared by the exporter, the CAR writer and
//! the CAR completeness check, and the streaming file exporter.

use std::collections::HashSet;
use std::future::Future;

use bytes::Bytes;
use khachapuri_types::{Cid, DAG_PB, RAW};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::dagpb::{PbNode, UnixfsData, UNIXFS_FILE, UNIXFS_RAW};
use crate::error::{Result, StoreError};

/// Anything that hands out verified blocks by CID: the local store, a gateway client,
/// or [`crate::Store`] which tries them in order.
pub trait BlockSource: Send + Sync {
    /// The block's bytes, already checked against `cid`.
    fn get_block(&self, cid: Cid) -> impl Future<Output = Result<Bytes>> + Send;
}

/// Children of a block in link order (raw blocks have none).
pub fn links_of(cid: &Cid, block: &[u8]) -> Result<Vec<Cid>> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => Ok(PbNode::decode(block)
            .map_err(|e| invalid(cid, e))?
            .links
            .into_iter()
            .map(|l| l.hash)
            .collect()),
        other => Err(StoreError::Unsupported {
            cid: *cid,
            reason: format!("codec 0x{other:x}"),
        }),
    }
}

fn invalid(cid: &Cid, e: StoreError) -> StoreError {
    StoreError::InvalidBlock {
        cid: *cid,
        reason: e.to_string(),
    }
}

/// Depth-first, pre-order, left-to-right walk that visits each block once (`dups=n`),
/// the order trustless gateways use for `dag-scope=all` CARs.
#[derive(Debug)]
pub struct DagWalker {
    stack: Vec<Cid>,
    seen: HashSet<Cid>,
}

impl DagWalker {
    /// A walk starting at `root`.
    pub fn new(root: Cid) -> Self {
        Self {
            stack: vec![root],
            seen: HashSet::new(),
        }
    }

    /// The next block to visit, or `None` when the DAG is complete.
    pub fn next_cid(&mut self) -> Option<Cid> {
        while let Some(cid) = self.stack.pop() {
            if !self.seen.contains(&cid) {
                return Some(cid);
            }
        }
        None
    }

    /// Whether `cid` was already visited (a duplicate in a `dups=y` CAR).
    pub fn seen(&self, cid: &Cid) -> bool {
        self.seen.contains(cid)
    }

    /// Records the block of the CID last returned by [`DagWalker::next_cid`].
    pub fn visit(&mut self, cid: Cid, block: &[u8]) -> Result<()> {
        self.seen.insert(cid);
        let mut links = links_of(&cid, block)?;
        links.reverse();
        self.stack.extend(links);
        Ok(())
    }
}

/// Streams the file named by `root` into `out`, fetching blocks from `source` one at a
/// time; checks every node's sizes, and stops at `max_size` bytes. Returns bytes written.
pub async fn export<S, W>(source: &S, root: Cid, out: &mut W, max_size: u64) -> Result<u64>
where
    S: BlockSource + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    // (cid, file bytes the parent says it holds)
    let mut stack: Vec<(Cid, Option<u64>)> = vec![(root, None)];
    let mut written: u64 = 0;
    while let Some((cid, expected)) = stack.pop() {
        let block = source.get_block(cid).await?;
        let (inline, children, size) = match cid.codec() {
            RAW => (block.clone(), Vec::new(), block.len() as u64),
            DAG_PB => {
                let node = PbNode::decode(&block).map_err(|e| invalid(&cid, e))?;
                let fs = UnixfsData::decode(node.data.as_deref().unwrap_or_default())
                    .map_err(|e| invalid(&cid, e))?;
                if fs.kind != UNIXFS_FILE && fs.kind != UNIXFS_RAW {
                    return Err(StoreError::Unsupported {
                        cid,
                        reason: format!("UnixFS type {} is not a file", fs.kind),
                    });
                }
                // Sizes without links would make the node claim bytes it does not hold.
                if fs.blocksizes.len() != node.links.len() {
                    return Err(StoreError::InvalidBlock {
                        cid,
                        reason: "blocksizes do not match links".into(),
                    });
                }
                let inline = Bytes::from(fs.data.unwrap_or_default());
                // The sizes are the publisher's: they may add up past u64.
                let size = fs
                    .blocksizes
                    .iter()
                    .try_fold(inline.len() as u64, |acc, &s| acc.checked_add(s))
                    .ok_or_else(|| StoreError::InvalidBlock {
                        cid,
                        reason: "blocksizes add up past 2^64".into(),
                    })?;
                if fs.filesize.is_some_and(|f| f != size) {
                    return Err(StoreError::InvalidBlock {
                        cid,
                        reason: "filesize does not match its parts".into(),
                    });
                }
                // A child that holds no file bytes adds nothing to the output, so it is not
                // fetched: links to empty children, repeated, would otherwise cost one
                // fetch each however small `max_size` is (a few blocks of 50k links to one
                // empty leaf make billions of fetches). Fetching (`Store::fetch`) still
                // walks every block once.
                let children: Vec<_> = node
                    .links
                    .iter()
                    .zip(fs.blocksizes)
                    .filter(|&(_, s)| s > 0)
                    .map(|(l, s)| (l.hash, Some(s)))
                    .collect();
                (inline, children, size)
            }
            other => {
                return Err(StoreError::Unsupported {
                    cid,
                    reason: format!("codec 0x{other:x} is not a UnixFS file"),
                })
            }
        };
        if expected.is_some_and(|e| e != size) {
            return Err(StoreError::InvalidBlock {
                cid,
                reason: format!("holds {size} bytes, parent says {expected:?}"),
            });
        }
        if stack.is_empty() && written == 0 && size > max_size {
            return Err(StoreError::TooLarge {
                what: "file",
                limit: max_size,
            });
        }
        written += inline.len() as u64;
        if written > max_size {
            return Err(StoreError::TooLarge {
                what: "file",
                limit: max_size,
            });
        }
        out.write_all(&inline).await?;
        stack.extend(children.into_iter().rev());
    }
    out.flush().await?;
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Regression tests for DAGs a hostile publisher can build (found by `fuzz/` and
    //! by reading `export`); each must fail cleanly or finish fast, never panic.
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::dagpb::PbLink;

    #[derive(Default)]
    struct Blocks {
        map: HashMap<Cid, Bytes>,
        fetches: AtomicUsize,
    }

    impl Blocks {
        fn put(&mut self, codec: u64, block: Vec<u8>) -> Cid {
            let cid = Cid::of(codec, &block);
            self.map.insert(cid, block.into());
            cid
        }
    }

    impl BlockSource for Blocks {
        async fn get_block(&self, cid: Cid) -> Result<Bytes> {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            self.map.get(&cid).cloned().ok_or(StoreError::NotFound(cid))
        }
    }

    fn file_node(links: &[Cid], blocksizes: Vec<u64>) -> Vec<u8> {
        PbNode {
            links: links
                .iter()
                .map(|&hash| PbLink {
                    hash,
                    name: Some(String::new()),
                    tsize: None,
                })
                .collect(),
            data: Some(
                UnixfsData {
                    kind: UNIXFS_FILE,
                    data: None,
                    filesize: None,
                    blocksizes,
                }
                .encode(),
            ),
        }
        .encode()
    }

    fn run(source: &Blocks, root: Cid) -> Result<Vec<u8>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        rt.block_on(export(source, root, &mut out, 1 << 20))?;
        Ok(out)
    }

    #[test]
    fn blocksizes_adding_up_past_u64_are_invalid_not_a_panic() {
        let mut s = Blocks::default();
        let a = s.put(RAW, b"a".to_vec());
        let root = s.put(DAG_PB, file_node(&[a, a], vec![u64::MAX, 2]));
        assert!(matches!(
            run(&s, root),
            Err(StoreError::InvalidBlock { .. })
        ));
    }

    #[test]
    fn blocksizes_without_links_are_invalid() {
        // It claimed 5 bytes and held none: the file came out silently short.
        let mut s = Blocks::default();
        let root = s.put(DAG_PB, file_node(&[], vec![5]));
        assert!(matches!(
            run(&s, root),
            Err(StoreError::InvalidBlock { .. })
        ));
    }

    #[test]
    fn repeated_links_to_empty_children_are_not_fetched() {
        // 1000 x 1000 links to one empty leaf: a million fetches for a 1-byte file.
        let mut s = Blocks::default();
        let empty = s.put(RAW, Vec::new());
        let one = s.put(RAW, b"x".to_vec());
        let wide = s.put(DAG_PB, file_node(&vec![empty; 1000], vec![0; 1000]));
        let mut links = vec![wide; 1000];
        links.push(one);
        let mut sizes = vec![0; 1000];
        sizes.push(1);
        let root = s.put(DAG_PB, file_node(&links, sizes));
        assert_eq!(run(&s, root).unwrap(), b"x");
        assert_eq!(s.fetches.load(Ordering::Relaxed), 2);
    }
}
