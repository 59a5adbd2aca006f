//! Running a `wasi:http/proxy` component for one request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Body;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::body::GuestTask;
use crate::state::{DenyOutgoing, HttpState, MemoryLimiter};
use crate::{CallOptions, Limits, RuntimeError};

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
    limits: &Limits,
) -> RuntimeError {
    if memory_exceeded {
        return RuntimeError::MemoryExhausted {
            limit: limits.memory_bytes,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return RuntimeError::Deadline(limits.timeout);
    }
    RuntimeError::Trap(format!("{e:#}"))
}

/// A guest that has started answering: the response head, the body it is still writing,
/// and the task running it (which holds the instance slot until the guest is done).
pub(crate) struct Started {
    pub(crate) head: http::response::Parts,
    pub(crate) body: HyperOutgoingBody,
    pub(crate) guest: GuestTask,
}

/// Starts `pre` on `req` in its own task (holding `slot`), and waits for the response
/// head. The task enforces the call's deadline on its own, whether or not anybody reads
/// the body, so a slow reader cannot keep a guest (and its slot) alive past its budget.
pub(crate) async fn call<B>(
    engine: &Engine,
    pre: &ProxyPre<HttpState>,
    req: http::Request<B>,
    opts: &CallOptions<'_>,
    slot: OwnedSemaphorePermit,
) -> Result<Started, RuntimeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
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
        .new_incoming_request(Scheme::Http, req)
        .map_err(|e| RuntimeError::BadRequest(format!("{e:#}")))?;
    let out = store
        .data_mut()
        .http()
        .new_response_outparam(tx)
        .map_err(internal)?;

    let pre = pre.clone();
    // The task owns the store; dropping it when the guest returns (or is aborted) closes
    // the response body stream, so a guest that never finishes its body cannot hang the
    // reader.
    let task = tokio::spawn(async move {
        let _slot = slot;
        let run = async {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        };
        let run = tokio::time::timeout(limits.timeout, run).await;
        let exceeded = store.data().limiter.exceeded;
        drop(store);
        match run {
            Err(_elapsed) => Err(RuntimeError::Deadline(limits.timeout)),
            Ok(Err(e)) => Err(guest_fault(&e, exceeded, &limits)),
            Ok(Ok(())) => Ok(()),
        }
    });
    let mut guest = GuestTask(task);

    let resp = tokio::select! {
        biased;
        head = rx => head,
        // The guest ended before (or without) answering: its fault is the answer.
        outcome = &mut guest.0 => return Err(unanswered(outcome)),
    };
    match resp {
        Ok(Ok(resp)) => {
            let (head, body) = resp.into_parts();
            Ok(Started { head, body, guest })
        }
        Ok(Err(code)) => Err(RuntimeError::BadResponse(format!(
            "guest answered with error {code:?}"
        ))),
        // The outparam was dropped unset: the guest probably trapped.
        Err(_) => Err(unanswered((&mut guest.0).await)),
    }
}

/// The answer for a guest that ended without setting a response: its fault if it had
/// one, else the broken contract.
fn unanswered(outcome: Result<Result<(), RuntimeError>, tokio::task::JoinError>) -> RuntimeError {
    match outcome {
        Err(e) => RuntimeError::Internal(format!("guest task failed: {e}")),
        Ok(Err(e)) => e,
        Ok(Ok(())) => RuntimeError::BadResponse("guest never set a response".into()),
    }
}

/// Gives the guest the path after the CID (keeping the query) and an absolute URI, as
/// `wasi:http` needs an authority (from `Host`, else `localhost`).
fn rewrite_uri<B>(req: http::Request<B>, path: &str) -> Result<http::Request<B>, RuntimeError> {
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
