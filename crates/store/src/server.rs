//! The embedded store's HTTP face: a trustless gateway (`GET`/`HEAD /ipfs/{cid}`) and the
//! Kubo RPC subset publishing needs (`add`, `block/put`, `block/get`, `pin/add`), so the
//! CLI publishes the same way here and to a real Kubo node.

use std::future::Future;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use khachapuri_types::Cid;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::blockstore::Blockstore;
use crate::car;
use crate::error::StoreError;
use crate::exporter::DagWalker;
use crate::importer::{FileBuilder, CHUNK_SIZE};

const RAW_TYPE: &str = "application/vnd.ipld.raw";
const CAR_TYPE: &str = "application/vnd.ipld.car";

/// Routes of the gateway and the Kubo RPC subset over `store`, to mount in a bigger
/// router (the provider node) or serve alone with [`serve`].
pub fn router(store: Blockstore) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(get_ipfs))
        .route("/api/v0/add", post(rpc_add))
        .route("/api/v0/block/put", post(rpc_block_put))
        .route("/api/v0/block/get", post(rpc_block_get))
        .route("/api/v0/pin/add", post(rpc_pin_add))
        .layer(DefaultBodyLimit::disable())
        .with_state(store)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    store: Blockstore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The one place store errors become HTTP answers.
struct ApiError(StoreError);

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Cid(_)
            | StoreError::BadRequest(_)
            | StoreError::HashMismatch { .. }
            | StoreError::Malformed { .. }
            | StoreError::InvalidBlock { .. } => StatusCode::BAD_REQUEST,
            StoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            StoreError::Remote { .. }
            | StoreError::AllSourcesFailed { .. }
            | StoreError::IncompleteCar { .. } => StatusCode::BAD_GATEWAY,
            StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "store request failed");
        }
        // Kubo's error shape, which its clients already understand.
        let body = serde_json::json!({"Message": self.0.to_string(), "Code": 0, "Type": "error"});
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize)]
struct GatewayQuery {
    format: Option<String>,
    #[serde(rename = "dag-scope")]
    dag_scope: Option<String>,
}

enum Format {
    Raw,
    Car,
    File,
}

fn pick_format(query: &GatewayQuery, headers: &HeaderMap) -> ApiResult<Format> {
    match query.format.as_deref() {
        Some("raw") => return Ok(Format::Raw),
        Some("car") => return Ok(Format::Car),
        Some(other) => {
            return Err(StoreError::BadRequest(format!("unsupported format {other:?}")).into())
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains(RAW_TYPE) {
        Ok(Format::Raw)
    } else if accept.contains(CAR_TYPE) {
        Ok(Format::Car)
    } else {
        Ok(Format::File)
    }
}

async fn get_ipfs(
    State(store): State<Blockstore>,
    Path(cid): Path<String>,
    Query(query): Query<GatewayQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let cid: Cid = cid.parse().map_err(StoreError::from)?;
    if query.dag_scope.as_deref().is_some_and(|s| s != "all") {
        return Err(StoreError::BadRequest("only dag-scope=all is supported".into()).into());
    }
    let format = pick_format(&query, &headers)?;
    let etag = format!("\"{cid}\"");
    let root = store
        .get_async(cid)
        .await?
        .ok_or(StoreError::NotFound(cid))?;
    let (content_type, body) = match format {
        Format::Raw => (RAW_TYPE, Body::from(root)),
        Format::Car => {
            ensure_complete(&store, cid).await?;
            (
                "application/vnd.ipld.car; version=1; order=dfs; dups=n",
                stream_dag(store, cid, true),
            )
        }
        Format::File => {
            ensure_complete(&store, cid).await?;
            ("application/octet-stream", stream_dag(store, cid, false))
        }
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=29030400, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "x-ipfs-roots",
        HeaderValue::from_str(&cid.to_string())
            .map_err(|e| StoreError::BadRequest(e.to_string()))?,
    );
    Ok(response)
}

/// Checks the whole DAG is local before a 200 is sent, so a missing block is a 404 and
/// not a stream cut in the middle.
async fn ensure_complete(store: &Blockstore, root: Cid) -> ApiResult<()> {
    let mut walker = DagWalker::new(root);
    while let Some(cid) = walker.next_cid() {
        if cid.codec() == khachapuri_types::RAW {
            if !store.has(&cid) {
                return Err(StoreError::NotFound(cid).into());
            }
            walker.visit(cid, &[])?;
        } else {
            let block = store
                .get_async(cid)
                .await?
                .ok_or(StoreError::NotFound(cid))?;
            walker.visit(cid, &block)?;
        }
    }
    Ok(())
}

/// Streams the DAG depth-first: as a CAR, or (for browsers) as the file's bytes.
fn stream_dag(store: Blockstore, root: Cid, as_car: bool) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StoreError>>(4);
    tokio::spawn(async move {
        if as_car && tx.send(Ok(Bytes::from(car::header(&root)))).await.is_err() {
            return;
        }
        let mut walker = DagWalker::new(root);
        while let Some(cid) = walker.next_cid() {
            let block = match store.get_async(cid).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    let _ = tx.send(Err(StoreError::NotFound(cid))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if let Err(e) = walker.visit(cid, &block) {
                let _ = tx.send(Err(e)).await;
                return;
            }
            let chunk = if as_car {
                let mut section = car::section_prefix(&cid, block.len());
                section.extend_from_slice(&block);
                Bytes::from(section)
            } else if cid.codec() == khachapuri_types::RAW {
                block
            } else {
                match file_inline_data(&cid, &block) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            };
            if tx.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

fn file_inline_data(cid: &Cid, block: &[u8]) -> Result<Bytes, StoreError> {
    let node = crate::dagpb::PbNode::decode(block)?;
    let fs = crate::dagpb::UnixfsData::decode(node.data.as_deref().unwrap_or_default())?;
    if fs.kind != crate::dagpb::UNIXFS_FILE && fs.kind != crate::dagpb::UNIXFS_RAW {
        return Err(StoreError::Unsupported {
            cid: *cid,
            reason: "not a UnixFS file".into(),
        });
    }
    Ok(Bytes::from(fs.data.unwrap_or_default()))
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
    State(store): State<Blockstore>,
    Query(query): Query<AddQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
    check_add_flags(&query)?;
    let mut lines = String::new();
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        if field.content_type() == Some("application/x-directory") {
            return Err(StoreError::BadRequest("directories are not supported".into()).into());
        }
        let name = field.file_name().or(field.name()).unwrap_or("").to_string();
        let mut builder = FileBuilder::new();
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_SIZE);
        let mut blocks = Vec::new();
        while let Some(data) = field.chunk().await.map_err(bad_multipart)? {
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

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> ApiError {
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
    State(store): State<Blockstore>,
    Query(query): Query<BlockPutQuery>,
    mut multipart: Multipart,
) -> ApiResult<Response> {
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
    while let Some(mut field) = multipart.next_field().await.map_err(bad_multipart)? {
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad_multipart)? {
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

async fn rpc_block_get(
    State(store): State<Blockstore>,
    Query(query): Query<ArgQuery>,
) -> ApiResult<Response> {
    let cid = query.cid()?;
    let block = store
        .get_async(cid)
        .await?
        .ok_or(StoreError::NotFound(cid))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], block).into_response())
}

async fn rpc_pin_add(
    State(store): State<Blockstore>,
    Query(query): Query<ArgQuery>,
) -> ApiResult<Response> {
    let cid = query.cid()?;
    ensure_complete(&store, cid).await?;
    store.pin(&cid)?;
    Ok(Json(serde_json::json!({"Pins": [cid.to_string()]})).into_response())
}

impl ArgQuery {
    /// The CID in Kubo's `arg` (bare, or as an `/ipfs/` path).
    fn cid(&self) -> Result<Cid, StoreError> {
        Ok(self.arg.trim_start_matches("/ipfs/").parse()?)
    }
}
