//! Running a `wasi:http/proxy` component for one request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::state::{DenyOutgoing, HttpState, MemoryLimiter};
use crate::{CallOptions, RuntimeError};

/// Arms the epoch deadline: the guest yields to tokio every tick (so a spinning guest
/// does not hog a worker thread) and traps with `Interrupt` once `timeout` has passed.
pub(crate) fn arm_deadline<T: 'static>(store: &mut Store<T>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
}

/// Turns a wasmtime error from instantiating or running a guest into a fault.
pub(crate) fn guest_fault(
    e: &wasmtime::Error,
    memory_exceeded: bool,
    opts: &CallOptions<'_>,
) -> RuntimeError {
    if memory_exceeded {
        return RuntimeError::MemoryExhausted {
            limit: opts.limits.memory_bytes,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return RuntimeError::Deadline(opts.limits.timeout);
    }
    RuntimeError::Trap(format!("{e:#}"))
}

enum ResponseFail {
    TooLarge,
    Missing(String),
}

pub(crate) async fn call(
    engine: &Engine,
    pre: &ProxyPre<HttpState>,
    req: http::Request<Bytes>,
    opts: &CallOptions<'_>,
) -> Result<http::Response<Bytes>, RuntimeError> {
    let limits = opts.limits;
    let req = rewrite_uri(req, opts.path)?;

    let wasi = WasiCtxBuilder::new().envs(opts.env).build();
    let mut store = Store::new(
        engine,
        HttpState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: DenyOutgoing,
            limiter: MemoryLimiter::new(limits.memory_bytes),
        },
    );
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, limits.timeout);

    let (tx, rx) = tokio::sync::oneshot::channel();
    let internal = |e: wasmtime::Error| RuntimeError::Internal(format!("{e:#}"));
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req.map(Full::new))
        .map_err(|e| RuntimeError::BadRequest(format!("{e:#}")))?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(tx)
        .map_err(internal)?;

    let pre = pre.clone();
    // The guest owns the store; dropping it when the guest returns closes the response
    // body stream, so a guest that never finishes its body cannot hang the collector.
    let guest = async move {
        let run = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        }
        .await;
        let exceeded = store.data().limiter.exceeded;
        drop(store);
        (run, exceeded)
    };
    let response = async move {
        let resp = match rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => {
                return Err(ResponseFail::Missing(format!(
                    "guest answered with error {code:?}"
                )))
            }
            Err(_) => return Err(ResponseFail::Missing("guest never set a response".into())),
        };
        let (parts, body) = resp.into_parts();
        match Limited::new(body, limits.max_response_bytes)
            .collect()
            .await
        {
            Ok(c) => Ok(http::Response::from_parts(parts, c.to_bytes())),
            Err(e) if e.is::<LengthLimitError>() => Err(ResponseFail::TooLarge),
            Err(e) => Err(ResponseFail::Missing(format!("response body failed: {e}"))),
        }
    };

    let work = async {
        tokio::pin!(guest);
        tokio::pin!(response);
        let mut guest_ok = false;
        loop {
            tokio::select! {
                biased;
                (run, exceeded) = &mut guest, if !guest_ok => match run {
                    Ok(()) => guest_ok = true,
                    Err(e) => return Err(guest_fault(&e, exceeded, opts)),
                },
                r = &mut response => return match r {
                    Ok(resp) => Ok(resp),
                    Err(ResponseFail::TooLarge) => Err(RuntimeError::ResponseTooLarge {
                        limit: limits.max_response_bytes,
                    }),
                    Err(ResponseFail::Missing(why)) => {
                        // The guest probably trapped: its fault is the better answer.
                        if !guest_ok {
                            if let (Err(e), exceeded) = (&mut guest).await {
                                return Err(guest_fault(&e, exceeded, opts));
                            }
                        }
                        Err(RuntimeError::BadResponse(why))
                    }
                },
            }
        }
    };
    match tokio::time::timeout(limits.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Deadline(limits.timeout)),
    }
}

/// Gives the guest the path after the CID (keeping the query) and an absolute URI, as
/// `wasi:http` needs an authority (from `Host`, else `localhost`).
fn rewrite_uri(
    req: http::Request<Bytes>,
    path: &str,
) -> Result<http::Request<Bytes>, RuntimeError> {
    let (mut parts, body) = req.into_parts();
    let path = if path.is_empty() { "/" } else { path };
    let mut pq = String::with_capacity(path.len() + 1 + parts.uri.query().map_or(0, str::len));
    if !path.starts_with('/') {
        pq.push('/');
    }
    pq.push_str(path);
    if let Some(q) = parts.uri.query() {
        pq.push('?');
        pq.push_str(q);
    }
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().to_owned(),
        None => parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_owned(),
    };
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|e| RuntimeError::BadRequest(format!("bad request path: {e}")))?;
    Ok(http::Request::from_parts(parts, body))
}
