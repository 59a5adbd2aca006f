//! Walking UnixFS DAGs: the depth-first order shared by the exporter, the CAR writer and
//! the CAR completeness check, and the streaming file exporter.
//!
//! Content is untrusted: every walk has a budget of links it may follow (duplicates
//! included), a depth limit and a deadline ([`Limits`]), and sizes that blocks claim are
//! added with checked arithmetic. A block linked many times is fetched and verified once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use khachapuri_types::{Cid, DAG_PB, RAW};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::client::Limits;
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

/// The bounds of one walk, taken from [`Limits`] when it starts.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    max_links: u64,
    max_depth: u32,
    deadline: Instant,
    timeout_ms: u64,
}

impl Bounds {
    fn new(limits: &Limits) -> Self {
        Self {
            max_links: limits.max_walk_blocks,
            max_depth: limits.max_depth,
            deadline: Instant::now() + limits.walk_timeout,
            timeout_ms: u64::try_from(limits.walk_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn check_time(&self) -> Result<()> {
        if Instant::now() >= self.deadline {
            return Err(StoreError::Deadline {
                what: "DAG walk",
                limit_ms: self.timeout_ms,
            });
        }
        Ok(())
    }

    fn check_links(&self, followed: u64) -> Result<()> {
        if followed > self.max_links {
            return Err(StoreError::TooLarge {
                what: "DAG walk (links followed)",
                limit: self.max_links,
            });
        }
        Ok(())
    }

    fn check_depth(&self, depth: u32) -> Result<()> {
        if depth > self.max_depth {
            return Err(StoreError::TooLarge {
                what: "DAG depth",
                limit: u64::from(self.max_depth),
            });
        }
        Ok(())
    }
}

/// Depth-first, pre-order, left-to-right walk that visits each block once (`dups=n`),
/// the order trustless gateways use for `dag-scope=all` CARs. Bounded by [`Limits`]:
/// links followed, depth and a deadline.
#[derive(Debug)]
pub struct DagWalker {
    stack: Vec<(Cid, u32)>,
    seen: HashSet<Cid>,
    depth: u32,
    followed: u64,
    bounds: Bounds,
}

impl DagWalker {
    /// A walk starting at `root`, bounded by the default [`Limits`].
    pub fn new(root: Cid) -> Self {
        Self::with_limits(root, &Limits::default())
    }

    /// A walk starting at `root`, bounded by `limits` (its deadline starts now).
    pub fn with_limits(root: Cid, limits: &Limits) -> Self {
        Self {
            stack: vec![(root, 0)],
            seen: HashSet::new(),
            depth: 0,
            followed: 0,
            bounds: Bounds::new(limits),
        }
    }

    /// The next block to visit, `None` when the DAG is complete, or an error once the
    /// walk's deadline has passed.
    pub fn next_cid(&mut self) -> Result<Option<Cid>> {
        self.bounds.check_time()?;
        while let Some((cid, depth)) = self.stack.pop() {
            if !self.seen.contains(&cid) {
                self.depth = depth;
                return Ok(Some(cid));
            }
        }
        Ok(None)
    }

    /// Whether `cid` was already visited (a duplicate in a `dups=y` CAR).
    pub fn seen(&self, cid: &Cid) -> bool {
        self.seen.contains(cid)
    }

    /// Records the block of the CID last returned by [`DagWalker::next_cid`]; fails when
    /// its links would take the walk past its budget or depth.
    pub fn visit(&mut self, cid: Cid, block: &[u8]) -> Result<()> {
        self.seen.insert(cid);
        let links = links_of(&cid, block)?;
        if links.is_empty() {
            return Ok(());
        }
        let depth = self.depth.saturating_add(1);
        self.bounds.check_depth(depth)?;
        self.followed = self.followed.saturating_add(links.len() as u64);
        self.bounds.check_links(self.followed)?;
        self.stack.extend(
            links
                .into_iter()
                .rev()
                .filter(|l| !self.seen.contains(l))
                .map(|l| (l, depth)),
        );
        Ok(())
    }
}

/// A file node decoded once: the bytes it holds itself, its children with the sizes it
/// claims for them, and its total size.
#[derive(Debug)]
struct FileNode {
    inline: Bytes,
    children: Vec<(Cid, u64)>,
    size: u64,
}

fn decode_file_node(cid: Cid, block: &Bytes) -> Result<FileNode> {
    match cid.codec() {
        RAW => Ok(FileNode {
            inline: block.clone(),
            children: Vec::new(),
            size: block.len() as u64,
        }),
        DAG_PB => {
            let node = PbNode::decode(block).map_err(|e| invalid(&cid, e))?;
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
            let size = fs
                .blocksizes
                .iter()
                .try_fold(inline.len() as u64, |acc, s| acc.checked_add(*s))
                .ok_or_else(|| StoreError::InvalidBlock {
                    cid,
                    reason: "blocksizes overflow".into(),
                })?;
            if fs.filesize.is_some_and(|f| f != size) {
                return Err(StoreError::InvalidBlock {
                    cid,
                    reason: "filesize does not match its parts".into(),
                });
            }
            // A child holding no file bytes adds nothing to the output, so it is not
            // fetched: links to empty children cost a fetch each however small
            // `max_size` is. Fetching (`Store::fetch`) still walks every block once.
            let children = node
                .links
                .iter()
                .zip(fs.blocksizes)
                .filter(|&(_, s)| s > 0)
                .map(|(l, s)| (l.hash, s))
                .collect();
            Ok(FileNode {
                inline,
                children,
                size,
            })
        }
        other => Err(StoreError::Unsupported {
            cid,
            reason: format!("codec 0x{other:x} is not a UnixFS file"),
        }),
    }
}

/// Streams the file named by `root` into `out` with the default [`Limits`]; see
/// [`export_with`].
pub async fn export<S, W>(source: &S, root: Cid, out: &mut W, max_size: u64) -> Result<u64>
where
    S: BlockSource + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    export_with(source, root, out, max_size, &Limits::default()).await
}

/// Streams the file named by `root` into `out`, fetching blocks from `source`; checks
/// every node's sizes, and stops at `max_size` bytes. Returns bytes written.
///
/// A file may link the same block many times (a file of zeros does), so this walk
/// follows duplicates, within `limits`: every block occurrence counts against
/// `max_walk_blocks`, nesting against `max_depth`, all of it against `walk_timeout`.
/// Interior nodes are decoded once and remembered (bounded by the same budget), so a
/// node linked a thousand times is fetched and verified once.
pub async fn export_with<S, W>(
    source: &S,
    root: Cid,
    out: &mut W,
    max_size: u64,
    limits: &Limits,
) -> Result<u64>
where
    S: BlockSource + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let bounds = Bounds::new(limits);
    // (cid, file bytes the parent says it holds, depth)
    let mut stack: Vec<(Cid, Option<u64>, u32)> = vec![(root, None, 0)];
    let mut interior: HashMap<Cid, Arc<FileNode>> = HashMap::new();
    let mut last_leaf: Option<(Cid, Arc<FileNode>)> = None;
    let mut written: u64 = 0;
    let mut visits: u64 = 0;
    while let Some((cid, expected, depth)) = stack.pop() {
        bounds.check_time()?;
        visits += 1;
        bounds.check_links(visits)?;
        bounds.check_depth(depth)?;
        let node = match (interior.get(&cid), &last_leaf) {
            (Some(n), _) => n.clone(),
            (None, Some((c, n))) if *c == cid => n.clone(),
            _ => {
                let block = source.get_block(cid).await?;
                let node = Arc::new(decode_file_node(cid, &block)?);
                if node.children.is_empty() {
                    last_leaf = Some((cid, node.clone()));
                } else if node.inline.is_empty() {
                    interior.insert(cid, node.clone());
                }
                node
            }
        };
        if expected.is_some_and(|e| e != node.size) {
            return Err(StoreError::InvalidBlock {
                cid,
                reason: format!("holds {} bytes, parent says {expected:?}", node.size),
            });
        }
        let too_large = || StoreError::TooLarge {
            what: "file",
            limit: max_size,
        };
        if expected.is_none() && node.size > max_size {
            return Err(too_large());
        }
        written = written
            .checked_add(node.inline.len() as u64)
            .filter(|w| *w <= max_size)
            .ok_or_else(too_large)?;
        out.write_all(&node.inline).await?;
        let child_depth = depth.saturating_add(1);
        stack.extend(
            node.children
                .iter()
                .rev()
                .map(|(c, s)| (*c, Some(*s), child_depth)),
        );
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
