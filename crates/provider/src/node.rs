//! The node's shared state and the request pipeline:
//! CID → envelope/spec (small, own cap) → admission (payment) → artifact fetch → compile
//! → run → charge. A call that is not paid for never fetches an artifact or compiles;
//! fetch + compile pass the [`CompileGate`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use bytes::Bytes;
use khachapuri_runtime::{
    CacheUsage, CallOptions, GuestKind, Limits, OnceLru, Prepared, Runtime, RuntimeConfig,
};
use khachapuri_store::{Blockstore, Store, StoreConfig};
use khachapuri_types::{Cid, Envelope, RedactedEnv, RuntimeKind, Spec};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::admission::{Admission, CallInfo, CallLimits};
use crate::compile::CompileGate;
use crate::metrics::Metrics;
use crate::respond::{respond, InFlight, Running, StreamPolicy, TicketGuard};
use crate::{NodeConfig, ProviderError};

/// Header carrying the cost of a call, once payment is on.
pub const RECEIPT_HEADER: &str = "khachapuri-receipt";

/// A deployment as its spec describes it (decrypted, in memory only): everything
/// admission needs to price a call, before its artifact is fetched or compiled.
///
/// Its `Debug` output shows env names but never their values (secrets of a sealed spec),
/// and those values (and the sponsor voucher, a bearer payment) are wiped from memory when
/// it is dropped, so an evicted deployment leaves no secret in freed memory.
pub struct Deployment {
    /// The spec as published.
    pub spec: Spec,
    /// Env vars in the order the guest sees them.
    pub env: Vec<(String, String)>,
    /// Limits after the provider's caps.
    pub limits: Limits,
    /// The artifact to fetch and compile once a call is admitted.
    pub artifact: Cid,
    /// How the artifact runs.
    pub kind: GuestKind,
}

impl Deployment {
    /// Overwrites every secret this deployment holds with zeros (what `Drop` does).
    fn wipe(&mut self) {
        use zeroize::Zeroize;
        for (_, value) in &mut self.env {
            value.zeroize();
        }
        for value in self.spec.env.values_mut() {
            value.zeroize();
        }
        self.spec.sponsor_voucher.zeroize();
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("spec", &self.spec)
            .field(
                "env",
                &RedactedEnv::new(self.env.iter().map(|(k, _)| k.as_str())),
            )
            .field("limits", &self.limits)
            .field("artifact", &self.artifact)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Deployment {
    /// Estimated bytes this deployment keeps in memory: its weight in the deployments
    /// cache. The spec's JSON length stands for the spec (strings dominate it), counted
    /// as it streams out so no copy of its env values is ever made; plus the env copy
    /// and the struct itself.
    fn approx_bytes(&self) -> u64 {
        let mut json = ByteCount(0);
        let spec = match serde_json::to_writer(&mut json, &self.spec) {
            Ok(()) => json.0,
            Err(_) => 4096,
        };
        let env: usize = self.env.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
        (spec + env + std::mem::size_of::<Self>() + 256) as u64
    }
}

/// A writer that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How full the node's bounded caches are, each against its cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCacheUsage {
    /// Opened specs in memory (`max_cached_spec_bytes`, estimated bytes).
    pub deployments: CacheUsage,
    /// Linked compiled code in memory (`max_compiled_memory_bytes`).
    pub prepared: CacheUsage,
    /// Compiled code on disk (`max_compiled_disk_bytes`).
    pub compiled_disk: CacheUsage,
    /// Unpacked `process` artifacts on disk (`max_unpacked_disk_bytes`).
    pub unpacked_disk: CacheUsage,
    /// Blocks fetched from gateways, on disk (`max_block_cache_bytes`); pinned blocks
    /// are not counted.
    pub blocks: khachapuri_store::BlockCacheUsage,
}

/// Shared state of a running provider node.
pub struct Node {
    /// Validated configuration.
    pub(crate) config: NodeConfig,
    /// Content by CID: local blocks first (also served at `/ipfs`), then the configured
    /// gateways; every block verified, verified blocks cached.
    pub(crate) store: Store,
    /// Runs guests.
    pub(crate) runtime: Runtime,
    /// Payment slot.
    pub(crate) admission: Arc<dyn Admission>,
    /// Callable CID → deployment, filled once per CID even under concurrent first calls;
    /// LRU bounded in (estimated) bytes by `max_cached_spec_bytes`.
    deployments: OnceLru<Arc<Deployment>>,
    /// Envelope/spec fetches running before payment (`max_concurrent_spec_fetches`):
    /// an unpaid caller can make the node fetch, but not without bound.
    spec_fetches: Semaphore,
    /// Counters for `/metrics` (shared with compile tasks).
    pub(crate) metrics: Arc<Metrics>,
    /// Bounds artifact fetches and compiles.
    compiles: CompileGate,
    /// Provider caps applied to every spec.
    caps: Limits,
    /// When an answer stops being buffered and streams instead.
    stream_policy: StreamPolicy,
    /// X25519 secret that opens envelopes sealed to `config.address` (from
    /// `config.x25519_key_file`); wiped from memory on drop.
    seal_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

impl Node {
    /// Opens the data dir, builds the engine and the fetcher. Call before binding.
    pub fn new(config: NodeConfig, admission: Box<dyn Admission>) -> Result<Self, ProviderError> {
        config.validate()?;
        let caps = Limits {
            timeout: Duration::from_millis(config.max_timeout_ms),
            memory_bytes: mib(config.max_memory_mb),
            max_request_bytes: usize::try_from(config.max_request_bytes).unwrap_or(usize::MAX),
            max_response_bytes: usize::try_from(config.max_response_bytes).unwrap_or(usize::MAX),
        };
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(config.data_dir.join("compiled")),
            max_instances: u32::try_from(config.max_instances).unwrap_or(u32::MAX),
            max_limits: caps,
            max_memory_cache_bytes: config.max_compiled_memory_bytes,
            max_disk_cache_bytes: config.max_compiled_disk_bytes,
            process: config.process_config(),
            ..RuntimeConfig::default()
        })
        .map_err(|e| ProviderError::Config(e.to_string()))?;
        let limits = khachapuri_store::Limits {
            block_timeout: config.fetch_timeout(),
            max_dag_bytes: config.max_artifact_bytes,
            max_walk_blocks: config.max_walk_blocks,
            max_depth: config.max_walk_depth,
            walk_timeout: Duration::from_millis(config.walk_timeout_ms),
            ..khachapuri_store::Limits::default()
        };
        let open_error = |e| ProviderError::Config(format!("cannot open the block store: {e}"));
        // Everything this node fetches is a cache, bounded by `max_block_cache_bytes`.
        let blocks = Blockstore::open(config.data_dir.join("blocks"))
            .and_then(|b| b.with_cache_cap(config.max_block_cache_bytes))
            .map_err(open_error)?;
        let store = Store::new(
            blocks,
            StoreConfig {
                gateways: config.gateways.clone(),
                kubo_rpc: None,
                limits,
            },
        )
        .map_err(open_error)?;
        let seal_key = match &config.x25519_key_file {
            Some(path) => Some(zeroize::Zeroizing::new(
                khachapuri_seal::load_key_file(path)
                    .map_err(|e| ProviderError::Config(e.to_string()))?
                    .0,
            )),
            None => None,
        };
        let compiles = CompileGate::new(
            config.max_concurrent_compiles,
            config.max_queued_compiles,
            Duration::from_millis(config.compile_timeout_ms),
        );
        let stream_policy = StreamPolicy {
            after: Duration::from_millis(config.stream_after_ms),
            after_bytes: usize::try_from(config.stream_after_bytes).unwrap_or(usize::MAX),
            write_grace: Duration::from_millis(config.stream_write_timeout_ms),
        };
        Ok(Self {
            deployments: OnceLru::new(config.max_cached_spec_bytes),
            spec_fetches: Semaphore::new(config.max_concurrent_spec_fetches),
            config,
            store,
            runtime,
            admission: Arc::from(admission),
            metrics: Arc::default(),
            compiles,
            caps,
            stream_policy,
            seal_key,
        })
    }

    /// The X25519 public key specs are sealed to, as 0x-hex (`None` without a key file):
    /// published in `/.well-known/khachapuri` so a deployer can check the key the registry
    /// gave it against the node itself.
    pub fn x25519_public_hex(&self) -> Option<String> {
        let secret = self.seal_key.as_deref()?;
        Some(khachapuri_chain::alloy_hex::encode_prefixed(
            khachapuri_seal::public_key(secret),
        ))
    }

    /// The X25519 public key specs are sealed to (`None` without a key file): bound into
    /// attestation evidence.
    pub fn x25519_public(&self) -> Option<[u8; 32]> {
        Some(khachapuri_seal::public_key(self.seal_key.as_deref()?))
    }

    /// Fetches, opens and compiles the deployment behind `cid` ahead of its first call
    /// (p2p provisioning), through the same bounded fetch and compile paths a call takes.
    pub async fn provision(&self, cid: &str) -> Result<Arc<Deployment>, ProviderError> {
        let d = self.deployment(cid).await?;
        self.prepared(&d).await?;
        Ok(d)
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Runs one call of the function behind `cid`, `rest` being the path after it.
    pub async fn call(
        &self,
        cid: &str,
        rest: &str,
        req: Request<Body>,
    ) -> Result<Response<Body>, ProviderError> {
        let span = tracing::info_span!("call", %cid, method = %req.method());
        async move {
            // Spec first (small), then payment, and only then artifact and compile.
            let deployment = self.deployment(cid).await.inspect_err(|_| {
                Metrics::inc(&self.metrics.calls_refused);
            })?;
            let call = CallInfo {
                spec: &deployment.spec,
                headers: req.headers(),
                limits: CallLimits {
                    timeout_ms: u64::try_from(deployment.limits.timeout.as_millis())
                        .unwrap_or(u64::MAX),
                    max_response_bytes: deployment.limits.max_response_bytes as u64,
                },
                client: crate::server::client_ip(req.extensions()),
            };
            let ticket = self.admission.admit(call).await.inspect_err(|_| {
                Metrics::inc(&self.metrics.calls_refused);
            })?;
            // From here on a failure before the guest runs gives the ticket back.
            let ticket = TicketGuard {
                admission: self.admission.clone(),
                ticket: Some(ticket),
            };
            let prepared = self.prepared(&deployment).await.inspect_err(|_| {
                Metrics::inc(&self.metrics.calls_refused);
            })?;
            // The caller's voucher is between caller and provider: the function never sees it.
            let mut req = req;
            req.headers_mut()
                .remove(khachapuri_payments::PAYMENT_HEADER);
            let opts = CallOptions {
                env: &deployment.env,
                limits: deployment.limits,
                path: if rest.is_empty() { "/" } else { rest },
            };
            let running = Running {
                ticket,
                metrics: self.metrics.clone(),
                started: Instant::now(),
                timeout: deployment.limits.timeout,
                policy: self.stream_policy,
                _in_flight: InFlight::enter(&self.metrics),
            };
            match self.runtime.handle_stream(&prepared, req, &opts).await {
                Ok(resp) => respond(resp, running).await,
                Err(e) if e.http_status() == 503 => {
                    // Never ran: the ticket goes back uncharged.
                    Metrics::inc(&self.metrics.calls_busy);
                    Err(ProviderError::from(e))
                }
                Err(e) => Err(running.fault(e, 0).await),
            }
        }
        .instrument(span)
        .await
    }

    /// Resolves a callable CID to its deployment spec (cached in memory); fetches only
    /// the envelope, under `max_spec_bytes`.
    pub async fn deployment(&self, cid: &str) -> Result<Arc<Deployment>, ProviderError> {
        if let Some(d) = self.deployments.get(cid) {
            Metrics::inc(&self.metrics.spec_cache_hits);
            return Ok(d);
        }
        Metrics::inc(&self.metrics.spec_cache_misses);
        self.deployments
            .get_or_try_init(cid, |d| d.approx_bytes(), || self.load(cid))
            .await
    }

    /// How full each of the node's bounded caches is: for `/metrics`, and for tests that
    /// check no cache outgrows its cap however many deployments are called.
    pub fn cache_usage(&self) -> NodeCacheUsage {
        NodeCacheUsage {
            deployments: self.deployments.usage(),
            prepared: self.runtime.memory_cache_usage(),
            compiled_disk: self.runtime.disk_cache_usage(),
            unpacked_disk: self.runtime.unpacked_cache_usage(),
            blocks: self.store.local().usage(),
        }
    }

    /// A permit to fetch an envelope before payment; none left answers 503 at once
    /// rather than queueing unpaid work.
    fn spec_fetch_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ProviderError> {
        self.spec_fetches
            .try_acquire()
            .map_err(|_| ProviderError::SpecFetchBusy(self.config.max_concurrent_spec_fetches))
    }

    /// The spec behind a callable CID: the cached deployment's, else the envelope opened
    /// (and its signature checked) without fetching or compiling the artifact, so naming a
    /// deployment (a top-up) costs no more than an unpaid call.
    pub async fn spec_of(&self, cid_text: &str) -> Result<Arc<Spec>, ProviderError> {
        if let Some(d) = self.deployments.peek(cid_text) {
            return Ok(Arc::new(d.spec.clone()));
        }
        let cid: Cid = cid_text
            .parse()
            .map_err(|_| ProviderError::BadCid(cid_text.to_string()))?;
        let _permit = self.spec_fetch_permit()?;
        let envelope_bytes = self.fetch(&cid, self.config.max_spec_bytes).await?;
        let envelope = Envelope::from_slice(&envelope_bytes).map_err(|e| {
            ProviderError::Spec(format!("{cid} is not a deployment this node can run: {e}"))
        })?;
        Ok(Arc::new(self.open(envelope)?))
    }

    async fn load(&self, cid_text: &str) -> Result<Arc<Deployment>, ProviderError> {
        let cid: Cid = cid_text
            .parse()
            .map_err(|_| ProviderError::BadCid(cid_text.to_string()))?;
        let permit = self.spec_fetch_permit()?;
        let envelope_bytes = self.fetch(&cid, self.config.max_spec_bytes).await?;
        drop(permit);
        let envelope = Envelope::from_slice(&envelope_bytes).map_err(|e| {
            ProviderError::Spec(format!("{cid} is not a deployment this node can run: {e}"))
        })?;
        let spec = self.open(envelope)?;
        let kind = match spec.runtime {
            RuntimeKind::WasiHttp => GuestKind::WasiHttp,
            RuntimeKind::Wagi => GuestKind::Wagi,
            RuntimeKind::Process => GuestKind::Process,
        };
        if !self.config.runs(kind.as_str()) || !self.runtime.runs(kind) {
            return Err(ProviderError::RuntimeUnavailable {
                runtime: kind.as_str(),
                offered: self.config.runtimes.join(", "),
            });
        }
        let artifact: Cid = spec.artifact.parse().map_err(|_| {
            ProviderError::Spec(format!("artifact {:?} is not a CID", spec.artifact))
        })?;
        let limits = self.limits_for(&spec);
        let env = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        tracing::info!(artifact = %artifact, runtime = %spec.runtime, "deployment spec ready");
        Ok(Arc::new(Deployment {
            spec,
            env,
            limits,
            artifact,
            kind,
        }))
    }

    /// The deployment's prepared code: from memory at once, else (disk cache, or fetch
    /// under `max_artifact_bytes` and compile) through the compile gate. Only called for
    /// admitted calls.
    async fn prepared(&self, d: &Deployment) -> Result<Prepared, ProviderError> {
        let key = d.spec.artifact.clone();
        if let Some(p) = self.runtime.get(&key) {
            return Ok(p);
        }
        let (runtime, store, metrics) = (
            self.runtime.clone(),
            self.store.clone(),
            self.metrics.clone(),
        );
        let (artifact, kind, max) = (d.artifact, d.kind, self.config.max_artifact_bytes);
        self.compiles
            .run(async move {
                if let Ok(Some(p)) = runtime.load_cached(&key, kind).await {
                    return Ok(p);
                }
                Metrics::inc(&metrics.artifact_fetches);
                let wasm = store
                    .read_file(artifact, max)
                    .await
                    .map_err(|e| ProviderError::from_store(&artifact, e))?;
                Ok(runtime.prepare(&key, kind, wasm).await?)
            })
            .await
    }

    /// Opens an envelope: public specs as they are, sealed ones with this node's X25519
    /// key when sealed to its address; either way the owner's signature must hold. The
    /// decrypted spec only ever lives in memory (the deployments cache).
    fn open(&self, envelope: Envelope) -> Result<Spec, ProviderError> {
        let spec = match envelope {
            Envelope::Public { spec } => {
                if spec.provider.is_some() {
                    return Err(ProviderError::Forbidden(
                        "a public spec must not name a provider".into(),
                    ));
                }
                spec
            }
            Envelope::Sealed { ref provider, .. } => {
                let (Some(address), Some(key)) = (&self.config.address, &self.seal_key) else {
                    let missing = if self.config.address.is_none() {
                        "no operator address"
                    } else {
                        "no X25519 key (x25519_key_file)"
                    };
                    return Err(ProviderError::Forbidden(format!(
                        "this deployment is sealed to provider {provider}; this node has {missing} and serves public deployments only"
                    )));
                };
                khachapuri_seal::open(&envelope, address, key)
                    .map_err(|e| ProviderError::Forbidden(e.to_string()))?
            }
        };
        khachapuri_chain::verify_spec(&spec).map_err(|e| {
            ProviderError::Forbidden(format!(
                "the deployment's owner signature does not hold: {e}"
            ))
        })?;
        Ok(spec)
    }

    fn limits_for(&self, spec: &Spec) -> Limits {
        let asked = Limits {
            timeout: Duration::from_millis(
                spec.limits
                    .timeout_ms
                    .unwrap_or(self.config.default_timeout_ms),
            ),
            memory_bytes: mib(spec
                .limits
                .memory_mb
                .unwrap_or(self.config.default_memory_mb)),
            max_request_bytes: spec
                .limits
                .max_request_bytes
                .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            max_response_bytes: spec
                .limits
                .max_response_bytes
                .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX)),
        };
        asked.capped_by(&self.caps)
    }

    async fn fetch(&self, cid: &Cid, max: u64) -> Result<Bytes, ProviderError> {
        self.store
            .read_file(*cid, max)
            .await
            .map_err(|e| ProviderError::from_store(cid, e))
    }

    /// Runtime counters for `/metrics`.
    pub(crate) fn runtime_metrics(&self) -> khachapuri_runtime::MetricsSnapshot {
        self.runtime.metrics()
    }
}

fn mib(m: u64) -> usize {
    usize::try_from(m.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn deployment_debug_never_shows_env_values() {
        let mut spec = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        spec.env
            .insert("DB_PASSWORD".into(), "correct-horse-battery".into());
        let d = Deployment {
            env: vec![("DB_PASSWORD".into(), "correct-horse-battery".into())],
            spec,
            limits: Limits::default(),
            artifact: Cid::raw(b"wasm"),
            kind: GuestKind::WasiHttp,
        };
        for out in [format!("{d:?}"), format!("{d:#?}")] {
            assert!(
                !out.contains("correct-horse-battery"),
                "secret leaked: {out}"
            );
            assert!(out.contains("DB_PASSWORD"), "names stay visible: {out}");
            assert!(out.contains(khachapuri_types::REDACTED), "{out}");
        }
    }

    #[test]
    fn dropping_a_deployment_wipes_its_secrets() {
        let mut spec = Spec::new("bafkreiabc", RuntimeKind::WasiHttp, 1_700_000_000);
        spec.env
            .insert("DB_PASSWORD".into(), "correct-horse".into());
        spec.sponsor_voucher = Some("bearer-voucher".into());
        let mut d = Deployment {
            env: vec![("DB_PASSWORD".into(), "correct-horse".into())],
            spec,
            limits: Limits::default(),
            artifact: Cid::raw(b"wasm"),
            kind: GuestKind::WasiHttp,
        };
        d.wipe();
        assert_eq!(d.env, vec![("DB_PASSWORD".to_string(), String::new())]);
        assert_eq!(d.spec.env["DB_PASSWORD"], "");
        assert_eq!(d.spec.sponsor_voucher, None);
    }
}
