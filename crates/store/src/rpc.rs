//! The Kubo RPC subset publishing needs (`add`, `block/put`, `block/get`, `pin/add`), so
//! the CLI publishes the same way to the embedded store and to a real Kubo node. It
//! writes to disk, so it is never mounted on the provider's public port; here it asks for
//! a bearer token whenever one is configured (always, off loopback) and caps upload bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use khachapuri_types::Cid;
use serde::Deserialize;

use crate::blockstore::Blockstore;
use crate::client::Limits;
use crate::error::StoreError;
use crate::importer::{FileBuilder, CHUNK_SIZE};
use crate::server::{ensure_complete, ApiError, ApiResult};

/// Environment variable the CLI reads the publishing token from (never from argv).
pub const TOKEN_ENV: &str = "KHACHAPURI_STORE_TOKEN";

/// How the publishing API is guarded.
#[derive(Clone, Default)]
pub struct PublishConfig {
    /// Bearer token every `/api/v0` request must carry when set; required to listen on
    /// a non-loopback address.
    pub token: Option<String>,
    /// Largest request body of an upload (`add`, `block/put`), in bytes; `None` means
    /// [`DEFAULT_MAX_UPLOAD_BYTES`].
    pub max_upload_bytes: Option<u64>,
}

/// Default cap on an upload body: large artifacts fit, a runaway client does not fill
/// the disk in one request.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1 << 30;

impl std::fmt::Debug for PublishConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("max_upload_bytes", &self.max_upload_bytes)
            .finish()
    }
}

impl PublishConfig {
    /// The upload cap in effect.
    pub fn upload_limit(&self) -> u64 {
        self.max_upload_bytes.unwrap_or(DEFAULT_MAX_UPLOAD_BYTES)
    }

    /// Refuses to expose the API on a non-loopback address without a token.
    pub fn check_exposure(&self, addr: SocketAddr) -> std::io::Result<()> {
        if addr.ip().is_loopback() || self.token.as_deref().is_some_and(|t| !t.is_empty()) {
            return Ok(());
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "refusing to serve the publishing API on {addr} without a token: set {TOKEN_ENV} (or a token file) so only holders can upload, or listen on 127.0.0.1"
            ),
        ))
    }
}

struct RpcState {
    store: Blockstore,
    limits: Limits,
    config: PublishConfig,
}

type Shared = State<Arc<RpcState>>;

/// The `/api/v0` routes over `store`, behind the token check and the upload cap.
pub(crate) fn router(store: Blockstore, limits: Limits, config: PublishConfig) -> Router {
    let limit = usize::try_from(config.upload_limit()).unwrap_or(usize::MAX);
    let state = Arc::new(RpcState {
        store,
        limits,
        config,
    });
    Router::new()
        .route("/api/v0/add", post(rpc_add))
        .route("/api/v0/block/put", post(rpc_block_put))
        .route("/api/v0/block/get", post(rpc_block_get))
        .route("/api/v0/pin/add", post(rpc_pin_add))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Lets a request through only with `Authorization: Bearer <token>` when a token is set.
async fn require_token(State(st): Shared, req: Request, next: Next) -> Response {
    let Some(token) = st.config.token.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError(StoreError::Unauthorized("wrong bearer token".into())).into_response(),
        None => ApiError(StoreError::Unauthorized(format!(
            "this store asks for `Authorization: Bearer <token>` (the CLI sends {TOKEN_ENV})"
        )))
        .into_response(),
    }
}

/// Compares without an early exit, so response timing does not reveal a token prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct AddQuery {
    #[serde(rename = "cid-version")]
    cid_version: Option<String>,
    #[serde(rename = "raw-leaves")]
    raw_leaves: Option<String>,
    chunker: Option<String>,
    hash: Option<String>,
    trickle: Option<String>,
    pin: Option<String>,
}

/// Rejects Kubo flags that would give other CIDs than this store computes.
fn check_add_flags(q: &AddQuery) -> Result<(), StoreError> {
    let ok =
        |v: &Option<String>, allowed: &[&str]| v.as_deref().is_none_or(|v| allowed.contains(&v));
    if ok(&q.cid_version, &["1"])
        && ok(&q.raw_leaves, &["true", "1"])
        && ok(&q.chunker, &["size-1048576"])
        && ok(&q.hash, &["sha2-256"])
        && ok(&q.trickle, &["false", "0"])
    {
        Ok(())
    } else {
        Err(StoreError::BadRequest(
            "this store only imports with the unixfs-v1-2025 profile (cid-version=1, raw-leaves=true, chunker=size-1048576, hash=sha2-256, no trickle)".into(),
        ))
    }
}

async fn rpc_add(
    State(st): Shared,
    Query(query): Query<AddQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    let store = &st.store;
    check_add_flags(&query)?;
    let mut lines = String::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_multipart(&st, e))?
    {
        if field.content_type() == Some("application/x-directory") {
            return Err(StoreError::BadRequest("directories are not supported".into()).into());
        }
        let name = field.file_name().or(field.name()).unwrap_or("").to_string();
        let mut builder = FileBuilder::new();
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE);
        let mut blocks = Vec::new();
        while let Some(data) = field.chunk().await.map_err(|e| bad_multipart(&st, e))? {
            let mut data = &data[..];
            while !data.is_empty() {
                let take = (CHUNK_SIZE - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if buf.len() == CHUNK_SIZE {
                    let chunk = std::mem::replace(&mut buf, Vec::with_capacity(CHUNK_SIZE));
                    builder.push_chunk(Bytes::from(chunk), &mut |b| {
                        blocks.push(b);
                        Ok(())
                    })?;
                    store.put_many_trusted(std::mem::take(&mut blocks)).await?;
                }
            }
        }
        if !buf.is_empty() {
            builder.push_chunk(Bytes::from(buf), &mut |b| {
                blocks.push(b);
                Ok(())
            })?;
        }
        let imported = builder.finish(&mut |b| {
            blocks.push(b);
            Ok(())
        })?;
        store.put_many_trusted(blocks).await?;
        if query.pin.as_deref() != Some("false") {
            store.pin(&imported.cid)?;
        }
        let line = serde_json::json!({
            "Name": name,
            "Hash": imported.cid.to_string(),
            "Size": imported.dag_size.to_string(),
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], lines).into_response())
}

fn bad_multipart(st: &RpcState, e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return StoreError::TooLarge {
            what: "upload body",
            limit: st.config.upload_limit(),
        }
        .into();
    }
    StoreError::BadRequest(format!("multipart body: {e}")).into()
}

#[derive(Debug, Deserialize)]
struct BlockPutQuery {
    #[serde(rename = "cid-codec")]
    cid_codec: Option<String>,
    format: Option<String>,
    mhtype: Option<String>,
    pin: Option<String>,
}

async fn rpc_block_put(
    State(st): Shared,
    Query(query): Query<BlockPutQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    let store = &st.store;
    if query.mhtype.as_deref().is_some_and(|h| h != "sha2-256") {
        return Err(StoreError::BadRequest("only sha2-256 is supported".into()).into());
    }
    let codec = match query.cid_codec.as_deref().or(query.format.as_deref()) {
        None | Some("raw") => khachapuri_types::RAW,
        Some("dag-pb") | Some("v0") | Some("protobuf") => khachapuri_types::DAG_PB,
        Some(other) => {
            return Err(StoreError::BadRequest(format!("unsupported codec {other:?}")).into())
        }
    };
    let mut lines = String::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_multipart(&st, e))?
    {
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| bad_multipart(&st, e))? {
            if data.len() + chunk.len() > crate::blockstore::MAX_BLOCK_SIZE {
                return Err(StoreError::TooLarge {
                    what: "block",
                    limit: crate::blockstore::MAX_BLOCK_SIZE as u64,
                }
                .into());
            }
            data.extend_from_slice(&chunk);
        }
        if codec == khachapuri_types::DAG_PB {
            crate::dagpb::PbNode::decode(&data)?;
        }
        let cid = Cid::of(codec, &data);
        let size = data.len();
        store.put_async(cid, Bytes::from(data)).await?;
        if query.pin.as_deref() == Some("true") {
            store.pin(&cid)?;
        }
        lines.push_str(&serde_json::json!({"Key": cid.to_string(), "Size": size}).to_string());
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], lines).into_response())
}

#[derive(Debug, Deserialize)]
struct ArgQuery {
    arg: String,
}

async fn rpc_block_get(State(st): Shared, Query(query): Query<ArgQuery>) -> ApiResult<Response> {
    let store = &st.store;
    let cid = query.cid()?;
    let block = store
        .get_async(cid)
        .await?
        .ok_or(StoreError::NotFound(cid))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], block).into_response())
}

async fn rpc_pin_add(State(st): Shared, Query(query): Query<ArgQuery>) -> ApiResult<Response> {
    let store = &st.store;
    let cid = query.cid()?;
    ensure_complete(store, cid, &st.limits).await?;
    store.pin(&cid)?;
    Ok(Json(serde_json::json!({"Pins": [cid.to_string()]})).into_response())
}

impl ArgQuery {
    /// The CID in Kubo's `arg` (bare, or as an `/ipfs/` path).
    fn cid(&self) -> Result<Cid, StoreError> {
        Ok(self.arg.trim_start_matches("/ipfs/").parse()?)
    }
}
