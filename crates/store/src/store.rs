//! The content API the provider node and the CLI use: local blockstore first, then the
//! configured trustless gateways, then a Kubo RPC node; every block verified, verified
//! blocks cached locally.

use std::path::Path;

use bytes::Bytes;
use khachapuri_types::Cid;

use crate::blockstore::{blocking, Blockstore};
use crate::client::{GatewayClient, Limits};
use crate::error::{Result, StoreError};
use crate::exporter::{export_with, BlockSource, DagWalker};
use crate::importer::{import_reader, Imported};
use crate::kubo::KuboClient;

/// Where content may come from besides the local store.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Trustless gateways, tried in order.
    pub gateways: Vec<String>,
    /// A Kubo RPC endpoint (`/api/v0/block/get`), tried after the gateways.
    pub kubo_rpc: Option<String>,
    /// Caps and timeouts for remote fetches.
    pub limits: Limits,
}

/// Local blockstore plus remote sources.
#[derive(Debug, Clone)]
pub struct Store {
    local: Blockstore,
    gateways: Option<GatewayClient>,
    kubo: Option<KuboClient>,
    limits: Limits,
}

impl Store {
    /// A store over the blockstore in `dir` and the remote sources of `config`.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        Self::new(Blockstore::open(dir)?, config)
    }

    /// A store over an already opened blockstore.
    pub fn new(local: Blockstore, config: StoreConfig) -> Result<Self> {
        let gateways = if config.gateways.is_empty() {
            None
        } else {
            Some(GatewayClient::new(config.gateways, config.limits)?)
        };
        let kubo = config
            .kubo_rpc
            .map(|url| KuboClient::new(url, config.limits))
            .transpose()?;
        Ok(Self {
            local,
            gateways,
            kubo,
            limits: config.limits,
        })
    }

    /// The local blockstore (for mounting [`crate::router`]).
    pub fn local(&self) -> &Blockstore {
        &self.local
    }

    /// Imports a file from disk into the local store and pins it (blocking work off the
    /// runtime).
    pub async fn add_file(&self, path: &Path) -> Result<Imported> {
        self.add_file_with_progress(path, |_| {}).await
    }

    /// [`Store::add_file`], calling `progress` with the file bytes of each chunk stored
    /// (for progress bars).
    pub async fn add_file_with_progress(
        &self,
        path: &Path,
        mut progress: impl FnMut(u64) + Send + 'static,
    ) -> Result<Imported> {
        let file = std::fs::File::open(path)?;
        let local = self.local.clone();
        blocking(move || {
            let imported = import_reader(file, |b| {
                local.put_trusted(&b.cid, &b.data)?;
                if b.cid.codec() == khachapuri_types::RAW {
                    progress(b.data.len() as u64);
                }
                Ok(())
            })?;
            // Published here: kept whatever the block cache's cap.
            local.pin(&imported.cid)?;
            Ok(imported)
        })
        .await
    }

    /// Imports bytes into the local store, pinned like [`Store::add_file`].
    pub async fn add_bytes(&self, data: Bytes) -> Result<Imported> {
        let local = self.local.clone();
        blocking(move || {
            let imported = import_reader(&data[..], |b| local.put_trusted(&b.cid, &b.data))?;
            local.pin(&imported.cid)?;
            Ok(imported)
        })
        .await
    }

    /// The caps and timeouts this store applies to remote content and walks.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether every block of the DAG under `root` is stored locally.
    pub async fn is_complete(&self, root: Cid) -> Result<bool> {
        let mut walker = DagWalker::with_limits(root, &self.limits);
        while let Some(cid) = walker.next_cid()? {
            match self.local.get_async(cid).await? {
                Some(block) => walker.visit(cid, &block)?,
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Makes the whole DAG under `root` local: a CAR from the gateways (one request per
    /// gateway), and if that fails, block by block from every source.
    pub async fn fetch(&self, root: Cid) -> Result<()> {
        self.fetch_capped(root, self.limits.max_dag_bytes).await
    }

    /// [`Store::fetch`] bringing in at most `max_bytes` of blocks (duplicates included),
    /// within the walk bounds of [`Limits`].
    pub async fn fetch_capped(&self, root: Cid, max_bytes: u64) -> Result<()> {
        let max_bytes = max_bytes.min(self.limits.max_dag_bytes);
        if self.is_complete(root).await? {
            return Ok(());
        }
        if let Some(gw) = &self.gateways {
            match gw.fetch_dag_capped(root, &self.local, max_bytes).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(%root, error = %e, "CAR fetch failed; trying block by block")
                }
            }
        }
        // The walker checks its deadline between blocks; this bounds a slow block too.
        let timeout = self.limits.walk_timeout;
        match tokio::time::timeout(timeout, self.fetch_blocks(root, max_bytes)).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Deadline {
                what: "DAG fetch",
                limit_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Block-by-block fetch of the DAG under `root`, each block from every source.
    async fn fetch_blocks(&self, root: Cid, max_bytes: u64) -> Result<()> {
        let mut walker = DagWalker::with_limits(root, &self.limits);
        let mut total = 0u64;
        while let Some(cid) = walker.next_cid()? {
            let block = self.get_block(cid).await?;
            total = total.saturating_add(block.len() as u64);
            if total > max_bytes {
                return Err(StoreError::TooLarge {
                    what: "DAG",
                    limit: max_bytes,
                });
            }
            walker.visit(cid, &block)?;
        }
        Ok(())
    }

    /// The whole file under `root` in memory (specs, artifacts), at most `max_size` bytes;
    /// the blocks fetched for it are capped near `max_size` too, not at the store's DAG cap.
    pub async fn read_file(&self, root: Cid, max_size: u64) -> Result<Bytes> {
        self.fetch_capped(root, dag_cap(max_size)).await?;
        let mut out = Vec::new();
        export_with(self, root, &mut out, max_size, &self.limits).await?;
        Ok(Bytes::from(out))
    }

    /// Streams the file under `root` into `out`; returns the bytes written.
    pub async fn export_to<W>(&self, root: Cid, out: &mut W, max_size: u64) -> Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        self.fetch_capped(root, dag_cap(max_size)).await?;
        export_with(self, root, out, max_size, &self.limits).await
    }

    /// One verified block: local, then gateways, then Kubo; remote blocks are cached.
    pub async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        if let Some(block) = self.local.get_async(cid).await? {
            return Ok(block);
        }
        let mut attempts = Vec::new();
        if let Some(gw) = &self.gateways {
            match gw.get_block(cid).await {
                Ok(block) => return self.cache(cid, block).await,
                Err(e) => attempts.push(e.to_string()),
            }
        }
        if let Some(kubo) = &self.kubo {
            match kubo.block_get(cid).await {
                Ok(block) => return self.cache(cid, block).await,
                Err(e) => attempts.push(e.to_string()),
            }
        }
        if attempts.is_empty() {
            Err(StoreError::NotFound(cid))
        } else {
            Err(StoreError::AllSourcesFailed { cid, attempts })
        }
    }

    async fn cache(&self, cid: Cid, block: Bytes) -> Result<Bytes> {
        self.local.put_cached_async(cid, block.clone()).await?;
        Ok(block)
    }
}

/// Block bytes a file of `max_size` bytes may take: its data plus dag-pb overhead
/// (links, sizes) of well under one eighth, and room for a small file's root node.
fn dag_cap(max_size: u64) -> u64 {
    max_size
        .saturating_add(max_size / 8)
        .saturating_add(64 * 1024)
}

impl BlockSource for Store {
    async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        Store::get_block(self, cid).await
    }
}

impl BlockSource for Blockstore {
    async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        self.get_async(cid).await?.ok_or(StoreError::NotFound(cid))
    }
}
