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
                if !node.links.is_empty() && fs.blocksizes.len() != node.links.len() {
                    return Err(StoreError::InvalidBlock {
                        cid,
                        reason: "blocksizes do not match links".into(),
                    });
                }
                let inline = Bytes::from(fs.data.unwrap_or_default());
                let size = inline.len() as u64 + fs.blocksizes.iter().sum::<u64>();
                if fs.filesize.is_some_and(|f| f != size) {
                    return Err(StoreError::InvalidBlock {
                        cid,
                        reason: "filesize does not match its parts".into(),
                    });
                }
                let children: Vec<_> = node
                    .links
                    .iter()
                    .zip(fs.blocksizes)
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
