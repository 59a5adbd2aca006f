//! The gate every artifact fetch and compile passes: at most `max_concurrent_compiles`
//! run at once, at most `max_queued_compiles` callers wait (beyond that: 503 +
//! Retry-After), and each gets `compile_timeout_ms` from arrival to prepared code.
//!
//! Compiling is the most expensive thing a request can make the node do, and it only
//! happens after admission (payment); this bound keeps even paid traffic from queuing
//! unbounded work. The work runs in its own task that holds the permit until it really
//! ends, so a caller that gives up (deadline, client gone) never lets more compiles run
//! than the semaphore allows; what it finishes is cached for the next call.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::ProviderError;

/// Bounded concurrency, queue and time for fetch + compile.
#[derive(Debug)]
pub(crate) struct CompileGate {
    permits: Arc<Semaphore>,
    /// Callers inside [`CompileGate::run`] (waiting or running).
    inside: AtomicUsize,
    max_inside: usize,
    timeout: Duration,
}

/// Decrements the caller count however `run` ends.
struct Inside<'a>(&'a AtomicUsize);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CompileGate {
    /// A gate running `concurrent` at once with `queued` more waiting, each caller
    /// bounded by `timeout`.
    pub(crate) fn new(concurrent: usize, queued: usize, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            inside: AtomicUsize::new(0),
            max_inside: concurrent.max(1).saturating_add(queued),
            timeout,
        }
    }

    /// Runs `work` under the gate: [`ProviderError::CompileBusy`] when the queue is
    /// full, [`ProviderError::CompileTimeout`] past the deadline.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, ProviderError>> + Send + 'static,
    ) -> Result<T, ProviderError> {
        if self.inside.fetch_add(1, Ordering::AcqRel) >= self.max_inside {
            self.inside.fetch_sub(1, Ordering::AcqRel);
            return Err(ProviderError::CompileBusy(self.max_inside));
        }
        let _inside = Inside(&self.inside);
        let deadline = Instant::now() + self.timeout;
        let timed_out = || ProviderError::CompileTimeout {
            ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| ProviderError::Internal("the compile gate is closed".into()))?;
        let task = tokio::spawn(async move {
            let _permit = permit;
            work.await
        });
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(ProviderError::Internal(format!("compile task failed: {e}"))),
            Err(_) => Err(timed_out()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_busy_and_slow_work_times_out() {
        let gate = Arc::new(CompileGate::new(1, 1, Duration::from_millis(300)));
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let (g1, g2) = (gate.clone(), gate.clone());
        let first = tokio::spawn(async move { g1.run(slow()).await });
        let second = tokio::spawn(async move { g2.run(slow()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let third = gate.run(async { Ok(()) }).await;
        assert!(
            matches!(third, Err(ProviderError::CompileBusy(2))),
            "{third:?}"
        );
        assert!(matches!(
            first.await.expect("joined"),
            Err(ProviderError::CompileTimeout { .. })
        ));
        assert!(matches!(
            second.await.expect("joined"),
            Err(ProviderError::CompileTimeout { .. })
        ));
        // The callers left; the slow work still holds the only permit.
        assert_eq!(gate.permits.available_permits(), 0);
        let quick = gate.run(async { Ok(7) }).await;
        assert!(matches!(quick, Err(ProviderError::CompileTimeout { .. })));
    }

    #[tokio::test]
    async fn work_runs_and_answers() {
        let gate = CompileGate::new(2, 0, Duration::from_secs(5));
        assert_eq!(gate.run(async { Ok(42) }).await.expect("ran"), 42);
        let err = gate
            .run(async { Err::<(), _>(ProviderError::Spec("bad".into())) })
            .await;
        assert!(matches!(err, Err(ProviderError::Spec(_))));
        assert_eq!(gate.inside.load(Ordering::Acquire), 0);
    }
}
