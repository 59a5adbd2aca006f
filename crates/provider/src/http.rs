//! HTTP surface of the node (axum): function calls, health, metrics, discovery and the
//! trustless gateway. [`crate::serve`] runs it on a bound listener with a shutdown future
//! so tests can bind `127.0.0.1:0` and stop them deterministically.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::node::Node;
use crate::ProviderError;

/// Builds the router of a node: calls, discovery, health, metrics and the read-only
/// trustless gateway. Nothing here writes content: this port faces strangers, and
/// publishing lives on `khachapuri store serve` and the dev store.
pub fn router(node: Arc<Node>) -> Router {
    let ipfs = khachapuri_store::gateway_router(node.store.local().clone(), *node.store.limits());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/.well-known/khachapuri", get(well_known))
        .route("/.well-known/khachapuri/voucher", post(voucher))
        .route("/api/{*rest}", any(no_publishing))
        .route("/{cid}", any(call_root))
        .route("/{cid}/", any(call_root))
        .route("/{cid}/{*rest}", any(call_rest))
        .with_state(node)
        .merge(ipfs)
}

/// `/api/...` (Kubo RPC) is never served here; a clear 404 rather than "not a CID".
async fn no_publishing() -> Response {
    let body = json!({
        "error": "this provider does not accept uploads",
        "kind": "not_found",
        "hint": "publish to a store (`khachapuri store serve`, the dev store or Kubo), then call the CID here",
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    let mut text = node.metrics.render(&node.runtime_metrics());
    if let Some(stats) = node.admission.signature_limit_stats() {
        crate::metrics::render_signature_limit(&mut text, stats);
    }
    text.push_str(&crate::metrics::render_caches(&node.cache_usage()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `?deployment=CID`: the sponsored deployment a top-up is for.
#[derive(Debug, serde::Deserialize)]
struct TopUpQuery {
    deployment: Option<String>,
}

async fn voucher(
    State(node): State<Arc<Node>>,
    axum::extract::Query(q): axum::extract::Query<TopUpQuery>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    // Counted before anything else: naming a deployment may open its envelope and check
    // its owner's signature, the voucher's own check comes after.
    let client = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    if let Err(e) = node.admission.count_signature_check(client) {
        return answer(Err(e));
    }
    let spec = match &q.deployment {
        None => None,
        Some(cid) => match node.spec_of(cid).await {
            Ok(spec) => Some(spec),
            Err(e) => return answer(Err(e)),
        },
    };
    match node.admission.top_up(&body, spec.as_deref()).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => answer(Err(e)),
    }
}

async fn well_known(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    let c = node.config();
    let payments = node.admission.describe();
    let chain = |k: &str| payments.as_ref().and_then(|p| p.get(k).cloned());
    Json(json!({
        "chain_id": chain("chain_id"),
        "escrow": chain("escrow"),
        "registry": chain("registry"),
        "pricing": chain("pricing"),
        "payments": payments,
        "name": c.name,
        "address": c.address,
        "x25519_public_key": node.x25519_public_hex(),
        "version": env!("CARGO_PKG_VERSION"),
        "free": node.admission.is_free(),
        "runtimes": c.runtimes,
        "limits": {
            "max_timeout_ms": c.max_timeout_ms,
            "default_timeout_ms": c.default_timeout_ms,
            "max_memory_mb": c.max_memory_mb,
            "default_memory_mb": c.default_memory_mb,
            "max_request_bytes": c.max_request_bytes,
            "max_response_bytes": c.max_response_bytes,
            "max_spec_bytes": c.max_spec_bytes,
            "max_artifact_bytes": c.max_artifact_bytes,
        },
        "capacity": {
            "max_instances": c.max_instances,
            "available": node.runtime.available_slots(),
        },
    }))
}

async fn call_root(
    State(node): State<Arc<Node>>,
    Path(cid): Path<String>,
    req: Request<Body>,
) -> Response {
    answer(node.call(&cid, "/", req).await)
}

async fn call_rest(
    State(node): State<Arc<Node>>,
    Path((cid, rest)): Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    let path = format!("/{rest}");
    answer(node.call(&cid, &path, req).await)
}

fn answer(result: Result<Response<Body>, ProviderError>) -> Response {
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status() == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::warn!(error = %e, "call failed");
            } else {
                tracing::debug!(error = %e, "call refused");
            }
            e.into_response()
        }
    }
}
