//! Trustless gateway client: fetches blocks or whole DAGs by CID from a list of gateways,
//! verifying every block against its CID, rejecting incomplete or out-of-order CARs,
//! enforcing size caps and timeouts, and falling back to the next gateway on any failure.

use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use khachapuri_types::Cid;
use tokio_util::io::StreamReader;

use crate::blockstore::{Blockstore, MAX_BLOCK_SIZE};
use crate::car::CarReader;
use crate::error::{Result, StoreError};
use crate::exporter::{BlockSource, DagWalker};

/// Caps and timeouts for everything fetched from the network.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single block accepted.
    pub max_block: usize,
    /// Largest DAG (sum of block bytes) one fetch may bring in.
    pub max_dag_bytes: u64,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response.
    pub read_timeout: Duration,
    /// Whole-request deadline for a single block.
    pub block_timeout: Duration,
    /// Links one walk of a DAG may follow, duplicates included: a DAG of a few small
    /// blocks that link each other a thousand times over must not keep a core busy.
    pub max_walk_blocks: u64,
    /// Deepest nesting a walk accepts (balanced 1024-ary DAGs of huge files stay < 6).
    pub max_depth: u32,
    /// Deadline of one whole walk or DAG fetch.
    pub walk_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block: MAX_BLOCK_SIZE,
            max_dag_bytes: 1 << 30,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            block_timeout: Duration::from_secs(30),
            max_walk_blocks: 100_000,
            max_depth: 32,
            walk_timeout: Duration::from_secs(120),
        }
    }
}

/// A client for a list of trustless gateways, tried in order.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    http: reqwest::Client,
    gateways: Vec<String>,
    limits: Limits,
}

pub(crate) fn http_client(limits: &Limits) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .read_timeout(limits.read_timeout)
        .user_agent(concat!("khachapuri/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StoreError::Remote {
            url: "(client)".into(),
            reason: e.to_string(),
        })
}

/// Reads one block from a response body, at most `max_block` bytes, and checks it hashes
/// to `cid`: what every remote source (gateway or Kubo) must pass before a block is used.
pub(crate) async fn read_verified_block(
    mut resp: reqwest::Response,
    url: &str,
    cid: Cid,
    max_block: usize,
    source_name: &str,
) -> Result<Bytes> {
    let mut data = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| remote(url, e))? {
        if data.len() + chunk.len() > max_block {
            return Err(StoreError::TooLarge {
                what: "block",
                limit: max_block as u64,
            });
        }
        data.extend_from_slice(&chunk);
    }
    if !cid.verify(&data) {
        return Err(StoreError::HashMismatch {
            cid,
            source_name: source_name.to_string(),
        });
    }
    Ok(Bytes::from(data))
}

pub(crate) fn remote(url: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Remote {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

impl GatewayClient {
    /// A client over `gateways` (base URLs such as `https://ipfs.io` or
    /// `http://127.0.0.1:5001`).
    pub fn new(gateways: Vec<String>, limits: Limits) -> Result<Self> {
        let gateways = gateways
            .into_iter()
            .map(|g| g.trim_end_matches('/').to_string())
            .collect();
        Ok(Self {
            http: http_client(&limits)?,
            gateways,
            limits,
        })
    }

    /// The configured gateways.
    pub fn gateways(&self) -> &[String] {
        &self.gateways
    }

    /// One block, from the first gateway that serves bytes matching `cid`.
    pub async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        let mut attempts = Vec::new();
        for gw in &self.gateways {
            match self.block_from(gw, cid).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::debug!(gateway = %gw, %cid, error = %e, "block fetch failed");
                    attempts.push(e.to_string());
                }
            }
        }
        Err(StoreError::AllSourcesFailed { cid, attempts })
    }

    async fn block_from(&self, gw: &str, cid: Cid) -> Result<Bytes> {
        let url = format!("{gw}/ipfs/{cid}?format=raw");
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/vnd.ipld.raw")
            .timeout(self.limits.block_timeout)
            .send()
            .await
            .map_err(|e| remote(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(StoreError::NotFound(cid));
        }
        if !resp.status().is_success() {
            return Err(remote(&url, resp.status()));
        }
        read_verified_block(resp, &url, cid, self.limits.max_block, gw).await
    }

    /// Fetches the whole DAG under `root` as a CAR into `store`, trying each gateway until
    /// one delivers a complete, verified DAG. Blocks verified before a failure are kept
    /// (they are correct), bad ones never are.
    pub async fn fetch_dag(&self, root: Cid, store: &Blockstore) -> Result<()> {
        self.fetch_dag_capped(root, store, self.limits.max_dag_bytes)
            .await
    }

    /// [`GatewayClient::fetch_dag`] with a tighter byte cap (a spec is much smaller than
    /// an artifact); each gateway gets at most `walk_timeout` for the whole CAR.
    pub async fn fetch_dag_capped(
        &self,
        root: Cid,
        store: &Blockstore,
        max_bytes: u64,
    ) -> Result<()> {
        let limits = Limits {
            max_dag_bytes: max_bytes.min(self.limits.max_dag_bytes),
            ..self.limits
        };
        let mut attempts = Vec::new();
        for gw in &self.gateways {
            let fetch = self.car_from(gw, root, store, &limits);
            let result = match tokio::time::timeout(limits.walk_timeout, fetch).await {
                Ok(r) => r,
                Err(_) => Err(StoreError::Deadline {
                    what: "CAR fetch",
                    limit_ms: u64::try_from(limits.walk_timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(gateway = %gw, %root, error = %e, "CAR fetch failed");
                    attempts.push(format!("{gw}: {e}"));
                }
            }
        }
        Err(StoreError::AllSourcesFailed {
            cid: root,
            attempts,
        })
    }

    async fn car_from(
        &self,
        gw: &str,
        root: Cid,
        store: &Blockstore,
        limits: &Limits,
    ) -> Result<()> {
        let url = format!("{gw}/ipfs/{root}?format=car&dag-scope=all");
        let resp = self
            .http
            .get(&url)
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.ipld.car; version=1; order=dfs; dups=n",
            )
            .send()
            .await
            .map_err(|e| remote(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(StoreError::NotFound(root));
        }
        if !resp.status().is_success() {
            return Err(remote(&url, resp.status()));
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        verify_car_into(StreamReader::new(stream), root, store, gw, limits).await
    }
}

/// Reads a CAR for `root`, checking each block's hash and that blocks arrive in the
/// depth-first order of the DAG, and stores them. Fails if the CAR ends before the DAG
/// is complete, carries blocks not in the DAG, or exceeds the limits.
pub async fn verify_car_into(
    reader: impl tokio::io::AsyncRead + Unpin,
    root: Cid,
    store: &Blockstore,
    source_name: &str,
    limits: &Limits,
) -> Result<()> {
    let mut car = CarReader::new(reader).await?;
    if car.roots().first() != Some(&root) {
        return Err(StoreError::Malformed {
            what: "CAR",
            reason: format!("root is not {root}"),
        });
    }
    let mut walker = DagWalker::with_limits(root, limits);
    let mut total: u64 = 0;
    loop {
        let next = car
            .next_block(limits.max_block)
            .await
            .map_err(|e| match e {
                StoreError::Malformed { reason, .. } => StoreError::IncompleteCar { root, reason },
                other => other,
            })?;
        let Some((cid, block)) = next else { break };
        if !cid.verify(&block) {
            return Err(StoreError::HashMismatch {
                cid,
                source_name: source_name.to_string(),
            });
        }
        // Duplicates count against the byte cap too: a CAR repeating one block forever
        // is as costly to read as one that never repeats.
        total = total.saturating_add(block.len() as u64);
        if total > limits.max_dag_bytes {
            return Err(StoreError::TooLarge {
                what: "DAG",
                limit: limits.max_dag_bytes,
            });
        }
        if walker.seen(&cid) {
            continue;
        }
        match walker.next_cid()? {
            Some(expected) if expected == cid => {}
            Some(expected) => {
                return Err(StoreError::Malformed {
                    what: "CAR",
                    reason: format!("expected block {expected}, got {cid}"),
                })
            }
            None => {
                return Err(StoreError::Malformed {
                    what: "CAR",
                    reason: format!("extra block {cid} after the DAG"),
                })
            }
        }
        walker.visit(cid, &block)?;
        store.put_cached_async(cid, block).await?;
    }
    match walker.next_cid()? {
        None => Ok(()),
        Some(missing) => Err(StoreError::IncompleteCar {
            root,
            reason: format!("block {missing} missing"),
        }),
    }
}

impl BlockSource for GatewayClient {
    async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        GatewayClient::get_block(self, cid).await
    }
}
