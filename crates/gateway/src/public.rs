//! Routing of public deployments (`/{cid}/…` with no provider named): any provider can
//! serve a public spec, so the gateway picks one.
//!
//! - **Filter**: registered providers whose endpoint passes the address policy, within the
//!   price cap and region, not ejected after a recent failure.
//! - **Rank**: a peak-EWMA latency estimate (a slow answer raises it at once, fast ones
//!   lower it gradually) × (outstanding requests + 1), × a price factor, ÷ a reputation
//!   factor.
//! - **Pick**: power of two choices (two random candidates, the better one), which spreads
//!   load without every gateway herding onto the single best provider.
//! - **Retry** on another provider only when the request never reached a function
//!   (connection refused, tunnel down, provider full) or the method is idempotent, only for
//!   bodies small enough to replay, within a retry budget.
//! - **Never charge twice**: a request carrying a voucher goes only to the provider the
//!   voucher pays, and is never retried elsewhere (another provider could not redeem it;
//!   the one it names charges it once).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use khachapuri_chain::Address;
use khachapuri_types::Cid;
use rand::Rng as _;

use crate::body::{full, proxied, BoxError, ProxyBody};
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::proxy::Incoming;
use crate::resolve::Resolver;

/// Largest request body kept in memory so the request can be replayed on another
/// provider; larger bodies get one attempt.
const MAX_REPLAY_BYTES: u64 = 64 * 1024;
/// Most providers tried for one request.
const MAX_ATTEMPTS: usize = 3;
/// How long a provider that failed is left out.
const EJECT: Duration = Duration::from_secs(10);
/// Decay time of the latency estimate.
const TAU: Duration = Duration::from_secs(10);
/// Latency assumed for a provider never measured: optimistic, so new ones get tried.
const DEFAULT_LATENCY: f64 = 0.005;
/// The response header naming the provider that answered, so a client can follow up
/// (pay, or call again) at the same one.
pub const PROVIDER_HEADER: &str = "khachapuri-provider";

/// One request as handed to a provider by public routing.
pub struct Attempt {
    /// The request (the gateway prepares it for the chosen provider).
    pub request: Request<ProxyBody>,
    /// Path and query the provider sees.
    pub path: String,
    /// The client side.
    pub incoming: Incoming,
}

#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    operator: Address,
    price: Option<u64>,
    reputation: u64,
}

#[derive(Debug, Clone)]
struct Stats {
    ewma: f64,
    stamp: Instant,
    outstanding: u32,
    ejected_until: Option<Instant>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            ewma: DEFAULT_LATENCY,
            stamp: Instant::now(),
            outstanding: 0,
            ejected_until: None,
        }
    }
}

impl Stats {
    /// Peak EWMA: a sample above the estimate replaces it; below, it decays towards the
    /// sample with weight `exp(-elapsed / TAU)`.
    fn observe(&mut self, rtt: f64, now: Instant) {
        if rtt > self.ewma {
            self.ewma = rtt;
        } else {
            let elapsed = now.saturating_duration_since(self.stamp).as_secs_f64();
            let w = (-elapsed / TAU.as_secs_f64()).exp();
            self.ewma = self.ewma * w + rtt * (1.0 - w);
        }
        self.stamp = now;
    }
}

#[derive(Default)]
struct State {
    candidates: Vec<Candidate>,
    fetched: Option<Instant>,
    stats: HashMap<String, Stats>,
}

/// Retries allowed as a fraction of requests: each request adds `ratio` tokens (up to a
/// cap), each retry spends one.
struct RetryBudget {
    milli_tokens: AtomicU64,
    ratio_milli: u64,
}

impl RetryBudget {
    const CAP_MILLI: u64 = 100_000;

    fn new(ratio: f64) -> Self {
        Self {
            milli_tokens: AtomicU64::new(10_000),
            ratio_milli: (ratio.clamp(0.0, 1.0) * 1000.0) as u64,
        }
    }

    fn deposit(&self) {
        let _ = self
            .milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + self.ratio_milli).min(Self::CAP_MILLI))
            });
    }

    fn withdraw(&self) -> bool {
        self.milli_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(1000)
            })
            .is_ok()
    }
}

/// Public routing state.
pub struct Public {
    resolver: Arc<Resolver>,
    state: Mutex<State>,
    refreshing: tokio::sync::Mutex<()>,
    refresh_every: Duration,
    max_price: Option<u64>,
    region: Option<String>,
    budget: RetryBudget,
}

impl Public {
    /// Public routing over `resolver`'s registry with `config`'s filters.
    pub fn new(config: &GatewayConfig, resolver: Arc<Resolver>) -> Self {
        Self {
            resolver,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
            refresh_every: Duration::from_secs(config.providers_refresh_secs.max(1)),
            max_price: config.max_price_per_request,
            region: config.region.clone(),
            budget: RetryBudget::new(config.retry_budget_ratio),
        }
    }

    /// Forgets the provider list (a registry event), so the next request reloads it.
    pub fn invalidate(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.fetched = None;
        }
    }

    /// Names of the providers public routing currently picks among.
    pub fn candidates(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| s.candidates.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    async fn refresh(&self) -> Result<(), GatewayError> {
        let fresh = |s: &State| s.fetched.is_some_and(|t| t.elapsed() < self.refresh_every);
        if self.state.lock().map(|s| fresh(&s)).unwrap_or(false) {
            return Ok(());
        }
        let _one = self.refreshing.lock().await;
        if self.state.lock().map(|s| fresh(&s)).unwrap_or(false) {
            return Ok(());
        }
        let registry = self.resolver.registry().clone();
        let records = registry.list().await?;
        let mut candidates = Vec::new();
        for r in records {
            if let Some(region) = &self.region {
                if !r.regions.iter().any(|x| x == region) {
                    continue;
                }
            }
            let price = registry.price_per_request(r.pricing_table).await?;
            if let (Some(cap), Some(p)) = (self.max_price, price) {
                if p > cap {
                    continue;
                }
            }
            // An endpoint the policy refuses is never a candidate.
            if self.resolver.resolve(&r.name).await.is_err() {
                continue;
            }
            candidates.push(Candidate {
                name: r.name.clone(),
                operator: r.operator,
                price,
                reputation: u64::try_from(r.reputation).unwrap_or(u64::MAX),
            });
        }
        if let Ok(mut s) = self.state.lock() {
            s.candidates = candidates;
            s.fetched = Some(Instant::now());
        }
        Ok(())
    }

    /// Picks a provider by power of two choices among the candidates not in `tried`
    /// (and only `only` when a voucher pins the request).
    fn pick(&self, tried: &[String], only: Option<Address>) -> Option<String> {
        let mut state = self.state.lock().ok()?;
        let now = Instant::now();
        let State {
            candidates, stats, ..
        } = &mut *state;
        let eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| !tried.contains(&c.name))
            .filter(|c| only.is_none_or(|a| a == c.operator))
            .filter(|c| {
                stats
                    .get(&c.name)
                    .and_then(|s| s.ejected_until)
                    .is_none_or(|t| t <= now || only.is_some())
            })
            .collect();
        let min_price = eligible.iter().filter_map(|c| c.price).min().unwrap_or(0);
        let score = |c: &Candidate| {
            let s = stats.get(&c.name).cloned().unwrap_or_default();
            let price = c.price.unwrap_or(min_price) as f64;
            let price_factor = 1.0 + price / 1000.0;
            let reputation_factor = 1.0 + 0.1 * (1.0 + c.reputation as f64).ln();
            s.ewma * f64::from(s.outstanding + 1) * price_factor / reputation_factor
        };
        let chosen = match eligible.len() {
            0 => return None,
            1 => eligible[0],
            n => {
                let mut rng = rand::thread_rng();
                let a = rng.gen_range(0..n);
                let mut b = rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                if score(eligible[a]) <= score(eligible[b]) {
                    eligible[a]
                } else {
                    eligible[b]
                }
            }
        };
        let name = chosen.name.clone();
        stats.entry(name.clone()).or_default().outstanding += 1;
        Some(name)
    }

    fn finish(&self, name: &str, started: Instant, failed: bool) {
        if let Ok(mut s) = self.state.lock() {
            let now = Instant::now();
            let stats = s.stats.entry(name.to_string()).or_default();
            stats.outstanding = stats.outstanding.saturating_sub(1);
            if failed {
                stats.ejected_until = Some(now + EJECT);
            } else {
                stats.ejected_until = None;
                stats.observe(now.duration_since(started).as_secs_f64(), now);
            }
        }
    }

    /// Routes one public request; `send` forwards an attempt to a named provider.
    pub async fn forward<B, F, Fut>(
        &self,
        cid: Cid,
        req: Request<B>,
        path: &str,
        incoming: &Incoming,
        send: F,
    ) -> Result<Response<ProxyBody>, GatewayError>
    where
        B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
        B::Error: Into<BoxError>,
        F: Fn(String, Attempt) -> Fut,
        Fut: std::future::Future<Output = Result<Response<ProxyBody>, GatewayError>>,
    {
        self.refresh().await?;
        self.budget.deposit();
        let only = pinned_provider(req.headers());
        let (parts, body) = req.into_parts();
        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        );
        let replay = replayable(&parts, &body);
        let mut body = Some(body);
        let mut saved: Option<Bytes> = None;
        if replay && only.is_none() {
            let b = body.take().map(|b| proxied(b, Duration::from_secs(30)));
            if let Some(b) = b {
                let collected = b.collect().await.map_err(|e| {
                    GatewayError::BadRoute(format!("cannot read the request body: {e}"))
                })?;
                saved = Some(collected.to_bytes());
            }
        }
        let mut tried = Vec::new();
        let mut last_err = None;
        while tried.len() < MAX_ATTEMPTS {
            let Some(name) = self.pick(&tried, only) else {
                break;
            };
            let request_body = match (&saved, body.take()) {
                (Some(bytes), _) => full(bytes.clone()),
                (None, Some(b)) => proxied(b, Duration::from_secs(3600)),
                (None, None) => break,
            };
            let mut request = Request::from_parts(parts.clone(), request_body);
            *request.extensions_mut() = http::Extensions::new();
            let started = Instant::now();
            let attempt = Attempt {
                request,
                path: path.to_string(),
                incoming: incoming.clone(),
            };
            let result = send(name.clone(), attempt).await;
            let never_ran = match &result {
                Ok(r) => r.status() == StatusCode::SERVICE_UNAVAILABLE,
                Err(e) => matches!(
                    e,
                    GatewayError::Unreachable { .. }
                        | GatewayError::TunnelDown(_)
                        | GatewayError::Forbidden { .. }
                        | GatewayError::BadEndpoint { .. }
                        | GatewayError::UnknownName(_)
                ),
            };
            let failed = never_ran || result.is_err();
            self.finish(&name, started, failed);
            tried.push(name.clone());
            let may_retry = saved.is_some()
                && only.is_none()
                && (never_ran || (failed && idempotent))
                && self.budget.withdraw();
            match result {
                Ok(mut response) if !(may_retry && never_ran) => {
                    if let Ok(v) = HeaderValue::from_str(&name) {
                        response.headers_mut().insert(PROVIDER_HEADER, v);
                    }
                    return Ok(response);
                }
                Ok(_) => {
                    last_err = Some(GatewayError::NoProvider(format!("{name} is full")));
                }
                Err(e) if may_retry => last_err = Some(e),
                Err(e) => return Err(e),
            }
            tracing::debug!(%cid, provider = %name, "retrying a public call elsewhere");
        }
        Err(last_err.unwrap_or_else(|| {
            GatewayError::NoProvider(match only {
                Some(a) => format!("the voucher pays {a}, which is not a public route here"),
                None => "no registered provider passes the filters".into(),
            })
        }))
    }
}

/// The provider a request's voucher pays, when it carries one.
fn pinned_provider(headers: &http::HeaderMap) -> Option<Address> {
    let value = headers
        .get(khachapuri_payments::PAYMENT_HEADER)?
        .to_str()
        .ok()?;
    khachapuri_payments::decode_payment(value)
        .ok()
        .map(|v| v.voucher.provider)
}

/// A body small enough to keep for a replay: empty, or with a length known up front.
fn replayable<B: http_body::Body>(parts: &http::request::Parts, body: &B) -> bool {
    if body.is_end_stream() {
        return true;
    }
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    declared.is_some_and(|n| n <= MAX_REPLAY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let t0 = Instant::now();
        let mut s = Stats::default();
        s.observe(0.100, t0);
        assert!(
            (s.ewma - 0.100).abs() < 1e-9,
            "a slow sample is taken at once"
        );
        s.observe(0.010, t0 + Duration::from_secs(10));
        assert!(s.ewma < 0.100 && s.ewma > 0.010, "{}", s.ewma);
        let before = s.ewma;
        s.observe(0.010, t0 + Duration::from_secs(40));
        assert!(s.ewma < before);
    }

    #[test]
    fn retry_budget_is_a_fraction_of_requests() {
        let b = RetryBudget::new(0.2);
        let mut granted = 0;
        for _ in 0..1000 {
            b.deposit();
            if b.withdraw() {
                granted += 1;
            }
        }
        // 10 initial tokens + 0.2 per request.
        assert!((200..=215).contains(&granted), "{granted}");
    }
}
