//! The runtime: engine, caches, admission control, and the call entry point.

use std::sync::Arc;

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::body::{GuestBody, RequestBody, RequestFlags};
use crate::cache::{Code, DiskCache};
use crate::engine::{build_engine, fingerprint, EpochTicker};
use crate::lru::{CacheUsage, OnceLru};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::process::{ProcessRuntime, Program};
use crate::state::{HttpState, WagiState};
use crate::{http_guest, wagi, CallOptions, GuestKind, RuntimeConfig, RuntimeError};

/// Runs functions. Cheap to clone (shared state); the epoch ticker stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    http_linker: ComponentLinker<HttpState>,
    wagi_linker: Linker<WagiState>,
    disk: Option<DiskCache>,
    /// The `process` runtime, when configured ([`RuntimeConfig::process`]).
    process: Option<ProcessRuntime>,
    /// Linked code by artifact CID, bounded in bytes of compiled code
    /// ([`RuntimeConfig::max_memory_cache_bytes`]).
    prepared: OnceLru<Prepared>,
    slots: Arc<Semaphore>,
    config: RuntimeConfig,
    metrics: Metrics,
    _ticker: EpochTicker,
}

/// A function ready to serve requests: linked, pre-instantiated code for one artifact.
/// Cheap to clone.
#[derive(Clone)]
pub struct Prepared {
    inner: Arc<PreparedInner>,
}

struct PreparedInner {
    cid: String,
    kind: GuestKind,
    origin: Origin,
    /// Size of the compiled code image in memory: what this entry costs the cache.
    code_bytes: u64,
    pre: Pre,
}

enum Pre {
    Http(ProxyPre<HttpState>),
    Wagi(InstancePre<WagiState>),
    Process(Program),
}

/// Where a [`Prepared`] function's compiled code came from when it was first prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled from the artifact's bytes (first run, or a cache miss).
    Compiled,
    /// Loaded from the disk cache without compiling.
    DiskCache,
}

impl Prepared {
    /// The artifact CID this function was prepared from.
    pub fn cid(&self) -> &str {
        &self.inner.cid
    }
    /// The guest kind.
    pub fn kind(&self) -> GuestKind {
        self.inner.kind
    }
    /// Whether the code was compiled or loaded from the disk cache.
    pub fn origin(&self) -> Origin {
        self.inner.origin
    }
    /// Bytes of compiled code behind this function: its weight in the memory cache.
    pub fn code_bytes(&self) -> u64 {
        self.inner.code_bytes
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("cid", &self.inner.cid)
            .field("kind", &self.inner.kind)
            .field("origin", &self.inner.origin)
            .finish()
    }
}

impl Runtime {
    /// Builds the engine (pooling allocator, epoch interruption), links the WASI host
    /// interfaces, opens the disk cache and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let engine = build_engine(&config)?;
        let link = |e: wasmtime::Error| RuntimeError::Internal(format!("linking WASI: {e:#}"));

        // The full WASIp2 command world plus wasi:http, as `wasmtime serve -S cli=y` links:
        // components built for wasm32-wasip2 import wasi:cli/filesystem/sockets even when
        // unused. With no preopens, no socket permissions and no inherited env or stdio,
        // they give a guest nothing.
        let mut http_linker = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker).map_err(link)?;

        let mut wagi_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut wagi_linker, |s: &mut WagiState| &mut s.wasi)
            .map_err(link)?;

        let disk = match &config.cache_dir {
            Some(dir) => Some(
                DiskCache::new(
                    dir.clone(),
                    fingerprint(&engine),
                    config.max_disk_cache_bytes,
                )
                .map_err(|e| RuntimeError::Internal(format!("cache dir {}: {e}", dir.display())))?,
            ),
            None => None,
        };
        let process = config
            .process
            .clone()
            .map(ProcessRuntime::new)
            .transpose()?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                http_linker,
                wagi_linker,
                disk,
                process,
                prepared: OnceLru::new(config.max_memory_cache_bytes),
                slots: Arc::new(Semaphore::new(config.max_instances.max(1) as usize)),
                config,
                metrics: Metrics::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Instance slots currently free (capacity for `/.well-known/khachapuri`).
    pub fn available_slots(&self) -> usize {
        self.inner.slots.available_permits()
    }

    /// How full the in-memory cache of prepared code is (bytes of compiled code).
    pub fn memory_cache_usage(&self) -> CacheUsage {
        self.inner.prepared.usage()
    }

    /// How full the on-disk compiled-code cache is (file bytes); zero without one.
    pub fn disk_cache_usage(&self) -> CacheUsage {
        self.inner
            .disk
            .as_ref()
            .map(DiskCache::usage)
            .unwrap_or_default()
    }

    /// How full the directory of unpacked `process` artifacts is; zero without one.
    pub fn unpacked_cache_usage(&self) -> CacheUsage {
        self.inner
            .process
            .as_ref()
            .map(ProcessRuntime::usage)
            .unwrap_or_default()
    }

    /// Whether this runtime runs guests of `kind` (`process` only when configured).
    pub fn runs(&self, kind: GuestKind) -> bool {
        kind != GuestKind::Process || self.inner.process.is_some()
    }

    /// The prepared function for `cid` if it is in memory: the hot path, no I/O (but a
    /// `stat` for a `process` program, whose unpacked directory the disk cache may have
    /// deleted: then it is a miss and the caller unpacks it again).
    pub fn get(&self, cid: &str) -> Option<Prepared> {
        let mut found = self.inner.prepared.get(cid);
        if let Some(Pre::Process(program)) = found.as_ref().map(|p| &p.inner.pre) {
            if !program.present() {
                self.inner.prepared.remove(cid);
                found = None;
            }
        }
        if found.is_some() {
            self.inner.metrics.memory_hit();
        }
        found
    }

    /// The prepared function from memory or the disk cache, without the artifact's
    /// bytes: lets a restarted node serve without fetching and compiling. `Ok(None)` on
    /// a miss (then fetch the artifact and call [`Runtime::prepare`]).
    pub async fn load_cached(
        &self,
        cid: &str,
        kind: GuestKind,
    ) -> Result<Option<Prepared>, RuntimeError> {
        if let Some(p) = self.get(cid) {
            return check_kind(p, kind).map(Some);
        }
        if self.inner.disk.is_none() && kind != GuestKind::Process {
            return Ok(None);
        }
        let this = self.clone();
        let owned = cid.to_owned();
        let loaded = self
            .inner
            .prepared
            .get_or_try_init(cid, Prepared::code_bytes, || async move {
                let p = this
                    .blocking(move |rt| rt.load_from_disk(&owned, kind))
                    .await??;
                p.ok_or(Miss)
            })
            .await;
        match loaded {
            Ok(p) => check_kind(p, kind).map(Some),
            Err(Miss) => Ok(None),
        }
    }

    /// Prepares `wasm` (the artifact whose CID is `cid`; the caller has verified the
    /// bytes match it) from the memory cache, the disk cache, or by compiling on a
    /// blocking thread and writing the disk cache. Concurrent calls for the same CID
    /// share one compilation.
    pub async fn prepare(
        &self,
        cid: &str,
        kind: GuestKind,
        wasm: Bytes,
    ) -> Result<Prepared, RuntimeError> {
        if let Some(p) = self.get(cid) {
            return check_kind(p, kind);
        }
        let this = self.clone();
        let owned = cid.to_owned();
        let result = self
            .inner
            .prepared
            .get_or_try_init(cid, Prepared::code_bytes, || async move {
                this.blocking(move |rt| match rt.load_from_disk(&owned, kind)? {
                    Some(p) => Ok(p),
                    None => rt.compile(&owned, kind, &wasm),
                })
                .await?
            })
            .await;
        check_kind(result?, kind)
    }

    /// Drops `cid` from the in-memory cache (the disk cache is kept).
    pub fn evict(&self, cid: &str) {
        self.inner.prepared.remove(cid);
    }

    /// Runs one request through a prepared function and returns its buffered response:
    /// [`Runtime::handle_stream`] collected (tests, benchmarks, and callers that need the
    /// whole body). A fault after the guest started answering is the result.
    pub async fn handle<B>(
        &self,
        prepared: &Prepared,
        req: http::Request<B>,
        opts: &CallOptions<'_>,
    ) -> Result<http::Response<Bytes>, RuntimeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = self.handle_stream(prepared, req, opts).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }

    /// Runs one request through a prepared function; the response body streams out as
    /// the guest writes it. `opts.limits` are capped by [`RuntimeConfig::max_limits`].
    ///
    /// An instance slot is taken without waiting (else [`RuntimeError::Busy`]) and held
    /// until the guest is done. A `wasi-http` guest reads the caller's body as it arrives,
    /// up to `opts.limits.max_request_bytes` (else [`RuntimeError::RequestTooLarge`]); a
    /// WAGI guest gets it whole on stdin. Faults before the response head are the error;
    /// later ones end the body with an error. Every fault is counted and logged with the
    /// CID; map it to an answer with [`RuntimeError::http_status`].
    pub async fn handle_stream<B>(
        &self,
        prepared: &Prepared,
        req: http::Request<B>,
        opts: &CallOptions<'_>,
    ) -> Result<http::Response<GuestBody>, RuntimeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner.metrics.call();
        // The provider's caps always apply, whatever the caller passed.
        let opts = CallOptions {
            limits: opts.limits.capped_by(&self.inner.config.max_limits),
            ..*opts
        };
        let result = self.handle_inner(prepared, req, &opts).await;
        if let Err(e) = &result {
            self.record_fault(prepared.cid(), e);
        }
        result
    }

    /// Counts and logs a fault of the function `cid`.
    pub(crate) fn record_fault(&self, cid: &str, e: &RuntimeError) {
        self.inner.metrics.fault(e.kind());
        if matches!(e, RuntimeError::Busy(_)) {
            // Overload is not news per request; the counter tells the story.
            tracing::debug!(cid, "busy: all instance slots in use");
            return;
        }
        tracing::warn!(
            cid,
            kind = e.kind().as_str(),
            status = e.http_status(),
            error = %e,
            "function fault"
        );
    }

    async fn handle_inner<B>(
        &self,
        prepared: &Prepared,
        req: http::Request<B>,
        opts: &CallOptions<'_>,
    ) -> Result<http::Response<GuestBody>, RuntimeError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = opts.limits.max_request_bytes;
        let (parts, body) = req.into_parts();
        if let Some(len) = parts.headers.get(http::header::CONTENT_LENGTH) {
            let len = len.to_str().ok().and_then(|l| l.parse::<u64>().ok());
            if len.is_some_and(|l| l > limit as u64) {
                return Err(RuntimeError::RequestTooLarge { limit });
            }
        }
        let slot = || {
            self.inner
                .slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| RuntimeError::Busy(self.inner.config.max_instances))
        };
        match &prepared.inner.pre {
            Pre::Http(pre) => {
                let flags = Arc::new(RequestFlags::default());
                let body = RequestBody::new(Box::pin(body), limit, flags.clone());
                let req = http::Request::from_parts(parts, body);
                let started = http_guest::call(&self.inner.engine, pre, req, opts, slot()?)
                    .await
                    .map_err(|e| flags.error(limit).unwrap_or(e))?;
                if let Some(e) = flags.error(limit) {
                    return Err(e);
                }
                let body = GuestBody::stream(
                    started.body,
                    started.guest,
                    opts.limits.max_response_bytes,
                    flags,
                    limit,
                    self.clone(),
                    prepared.cid().to_owned(),
                );
                Ok(http::Response::from_parts(started.head, body))
            }
            Pre::Wagi(pre) => {
                // CGI reads stdin whole: collect first, then take a slot.
                let body = collect_body(body, limit).await?;
                let _slot = slot()?;
                let req = http::Request::from_parts(parts, body);
                let resp = wagi::call(&self.inner.engine, pre, req, opts).await?;
                Ok(resp.map(GuestBody::full))
            }
            Pre::Process(program) => {
                let Some(process) = &self.inner.process else {
                    return Err(RuntimeError::Unavailable(GuestKind::Process));
                };
                let body = collect_body(body, limit).await?;
                let _slot = slot()?;
                let req = http::Request::from_parts(parts, body);
                let resp = process.call(program, req, opts).await?;
                Ok(resp.map(GuestBody::full))
            }
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime) -> R + Send + 'static,
    ) -> Result<R, RuntimeError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| RuntimeError::Internal(format!("compile task failed: {e}")))
    }

    /// Blocking: loads compiled code from disk and links it (for `process`: finds the
    /// unpacked directory).
    fn load_from_disk(&self, cid: &str, kind: GuestKind) -> Result<Option<Prepared>, RuntimeError> {
        if kind == GuestKind::Process {
            let process = self.process()?;
            let found = process
                .lookup(cid)
                .map(|p| self.program(cid, p, Origin::DiskCache));
            if found.is_some() {
                self.inner.metrics.disk_hit();
            }
            return Ok(found);
        }
        let Some(disk) = &self.inner.disk else {
            return Ok(None);
        };
        let Some(code) = disk.load(&self.inner.engine, cid, kind) else {
            return Ok(None);
        };
        let p = self.link(cid, kind, code, Origin::DiskCache)?;
        self.inner.metrics.disk_hit();
        tracing::info!(
            cid,
            kind = kind.as_str(),
            "loaded compiled code from disk cache"
        );
        Ok(Some(p))
    }

    fn process(&self) -> Result<&ProcessRuntime, RuntimeError> {
        self.inner
            .process
            .as_ref()
            .ok_or(RuntimeError::Unavailable(GuestKind::Process))
    }

    fn program(&self, cid: &str, program: Program, origin: Origin) -> Prepared {
        Prepared {
            inner: Arc::new(PreparedInner {
                cid: cid.to_owned(),
                kind: GuestKind::Process,
                origin,
                // In memory it is only a path; its bytes count in the unpack cache.
                code_bytes: 1024,
                pre: Pre::Process(program),
            }),
        }
    }

    /// Blocking: compiles, writes the disk cache, links (for `process`: unpacks).
    fn compile(&self, cid: &str, kind: GuestKind, wasm: &[u8]) -> Result<Prepared, RuntimeError> {
        if kind == GuestKind::Process {
            let program = self.process()?.unpack(cid, wasm)?;
            self.inner.metrics.compile();
            tracing::info!(cid, dir = %program.dir.display(), "unpacked native program");
            return Ok(self.program(cid, program, Origin::Compiled));
        }
        let invalid = |e: wasmtime::Error| RuntimeError::InvalidArtifact {
            kind,
            reason: format!("{e:#}"),
        };
        let started = std::time::Instant::now();
        let engine = &self.inner.engine;
        let (code, serialized) = match kind {
            GuestKind::WasiHttp => {
                let c = Component::new(engine, wasm).map_err(invalid)?;
                let s = self.inner.disk.as_ref().map(|_| c.serialize());
                (Code::Component(c), s)
            }
            GuestKind::Wagi => {
                let m = Module::new(engine, wasm).map_err(invalid)?;
                let s = self.inner.disk.as_ref().map(|_| m.serialize());
                (Code::Module(m), s)
            }
            GuestKind::Process => return Err(RuntimeError::Unavailable(kind)),
        };
        self.inner.metrics.compile();
        tracing::info!(
            cid,
            kind = kind.as_str(),
            ms = started.elapsed().as_millis() as u64,
            "compiled function"
        );
        let p = self.link(cid, kind, code, Origin::Compiled)?;
        if let (Some(disk), Some(bytes)) = (&self.inner.disk, serialized) {
            let stored = bytes
                .map_err(|e| e.to_string())
                .and_then(|b| disk.store(cid, kind, &b).map_err(|e| e.to_string()));
            if let Err(e) = stored {
                // Not fatal: we still serve, only a restart will recompile.
                tracing::warn!(cid, error = %e, "could not write compiled-code cache");
            }
        }
        Ok(p)
    }

    fn link(
        &self,
        cid: &str,
        kind: GuestKind,
        code: Code,
        origin: Origin,
    ) -> Result<Prepared, RuntimeError> {
        let invalid = |e: wasmtime::Error| RuntimeError::InvalidArtifact {
            kind,
            reason: format!("{e:#}"),
        };
        let code_bytes = code.image_bytes();
        let pre = match (kind, code) {
            (GuestKind::WasiHttp, Code::Component(c)) => {
                let pre = self
                    .inner
                    .http_linker
                    .instantiate_pre(&c)
                    .map_err(invalid)?;
                Pre::Http(ProxyPre::new(pre).map_err(invalid)?)
            }
            (GuestKind::Wagi, Code::Module(m)) => Pre::Wagi(
                self.inner
                    .wagi_linker
                    .instantiate_pre(&m)
                    .map_err(invalid)?,
            ),
            _ => return Err(RuntimeError::Internal("code kind mismatch".into())),
        };
        Ok(Prepared {
            inner: Arc::new(PreparedInner {
                cid: cid.to_owned(),
                kind,
                origin,
                code_bytes,
                pre,
            }),
        })
    }
}

/// The whole request body (CGI reads stdin whole), at most `limit` bytes.
async fn collect_body<B>(body: B, limit: usize) -> Result<Bytes, RuntimeError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(RuntimeError::RequestTooLarge { limit }),
        Err(e) if crate::body::is_timeout(&*e) => Err(RuntimeError::RequestTimeout),
        Err(e) => Err(RuntimeError::BadRequest(format!(
            "reading request body: {e}"
        ))),
    }
}

/// A disk-cache miss inside `load_cached`'s once-cell (not an error for the caller).
struct Miss;

impl From<RuntimeError> for Miss {
    fn from(_: RuntimeError) -> Miss {
        Miss
    }
}

fn check_kind(p: Prepared, kind: GuestKind) -> Result<Prepared, RuntimeError> {
    if p.kind() == kind {
        Ok(p)
    } else {
        Err(RuntimeError::InvalidArtifact {
            kind,
            reason: format!("artifact {} is already prepared as {}", p.cid(), p.kind()),
        })
    }
}
