//! Names to upstreams: the registry record of a name, its endpoint parsed, its host
//! resolved once and every address checked against the [`AddressPolicy`]. Results (and
//! unknown names) are cached with a TTL in a bounded LRU, cleared by registry events; reads
//! of the registry and DNS are bounded by a semaphore, so a flood of random names costs a
//! bounded number of lookups.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use khachapuri_chain::{Chain, ProviderRecord, RegistryClient};
use lru::LruCache;
use tokio::sync::Semaphore;

use crate::addr::AddressPolicy;
use crate::config::GatewayConfig;
use crate::error::GatewayError;

/// A boxed future, so [`Registry`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where records come from: the on-chain registry in production ([`ChainRegistry`]); a
/// trait so the routing and caching can be tested against a registry a test controls.
pub trait Registry: Send + Sync + 'static {
    /// The record of `name`, `None` when unregistered.
    fn resolve<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderRecord>, GatewayError>>;
    /// Every record (public routing picks among them).
    fn list(&self) -> BoxFuture<'_, Result<Vec<ProviderRecord>, GatewayError>>;
    /// The per-request price (micro-USDC) of pricing table `id`, `None` when it has none.
    fn price_per_request(
        &self,
        id: khachapuri_chain::U256,
    ) -> BoxFuture<'_, Result<Option<u64>, GatewayError>>;
}

/// The on-chain registry.
#[derive(Clone)]
pub struct ChainRegistry {
    client: RegistryClient,
}

impl ChainRegistry {
    /// Reads the Registry at `address` through `chain` (read-only).
    pub fn new(chain: &Chain, address: khachapuri_chain::Address) -> Self {
        Self {
            client: RegistryClient::new(chain, address),
        }
    }
}

fn registry_err(e: khachapuri_chain::ChainError) -> GatewayError {
    GatewayError::Registry(e.to_string())
}

impl Registry for ChainRegistry {
    fn resolve<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProviderRecord>, GatewayError>> {
        Box::pin(async move { self.client.resolve(name).await.map_err(registry_err) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ProviderRecord>, GatewayError>> {
        Box::pin(async move { self.client.list().await.map_err(registry_err) })
    }

    fn price_per_request(
        &self,
        id: khachapuri_chain::U256,
    ) -> BoxFuture<'_, Result<Option<u64>, GatewayError>> {
        Box::pin(async move {
            if id.is_zero() {
                return Ok(None);
            }
            let table = self.client.table(id).await.map_err(registry_err)?;
            Ok(table.map(|t| u64::try_from(t.per_request).unwrap_or(u64::MAX)))
        })
    }
}

/// How to reach a provider.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Over TCP to checked addresses.
    Direct {
        /// `http` or `https`.
        scheme: String,
        /// The endpoint's host as written (the Host header and TLS name).
        host: String,
        /// The endpoint's port.
        port: u16,
        /// Path prefix of the endpoint (`""` or `/base`), put before `/{cid}`.
        prefix: String,
        /// The addresses the host resolved to, every one allowed by the policy.
        addrs: Vec<SocketAddr>,
    },
    /// The record names this gateway's tunnel URL: the provider dials in.
    Tunnel,
}

/// A resolved name.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The registry record.
    pub record: ProviderRecord,
    /// How to reach it.
    pub upstream: Upstream,
}

struct Entry {
    at: Instant,
    value: Result<Arc<Resolved>, Arc<GatewayError>>,
}

/// Resolves and caches names.
pub struct Resolver {
    registry: Arc<dyn Registry>,
    policy: AddressPolicy,
    domain: String,
    cache: Mutex<LruCache<String, Entry>>,
    lookups: Semaphore,
    ttl: Duration,
    negative_ttl: Duration,
    timeout: Duration,
}

impl Resolver {
    /// A resolver over `registry` with `config`'s limits and `policy`.
    pub fn new(registry: Arc<dyn Registry>, policy: AddressPolicy, config: &GatewayConfig) -> Self {
        let cap = NonZeroUsize::new(config.max_cached_names.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            registry,
            policy,
            domain: config.domain.to_ascii_lowercase(),
            cache: Mutex::new(LruCache::new(cap)),
            lookups: Semaphore::new(config.max_concurrent_lookups.max(1)),
            ttl: Duration::from_secs(config.resolve_ttl_secs),
            negative_ttl: Duration::from_secs(config.negative_ttl_secs),
            timeout: Duration::from_millis(config.lookup_timeout_ms),
        }
    }

    /// The registry this resolver reads.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// The address policy applied to every upstream.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Forgets every cached name (a registry event arrived).
    pub fn clear(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Names currently cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The upstream of `name`: from the cache while fresh, else from the registry and DNS.
    pub async fn resolve(&self, name: &str) -> Result<Arc<Resolved>, GatewayError> {
        if !valid_name(name) {
            return Err(GatewayError::UnknownName(name.to_string()));
        }
        if let Some(hit) = self.cached_entry(name) {
            return hit.map_err(|e| clone_err(&e));
        }
        let _permit = self
            .lookups
            .try_acquire()
            .map_err(|_| GatewayError::Busy("too many name lookups in flight"))?;
        let value = self.lookup(name).await;
        let cacheable = match &value {
            Ok(_) => true,
            Err(e) => !matches!(e, GatewayError::Registry(_) | GatewayError::Busy(_)),
        };
        let value = value.map(Arc::new).map_err(Arc::new);
        if cacheable {
            if let Ok(mut cache) = self.cache.lock() {
                cache.put(
                    name.to_string(),
                    Entry {
                        at: Instant::now(),
                        value: value.clone(),
                    },
                );
            }
        }
        value.map_err(|e| clone_err(&e))
    }

    fn cached_entry(&self, name: &str) -> Option<Result<Arc<Resolved>, Arc<GatewayError>>> {
        let mut cache = self.cache.lock().ok()?;
        let entry = cache.get(name)?;
        let ttl = if entry.value.is_ok() {
            self.ttl
        } else {
            self.negative_ttl
        };
        if entry.at.elapsed() < ttl {
            return Some(entry.value.clone());
        }
        cache.pop(name);
        None
    }

    async fn lookup(&self, name: &str) -> Result<Resolved, GatewayError> {
        let record = tokio::time::timeout(self.timeout, self.registry.resolve(name))
            .await
            .map_err(|_| GatewayError::Registry("the registry did not answer in time".into()))??
            .ok_or_else(|| GatewayError::UnknownName(name.to_string()))?;
        let upstream = self.upstream_of(&record).await?;
        Ok(Resolved { record, upstream })
    }

    /// Parses the record's endpoint, resolves its host once and checks every address.
    pub async fn upstream_of(&self, record: &ProviderRecord) -> Result<Upstream, GatewayError> {
        let bad = |reason: &str| GatewayError::BadEndpoint {
            name: record.name.clone(),
            url: record.url.clone(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(&record.url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https endpoints are forwarded to"));
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(bad("an endpoint carries no credentials or query"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("no host"))?
            .to_ascii_lowercase();
        if host == format!("{}.{}", record.name, self.domain) {
            return Ok(Upstream::Tunnel);
        }
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let addrs = self.addresses(&host, port, record).await?;
        Ok(Upstream::Direct {
            scheme: url.scheme().to_string(),
            host,
            port,
            prefix: url.path().trim_end_matches('/').to_string(),
            addrs,
        })
    }

    /// Resolves `host` once (an IP literal is taken as is) and refuses the endpoint when
    /// any answer is in a denied range: a DNS name mixing a public and a private answer is
    /// a rebinding attempt, not a provider.
    async fn addresses(
        &self,
        host: &str,
        port: u16,
        record: &ProviderRecord,
    ) -> Result<Vec<SocketAddr>, GatewayError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if let Ok(ip) = literal.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            tokio::time::timeout(self.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| GatewayError::Unreachable {
                    name: record.name.clone(),
                    reason: format!("DNS lookup of {host} timed out"),
                })?
                .map_err(|e| GatewayError::Unreachable {
                    name: record.name.clone(),
                    reason: format!("DNS lookup of {host}: {e}"),
                })?
                .take(16)
                .collect()
        };
        if addrs.is_empty() {
            return Err(GatewayError::Unreachable {
                name: record.name.clone(),
                reason: format!("{host} has no addresses"),
            });
        }
        for addr in &addrs {
            self.policy
                .check(*addr)
                .map_err(|why| GatewayError::Forbidden {
                    name: record.name.clone(),
                    addr: *addr,
                    why,
                })?;
        }
        Ok(addrs)
    }
}

/// A registry name: 1–63 of `a-z0-9-`, not starting or ending with `-` (the contract's
/// rule; anything else is unknown without asking the chain).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Cached errors are shared; the caller gets its own copy of the same answer.
fn clone_err(e: &GatewayError) -> GatewayError {
    match e {
        GatewayError::UnknownName(n) => GatewayError::UnknownName(n.clone()),
        GatewayError::BadEndpoint { name, url, reason } => GatewayError::BadEndpoint {
            name: name.clone(),
            url: url.clone(),
            reason: reason.clone(),
        },
        GatewayError::Forbidden { name, addr, why } => GatewayError::Forbidden {
            name: name.clone(),
            addr: *addr,
            why: *why,
        },
        GatewayError::Unreachable { name, reason } => GatewayError::Unreachable {
            name: name.clone(),
            reason: reason.clone(),
        },
        other => GatewayError::Registry(other.to_string()),
    }
}

/// Watches the registry's events and clears `resolver`'s cache on each batch, so a
/// re-pointed or dropped name takes effect within one poll instead of one TTL.
pub async fn watch_registry(
    chain: Chain,
    registry: khachapuri_chain::Address,
    from_block: u64,
    poll: Duration,
    resolver: Arc<Resolver>,
    on_change: impl Fn() + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut poller = khachapuri_chain::EventPoller::<khachapuri_chain::RegistryEvent>::new(
        &chain, registry, from_block,
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(poll) => {}
        }
        match tokio::time::timeout(Duration::from_secs(30), poller.poll()).await {
            Ok(Ok(events)) if !events.is_empty() => {
                tracing::debug!(
                    events = events.len(),
                    "registry changed; clearing the name cache"
                );
                resolver.clear();
                on_change();
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot poll registry events"),
            Err(_) => tracing::warn!("registry event poll timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        for ok in ["dev", "dev2", "a", "my-node-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Dev",
            "a.b",
            "a_b",
            &"x".repeat(64),
            "bafy…",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
