//! Kubo RPC client for publishing: `add` with the `unixfs-v1-2025` flags, `block/get`,
//! `block/put` and `pin/add`. The embedded store server answers the same calls, so one
//! client publishes to either.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use khachapuri_types::Cid;
use serde::Deserialize;

use crate::client::{http_client, read_verified_block, remote, Limits};
use crate::error::Result;
use crate::exporter::BlockSource;

/// Query flags that make Kubo compute the same CIDs as [`crate::import_reader`].
pub const ADD_PROFILE_FLAGS: &[(&str, &str)] = &[
    ("cid-version", "1"),
    ("raw-leaves", "true"),
    ("chunker", "size-1048576"),
    ("hash", "sha2-256"),
    ("trickle", "false"),
    ("pin", "true"),
    ("progress", "false"),
];

/// A Kubo RPC endpoint (`http://127.0.0.1:5001`).
#[derive(Debug, Clone)]
pub struct KuboClient {
    http: reqwest::Client,
    base: String,
    limits: Limits,
    /// Deadline of a whole `add` (uploads can be large).
    add_timeout: Duration,
    /// Bearer token sent with every request (a store serving off loopback asks for one).
    token: Option<Redacted>,
}

/// A token that `Debug` never prints.
#[derive(Clone)]
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What `add` reports for the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// Root CID.
    pub cid: Cid,
    /// Kubo's `Size` (encoded DAG bytes).
    pub dag_size: u64,
}

#[derive(Debug, Deserialize)]
struct AddLine {
    #[serde(rename = "Hash")]
    hash: Option<String>,
    #[serde(rename = "Size")]
    size: Option<String>,
}

impl KuboClient {
    /// A client for the RPC API at `base`.
    pub fn new(base: impl Into<String>, limits: Limits) -> Result<Self> {
        Ok(Self {
            http: http_client(&limits)?,
            base: base.into().trim_end_matches('/').to_string(),
            limits,
            add_timeout: Duration::from_secs(600),
            token: None,
        })
    }

    /// The same client sending `Authorization: Bearer <token>` (empty tokens are ignored):
    /// what a store or Kubo node behind a token asks of publishers.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty()).map(Redacted);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v0/{path}", self.base)
    }

    async fn post(&self, url: &str, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(&t.0),
            None => req,
        };
        let resp = req.send().await.map_err(|e| remote(url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("Message").and_then(|m| m.as_str()).map(String::from))
            .unwrap_or(text);
        Err(remote(url, format!("{status}: {message}")))
    }

    /// Uploads a file (streamed from disk) with the profile's flags; returns its root.
    pub async fn add_file(&self, path: &Path) -> Result<Added> {
        let file = tokio::fs::File::open(path).await?;
        let len = file.metadata().await?.len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let stream = tokio_util::io::ReaderStream::new(file);
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
                .file_name(name);
        self.add_part(part).await
    }

    /// Uploads bytes held in memory with the profile's flags.
    pub async fn add_bytes(&self, name: &str, data: Bytes) -> Result<Added> {
        let part = reqwest::multipart::Part::stream(data).file_name(name.to_string());
        self.add_part(part).await
    }

    async fn add_part(&self, part: reqwest::multipart::Part) -> Result<Added> {
        let url = self.url("add");
        let form = reqwest::multipart::Form::new().part("file", part);
        let req = self
            .http
            .post(&url)
            .query(ADD_PROFILE_FLAGS)
            .multipart(form)
            .timeout(self.add_timeout);
        let text = self
            .post(&url, req)
            .await?
            .text()
            .await
            .map_err(|e| remote(&url, e))?;
        // One JSON line per added entry; the file is the last one with a hash.
        let last = text
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<AddLine>(l).ok())
            .find(|l| l.hash.is_some())
            .ok_or_else(|| remote(&url, "no Hash in the add response"))?;
        let cid = last.hash.unwrap_or_default().parse()?;
        let dag_size = last.size.and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(Added { cid, dag_size })
    }

    /// Fetches and verifies one block.
    pub async fn block_get(&self, cid: Cid) -> Result<Bytes> {
        let url = self.url("block/get");
        let req = self
            .http
            .post(&url)
            .query(&[("arg", cid.to_string())])
            .timeout(self.limits.block_timeout);
        let resp = self.post(&url, req).await?;
        read_verified_block(resp, &url, cid, self.limits.max_block, &self.base).await
    }

    /// Stores one block (`codec` is `raw` or `dag-pb`); returns the CID Kubo reports,
    /// checked against the one computed locally.
    pub async fn block_put(&self, codec: u64, data: Bytes) -> Result<Cid> {
        let url = self.url("block/put");
        let codec_name = if codec == khachapuri_types::DAG_PB {
            "dag-pb"
        } else {
            "raw"
        };
        let expected = Cid::of(codec, &data);
        let form =
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::stream(data));
        let req = self
            .http
            .post(&url)
            .query(&[("cid-codec", codec_name), ("mhtype", "sha2-256")])
            .multipart(form)
            .timeout(self.limits.block_timeout);
        let value: serde_json::Value = self
            .post(&url, req)
            .await?
            .json()
            .await
            .map_err(|e| remote(&url, e))?;
        let key: Cid = value
            .get("Key")
            .and_then(|k| k.as_str())
            .ok_or_else(|| remote(&url, "no Key in the response"))?
            .parse()?;
        if key != expected {
            return Err(remote(
                &url,
                format!("stored as {key}, expected {expected}"),
            ));
        }
        Ok(key)
    }

    /// Pins the DAG under `cid` (recursively).
    pub async fn pin_add(&self, cid: Cid) -> Result<()> {
        let url = self.url("pin/add");
        let req = self
            .http
            .post(&url)
            .query(&[("arg", cid.to_string())])
            .timeout(self.add_timeout);
        self.post(&url, req).await?;
        Ok(())
    }
}

impl BlockSource for KuboClient {
    async fn get_block(&self, cid: Cid) -> Result<Bytes> {
        self.block_get(cid).await
    }
}
