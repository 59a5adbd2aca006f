//! The embedded store's read-only HTTP face: a trustless gateway (`GET`/`HEAD
//! /ipfs/{cid}`), safe to mount on a port that faces strangers (the provider node). The
//! Kubo RPC subset that writes lives in [`crate::rpc`] and is served only by [`serve`].

use std::future::Future;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use khachapuri_types::Cid;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::blockstore::Blockstore;
use crate::car;
use crate::client::Limits;
use crate::error::StoreError;
use crate::exporter::{export_with, DagWalker};
use crate::rpc::{self, PublishConfig};

const RAW_TYPE: &str = "application/vnd.ipld.raw";
const CAR_TYPE: &str = "application/vnd.ipld.car";

/// The read-only trustless gateway over `store` (`GET`/`HEAD /ipfs/{cid}`): what the
/// provider node mounts on its public port, where nothing may write.
/// Every walk it makes of the DAG asked for is bounded by `limits` (links followed,
/// depth, deadline, file size `max_dag_bytes`).
pub fn gateway_router(store: Blockstore, limits: Limits) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(get_ipfs))
        .with_state(Gateway { store, limits })
}

/// State of the gateway routes.
#[derive(Clone)]
struct Gateway {
    store: Blockstore,
    limits: Limits,
}

/// The gateway plus the Kubo RPC subset publishing needs, guarded by `config` (bearer
/// token, upload size cap): what `khachapuri store serve` and the dev store answer.
pub fn router(store: Blockstore, limits: Limits, config: PublishConfig) -> Router {
    gateway_router(store.clone(), limits).merge(rpc::router(store, limits, config))
}

/// Serves [`router`] with the default [`PublishConfig`] (no token, so loopback only)
/// until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    store: Blockstore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        store,
        Limits::default(),
        PublishConfig::default(),
        shutdown,
    )
    .await
}

/// Serves [`router`] with `limits` and `config`. Refuses to start on a non-loopback address without a
/// token: anyone who can reach the port could otherwise fill the disk.
pub async fn serve_with(
    listener: TcpListener,
    store: Blockstore,
    limits: Limits,
    config: PublishConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    config.check_exposure(addr)?;
    axum::serve(listener, router(store, limits, config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The one place store errors become HTTP answers (gateway and RPC alike).
pub(crate) struct ApiError(pub(crate) StoreError);

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
            StoreError::Deadline { .. } => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
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
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

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
    State(gw): State<Gateway>,
    Path(cid): Path<String>,
    Query(query): Query<GatewayQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Gateway { store, limits } = gw;
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
            ensure_complete(&store, cid, &limits).await?;
            (
                "application/vnd.ipld.car; version=1; order=dfs; dups=n",
                stream_car(store, cid, limits),
            )
        }
        Format::File => {
            ensure_complete(&store, cid, &limits).await?;
            // A dry run first (bounded like the real one), so a file that is too large or
            // too costly to walk is a 4xx, not a 200 cut off mid-stream.
            export_with(
                &store,
                cid,
                &mut tokio::io::sink(),
                limits.max_dag_bytes,
                &limits,
            )
            .await?;
            ("application/octet-stream", stream_file(store, cid, limits))
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
pub(crate) async fn ensure_complete(
    store: &Blockstore,
    root: Cid,
    limits: &Limits,
) -> ApiResult<()> {
    let mut walker = DagWalker::with_limits(root, limits);
    while let Some(cid) = walker.next_cid()? {
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

/// Streams the DAG depth-first as a CAR (`dups=n`), each block once.
fn stream_car(store: Blockstore, root: Cid, limits: Limits) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, StoreError>>(4);
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(car::header(&root)))).await.is_err() {
            return;
        }
        let mut walker = DagWalker::with_limits(root, &limits);
        loop {
            let cid = match walker.next_cid() {
                Ok(Some(cid)) => cid,
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
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
            let mut section = car::section_prefix(&cid, block.len());
            section.extend_from_slice(&block);
            if tx.send(Ok(Bytes::from(section))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

/// Streams the file's bytes (for browsers), duplicates included, within `limits`.
fn stream_file(store: Blockstore, root: Cid, limits: Limits) -> Body {
    let (mut writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Err(e) = export_with(&store, root, &mut writer, limits.max_dag_bytes, &limits).await
        {
            tracing::debug!(%root, error = %e, "file stream cut");
        }
    });
    Body::from_stream(tokio_util::io::ReaderStream::new(reader))
}
