//! The gateway's outstanding nonces: single use, expiring, bounded.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::handshake::Nonce;

/// Nonces the gateway issued and has not seen answered yet.
///
/// A nonce is consumed by [`NonceStore::take`] whether or not the answer then verifies,
/// so each is good for exactly one attempt; it also dies at its TTL. The store holds at
/// most `max` entries: when full, [`NonceStore::issue`] refuses instead of evicting, since
/// evicting would let a flood of handshakes cancel honest ones in flight (the gateway
/// answers `busy` and the provider retries). Expiry is lazy (on `issue`, `take` and
/// `len`), in TTL order, so every operation is amortised O(1).
#[derive(Debug)]
pub struct NonceStore {
    ttl: Duration,
    max: usize,
    live: HashMap<Nonce, Instant>,
    order: VecDeque<(Instant, Nonce)>,
}

impl NonceStore {
    /// A store whose nonces live `ttl` and of which at most `max` are outstanding.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            live: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Issues a fresh random nonce valid until `now + ttl`, or `None` when `max` are
    /// outstanding.
    pub fn issue(&mut self, now: Instant) -> Option<Nonce> {
        self.expire(now);
        if self.live.len() >= self.max {
            return None;
        }
        let nonce = Nonce(rand::random());
        let deadline = now + self.ttl;
        self.live.insert(nonce, deadline);
        self.order.push_back((deadline, nonce));
        Some(nonce)
    }

    /// Consumes `nonce`: true exactly once for an issued, unexpired nonce.
    pub fn take(&mut self, nonce: &Nonce, now: Instant) -> bool {
        self.expire(now);
        // The deadline queue keeps a stale entry; `expire` skips entries no longer live.
        self.live
            .remove(nonce)
            .is_some_and(|deadline| now < deadline)
    }

    /// Outstanding nonces, after dropping the expired ones.
    pub fn len(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.live.len()
    }

    /// Whether no nonce is outstanding.
    pub fn is_empty(&mut self, now: Instant) -> bool {
        self.len(now) == 0
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, nonce)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if self.live.get(&nonce) == Some(&deadline) {
                self.live.remove(&nonce);
            }
        }
        // Taken nonces leave their queue entry behind; drop those once they outnumber the
        // live ones, so the queue stays within 2 * max (amortised O(1) per operation).
        if self.order.len() > 2 * self.max.max(1) {
            let live = &self.live;
            self.order.retain(|(d, n)| live.get(n) == Some(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_nonce_is_good_once() {
        let now = Instant::now();
        let mut s = NonceStore::new(Duration::from_secs(30), 8);
        let n = s.issue(now).expect("room");
        assert!(s.take(&n, now));
        assert!(!s.take(&n, now), "second use must be refused");
    }

    #[test]
    fn an_unissued_nonce_is_refused() {
        let now = Instant::now();
        let mut s = NonceStore::new(Duration::from_secs(30), 8);
        assert!(!s.take(&Nonce([7; 32]), now));
    }

    #[test]
    fn a_nonce_expires() {
        let now = Instant::now();
        let mut s = NonceStore::new(Duration::from_secs(30), 8);
        let n = s.issue(now).expect("room");
        assert!(!s.take(&n, now + Duration::from_secs(30)));
        let m = s.issue(now).expect("room");
        assert!(s.take(&m, now + Duration::from_secs(29)));
    }

    #[test]
    fn the_store_is_bounded_and_frees_room_on_expiry() {
        let now = Instant::now();
        let mut s = NonceStore::new(Duration::from_secs(30), 3);
        let issued: Vec<_> = (0..3).map(|_| s.issue(now).expect("room")).collect();
        assert!(s.issue(now).is_none(), "fourth must be refused");
        assert!(s.take(&issued[0], now));
        assert!(s.issue(now).is_some(), "a taken nonce frees its slot");
        assert!(s.issue(now).is_none());
        assert!(
            s.issue(now + Duration::from_secs(31)).is_some(),
            "expired ones free theirs"
        );
        assert_eq!(s.len(now + Duration::from_secs(31)), 1);
    }

    proptest! {
        /// Any interleaving of issue/take/time: a nonce is taken at most once, never after
        /// its TTL, never beyond the bound, and always when issued, live and untaken.
        #[test]
        fn model(ops in proptest::collection::vec((0u8..3, 0u64..40, 0usize..16), 1..200)) {
            let t0 = Instant::now();
            let ttl = Duration::from_secs(10);
            let max = 5;
            let mut s = NonceStore::new(ttl, max);
            let mut clock = 0u64;
            let mut issued: Vec<(Nonce, u64, bool)> = Vec::new(); // nonce, issued at, taken
            for (op, dt, pick) in ops {
                clock += dt % 4;
                let now = t0 + Duration::from_secs(clock);
                match op {
                    0 => {
                        let live = issued.iter().filter(|(_, at, taken)| !taken && clock < at + 10).count();
                        match s.issue(now) {
                            Some(n) => { prop_assert!(live < max); issued.push((n, clock, false)); }
                            None => prop_assert_eq!(live, max),
                        }
                    }
                    _ if !issued.is_empty() => {
                        let i = pick % issued.len();
                        let (n, at, taken) = issued[i];
                        let expect = !taken && clock < at + 10;
                        prop_assert_eq!(s.take(&n, now), expect);
                        issued[i].2 = true;
                    }
                    _ => {}
                }
                prop_assert!(s.live.len() <= max);
                prop_assert!(s.order.len() <= 2 * max + 1);
            }
        }
    }
}
