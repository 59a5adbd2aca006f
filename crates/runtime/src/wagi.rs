//! Running a WASI preview1 module with the CGI convention (WAGI) for one request.

use bytes::Bytes;
use wasmtime::{Engine, InstancePre, Store};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::cgi::{cgi_env, parse_cgi, HEADER_ALLOWANCE};
use crate::http_guest::{arm_deadline, guest_fault};
use crate::state::{MemoryLimiter, WagiState};
use crate::{CallOptions, RuntimeError};

pub(crate) async fn call(
    engine: &Engine,
    pre: &InstancePre<WagiState>,
    req: http::Request<Bytes>,
    opts: &CallOptions<'_>,
) -> Result<http::Response<Bytes>, RuntimeError> {
    let limits = opts.limits;
    let (parts, body) = req.into_parts();
    let capacity = limits.max_response_bytes.saturating_add(HEADER_ALLOWANCE);
    let stdout = MemoryOutputPipe::new(capacity);

    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(MemoryInputPipe::new(body.clone()))
        .stdout(stdout.clone())
        .arg("function.wasm")
        .envs(opts.env)
        .envs(cgi_env(&parts, opts.path, body.len()).as_slice());
    let mut store = Store::new(
        engine,
        WagiState {
            wasi: wasi.build_p1(),
            limiter: MemoryLimiter::new(limits.memory_bytes),
        },
    );
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, limits.timeout);

    let run = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
    };
    let run = tokio::time::timeout(limits.timeout, run).await;
    let exceeded = store.data().limiter.exceeded;
    drop(store);
    let output = stdout.try_into_inner().unwrap_or_default();
    // A full pipe means the guest tried to write more than allowed, whatever it did next
    // (a guest ignoring write errors spins until its deadline).
    if output.len() >= capacity {
        return Err(RuntimeError::ResponseTooLarge {
            limit: limits.max_response_bytes,
        });
    }
    match run {
        Err(_elapsed) => return Err(RuntimeError::Deadline(limits.timeout)),
        Ok(Err(e)) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => {}
            Some(I32Exit(code)) => {
                return Err(RuntimeError::BadResponse(format!(
                    "CGI program exited with status {code}"
                )))
            }
            None => return Err(guest_fault(&e, exceeded, &limits)),
        },
        Ok(Ok(())) => {}
    }
    parse_cgi(output, limits.max_response_bytes)
}
