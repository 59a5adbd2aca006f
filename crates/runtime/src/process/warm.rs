//! Warm sandboxes: bubblewrap started ahead of its request, so a call of a program that
//! is being called does not wait for namespaces and mounts to be built.
//!
//! A sandbox still serves exactly one request (nothing of one call may reach the next):
//! the pool only moves start-up off the request's path. Its CPU is spent either way. A
//! warm sandbox runs the launcher (`launch/launch.c`), which blocks on stdin until the
//! node writes the request's environment, then becomes the program. Bounded: at most
//! `warm_per_program` per program and limits, `max_warm` in all, each stopped once found
//! idle past `warm_idle` (checked lazily, at the next call of any program: there is no
//! sweeper, so a node that gets no calls keeps at most `max_warm` waiting); a program gets
//! warm sandboxes only once it is called.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;

use super::pre_exec::Rlimits;
use super::sandbox::Sandbox;

/// What a sandbox was started with: only a call asking the same may use it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WarmKey {
    /// The program's unpacked directory.
    pub(crate) dir: PathBuf,
    /// The limits it runs under (from the spec, capped by the provider).
    pub(crate) rlimits: Rlimits,
}

/// The idle warm sandboxes, and places reserved for those being started.
pub(crate) struct WarmPool {
    per_program: usize,
    max_total: usize,
    idle: std::time::Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_key: HashMap<WarmKey, Slot>,
    /// Idle plus starting, over every key.
    total: usize,
}

/// One key's sandboxes.
#[derive(Default)]
struct Slot {
    idle: VecDeque<Sandbox>,
    /// Reserved by [`WarmPool::reserve`], not yet [`WarmPool::put`] or cancelled: counted
    /// so that concurrent calls do not all start sandboxes for the same places.
    starting: usize,
}

impl Slot {
    fn len(&self) -> usize {
        self.idle.len() + self.starting
    }
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("per_program", &self.per_program)
            .field("max_total", &self.max_total)
            .field("held", &self.len())
            .finish()
    }
}

impl WarmPool {
    /// A pool keeping `per_program` per key, `max_total` in all, each for `idle` at most.
    pub(crate) fn new(per_program: usize, max_total: usize, idle: std::time::Duration) -> Self {
        WarmPool {
            per_program,
            max_total,
            idle,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Warm sandboxes held (idle or starting) in all.
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }

    /// A live warm sandbox for `key`, the oldest first; expired or dead ones met on the
    /// way are dropped (which kills them).
    pub(crate) fn take(&self, key: &WarmKey) -> Option<Sandbox> {
        let mut inner = self.lock();
        let Inner { by_key, total } = &mut *inner;
        let slot = by_key.get_mut(key)?;
        while let Some(mut s) = slot.idle.pop_front() {
            *total -= 1;
            if s.born.elapsed() < self.idle && s.alive() {
                return Some(s);
            }
        }
        None
    }

    /// Reserves places for sandboxes to start for `key`, bringing it to its target
    /// (0 when the pool is full), and returns how many. Expired sandboxes of every key
    /// are stopped first, so idle programs give their places to called ones.
    pub(crate) fn reserve(&self, key: &WarmKey) -> usize {
        let mut inner = self.lock();
        let Inner { by_key, total } = &mut *inner;
        let idle = self.idle;
        by_key.retain(|_, slot| {
            let before = slot.idle.len();
            slot.idle.retain(|s| s.born.elapsed() < idle);
            *total -= before - slot.idle.len();
            slot.len() > 0
        });
        let have = by_key.get(key).map_or(0, Slot::len);
        let n = self
            .per_program
            .saturating_sub(have)
            .min(self.max_total.saturating_sub(*total));
        if n > 0 {
            by_key.entry(key.clone()).or_default().starting += n;
            *total += n;
        }
        n
    }

    /// Fills a reserved place of `key` with `sandbox`.
    pub(crate) fn put(&self, key: &WarmKey, sandbox: Sandbox) {
        let mut inner = self.lock();
        if let Some(slot) = inner.by_key.get_mut(key) {
            if slot.starting > 0 {
                slot.starting -= 1;
                slot.idle.push_back(sandbox);
            }
        }
    }

    /// Gives back `n` reserved places of `key` whose sandboxes could not be started.
    pub(crate) fn cancel(&self, key: &WarmKey, n: usize) {
        let mut inner = self.lock();
        let Inner { by_key, total } = &mut *inner;
        if let Some(slot) = by_key.get_mut(key) {
            let n = n.min(slot.starting);
            slot.starting -= n;
            *total -= n;
            if slot.len() == 0 {
                by_key.remove(key);
            }
        }
    }

    /// Stops one idle sandbox (the oldest of any key), freeing its uid for a call.
    pub(crate) fn evict_one(&self) -> bool {
        let mut inner = self.lock();
        let Inner { by_key, total } = &mut *inner;
        let oldest = by_key
            .iter()
            .filter_map(|(k, slot)| slot.idle.front().map(|s| (s.born, k.clone())))
            .min_by_key(|(born, _)| *born)
            .map(|(_, k)| k);
        let Some(k) = oldest else {
            return false;
        };
        if let Some(slot) = by_key.get_mut(&k) {
            slot.idle.pop_front();
            *total -= 1;
        }
        true
    }
}
