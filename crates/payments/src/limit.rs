//! The per-client limit on requests that cost a signature check.
//!
//! Recovering a voucher's signer (secp256k1 ecrecover) is the one expensive step a
//! stranger can make a provider take for free: a fresh random key signs a voucher in
//! microseconds, the provider spends far more checking it (and then reads the chain).
//! So vouchers the ledger does not already know, and top-ups, draw from a token bucket per
//! client address; re-sending a known voucher (prepaid calls) costs nothing and is never
//! limited.
//!
//! It lives here, next to the [`crate::Gate`] that decides which requests need the check,
//! rather than in the provider's HTTP layer: "what costs a signature check" is a fact of
//! the payment protocol. The HTTP side only supplies the client's address and turns
//! [`PaymentError::TooManySignatureChecks`] into `429` with `Retry-After`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{PaymentError, Result};

/// Whom a bucket belongs to: an IPv4 address, or the /64 network of an IPv6 address (one
/// IPv6 host usually owns a whole /64, so per-address buckets would be no limit at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The bucket of `ip`: IPv4 (also IPv4-mapped IPv6) as is, other IPv6 by /64.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The limit's settings (config keys of the same names in the provider's `[payments]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignatureLimits {
    /// Signature checks a client may cause per second, sustained; `0` turns the limit off.
    pub per_client_per_sec: f64,
    /// Checks a client may cause at once after being idle (the bucket's size).
    pub burst: u32,
    /// Clients whose buckets are remembered; past it the least recently seen is forgotten
    /// (it comes back with a full bucket, which only ever errs towards letting it in).
    pub max_tracked_clients: usize,
}

impl Default for SignatureLimits {
    /// 20 a second with bursts of 40, for up to 65 536 clients (a few MB at most).
    fn default() -> Self {
        Self {
            per_client_per_sec: 20.0,
            burst: 40,
            max_tracked_clients: 65_536,
        }
    }
}

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Position in the recency order.
    stamp: u64,
}

#[derive(Debug, Default)]
struct Buckets {
    by_client: HashMap<ClientKey, Bucket>,
    /// Recency order: stamp → client, oldest first.
    order: BTreeMap<u64, ClientKey>,
    next_stamp: u64,
}

/// Token buckets per client, bounded in the number of clients. Cheap: one mutex, one map
/// lookup, no allocation once a client is known.
#[derive(Debug)]
pub struct SignatureCheckLimiter {
    limits: SignatureLimits,
    buckets: Mutex<Buckets>,
    refused: AtomicU64,
}

impl SignatureCheckLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: SignatureLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(Buckets::default()),
            refused: AtomicU64::new(0),
        }
    }

    /// The settings.
    pub fn limits(&self) -> SignatureLimits {
        self.limits
    }

    /// Takes one signature check from `client`'s bucket, or refuses with
    /// [`PaymentError::TooManySignatureChecks`] saying when one is back.
    pub fn check(&self, client: ClientKey) -> Result<()> {
        self.check_at(client, Instant::now())
    }

    /// [`SignatureCheckLimiter::check`] at the instant `now` (tests drive the clock).
    pub fn check_at(&self, client: ClientKey, now: Instant) -> Result<()> {
        let SignatureLimits {
            per_client_per_sec: rate,
            burst,
            max_tracked_clients,
        } = self.limits;
        // Zero (or a NaN from a hand-built config) means no limit.
        if rate.is_nan() || rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(burst.max(1));
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut *b;
        let stamp = b.next_stamp;
        b.next_stamp = b.next_stamp.wrapping_add(1);
        let bucket = match b.by_client.get_mut(&client) {
            Some(bucket) => {
                b.order.remove(&bucket.stamp);
                let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
                bucket.refilled = now;
                bucket
            }
            None => {
                while b.by_client.len() >= max_tracked_clients.max(1) {
                    let Some((_, oldest)) = b.order.pop_first() else {
                        break;
                    };
                    b.by_client.remove(&oldest);
                }
                b.by_client.entry(client).or_insert(Bucket {
                    tokens: burst,
                    refilled: now,
                    stamp,
                })
            }
        };
        bucket.stamp = stamp;
        b.order.insert(stamp, client);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        let wait = ((1.0 - bucket.tokens) / rate).ceil();
        Err(PaymentError::TooManySignatureChecks {
            client: client.to_string(),
            per_sec: rate,
            retry_after_secs: if wait.is_finite() && wait >= 1.0 {
                wait as u64
            } else {
                1
            },
        })
    }

    /// Requests refused so far (for `/metrics`).
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Clients whose buckets are remembered now (for `/metrics`).
    pub fn tracked_clients(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_client
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn v4(last: u8) -> ClientKey {
        ClientKey::from_ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    fn limiter(rate: f64, burst: u32, max: usize) -> SignatureCheckLimiter {
        SignatureCheckLimiter::new(SignatureLimits {
            per_client_per_sec: rate,
            burst,
            max_tracked_clients: max,
        })
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let l = limiter(2.0, 5, 10);
        let t = Instant::now();
        for _ in 0..5 {
            l.check_at(v4(1), t).expect("within the burst");
        }
        match l.check_at(v4(1), t) {
            Err(PaymentError::TooManySignatureChecks {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(l.refused_total(), 1);
        // Another client has its own bucket.
        l.check_at(v4(2), t).expect("other client");
    }

    #[test]
    fn refills_at_the_rate_and_caps_at_the_burst() {
        let l = limiter(2.0, 3, 10);
        let t = Instant::now();
        for _ in 0..3 {
            l.check_at(v4(1), t).expect("burst");
        }
        assert!(l.check_at(v4(1), t).is_err());
        // Half a second at 2/s is one token back, and only one.
        let t1 = t + Duration::from_millis(500);
        l.check_at(v4(1), t1).expect("refilled");
        assert!(l.check_at(v4(1), t1).is_err());
        // A long idle refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            l.check_at(v4(1), t2).expect("full again");
        }
        assert!(l.check_at(v4(1), t2).is_err());
        // A slow rate says how long to wait.
        let slow = limiter(0.1, 1, 10);
        slow.check_at(v4(1), t).expect("first");
        match slow.check_at(v4(1), t) {
            Err(PaymentError::TooManySignatureChecks {
                retry_after_secs, ..
            }) => assert_eq!(retry_after_secs, 10),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn tracked_clients_are_bounded_oldest_first() {
        let l = limiter(1.0, 1, 3);
        let t = Instant::now();
        for i in 1..=3 {
            l.check_at(v4(i), t).expect("first check");
        }
        // Client 1 is seen again (and refused): now client 2 is the oldest.
        assert!(l.check_at(v4(1), t).is_err());
        l.check_at(v4(4), t).expect("new client");
        assert_eq!(l.tracked_clients(), 3);
        // 2 was forgotten (full bucket again, evicting 3); 1 was kept (still empty).
        l.check_at(v4(2), t).expect("forgotten client starts full");
        assert!(l.check_at(v4(1), t).is_err(), "recently seen: kept");
        assert_eq!(l.tracked_clients(), 3);
        for i in 0..100 {
            let _ = l.check_at(v4(10 + i), t);
        }
        assert_eq!(l.tracked_clients(), 3);
    }

    #[test]
    fn ipv6_is_bucketed_by_64_and_mapped_v4_as_v4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: Ipv6Addr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("ip");
        let (ka, kb, kc) = (
            ClientKey::from_ip(a.into()),
            ClientKey::from_ip(b.into()),
            ClientKey::from_ip(c.into()),
        );
        assert_eq!(ka, kb);
        assert_ne!(ka, kc);
        assert_eq!(ka.to_string(), "2001:db8:1:2::/64");
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(ClientKey::from_ip(mapped.into()), v4(7));
        let l = limiter(1.0, 1, 10);
        let t = Instant::now();
        l.check_at(ka, t).expect("first");
        assert!(l.check_at(kb, t).is_err(), "same /64, same bucket");
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let l = limiter(0.0, 1, 1);
        let t = Instant::now();
        for _ in 0..1000 {
            l.check_at(v4(1), t).expect("unlimited");
        }
        assert_eq!(l.tracked_clients(), 0);
    }
}
