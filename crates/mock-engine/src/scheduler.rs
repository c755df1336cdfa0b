//! Admission control: running slots, a bounded FIFO waiting queue and
//! simulated KV-cache accounting.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The waiting queue is full (or the scheduler is closed): the request is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueFull;

/// Shared scheduler state.
#[derive(Debug)]
pub(crate) struct Scheduler {
    permits: Arc<Semaphore>,
    max_waiting: usize,
    waiting: AtomicUsize,
    running: AtomicUsize,
    kv_used: AtomicU64,
    kv_capacity: u64,
}

impl Scheduler {
    /// A scheduler with `max_concurrent` slots (at least 1), a queue of
    /// `max_waiting` and a KV capacity of `kv_capacity` tokens.
    pub(crate) fn new(max_concurrent: usize, max_waiting: usize, kv_capacity: u64) -> Arc<Self> {
        let slots = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(slots)),
            max_waiting,
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            kv_used: AtomicU64::new(0),
            kv_capacity,
        })
    }

    /// Obtains a running slot, waiting in FIFO order if none is free.
    /// Fails at once when the waiting queue is full. Cancel-safe: dropping
    /// the future leaves the queue.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Slot, QueueFull> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.waiting
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                        (w < self.max_waiting).then_some(w + 1)
                    })
                    .map_err(|_| QueueFull)?;
                let _waiting = WaitingGuard(self);
                // The semaphore is fair (FIFO) and never closed.
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| QueueFull)?
            }
        };
        self.running.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            scheduler: Arc::clone(self),
            kv_tokens: 0,
            _permit: permit,
        })
    }

    /// Requests currently holding a slot.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Requests currently waiting for a slot.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Simulated KV-cache usage in `0.0..=1.0`.
    pub(crate) fn kv_usage(&self) -> f64 {
        let used = self.kv_used.load(Ordering::SeqCst);
        if used == 0 {
            return 0.0;
        }
        (used as f64 / self.kv_capacity.max(1) as f64).min(1.0)
    }
}

struct WaitingGuard<'a>(&'a Scheduler);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running slot. Dropping it frees the slot and its KV tokens.
#[derive(Debug)]
pub(crate) struct Slot {
    scheduler: Arc<Scheduler>,
    kv_tokens: u64,
    // Dropped after `Drop::drop` ran, so counters are updated before the next
    // waiter gets the slot.
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    /// Sets the number of KV-cache tokens this request occupies.
    pub(crate) fn set_kv_tokens(&mut self, tokens: u64) {
        let kv = &self.scheduler.kv_used;
        if tokens >= self.kv_tokens {
            kv.fetch_add(tokens - self.kv_tokens, Ordering::SeqCst);
        } else {
            kv.fetch_sub(self.kv_tokens - tokens, Ordering::SeqCst);
        }
        self.kv_tokens = tokens;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.scheduler
            .kv_used
            .fetch_sub(self.kv_tokens, Ordering::SeqCst);
        self.scheduler.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn slots_queue_and_overflow() {
        let s = Scheduler::new(1, 1, 100);
        let mut first = s.acquire().await.unwrap();
        assert_eq!((s.running(), s.waiting()), (1, 0));
        first.set_kv_tokens(30);
        assert!((s.kv_usage() - 0.3).abs() < 1e-9);

        let s2 = Arc::clone(&s);
        let waiter = tokio::spawn(async move { s2.acquire().await.map(|_| ()) });
        while s.waiting() != 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(s.acquire().await.unwrap_err(), QueueFull);
        drop(first);
        assert_eq!(s.kv_usage(), 0.0);
        waiter.await.unwrap().unwrap();
        assert_eq!((s.running(), s.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn kv_usage_is_capped() {
        let s = Scheduler::new(2, 0, 10);
        let mut a = s.acquire().await.unwrap();
        a.set_kv_tokens(8);
        let mut b = s.acquire().await.unwrap();
        b.set_kv_tokens(8);
        assert_eq!(s.kv_usage(), 1.0);
        b.set_kv_tokens(1);
        assert!((s.kv_usage() - 0.9).abs() < 1e-9);
        drop((a, b));
        assert_eq!(s.kv_usage(), 0.0);
    }

    #[tokio::test]
    async fn cancelled_waiter_leaves_queue() {
        let s = Scheduler::new(1, 4, 10);
        let _held = s.acquire().await.unwrap();
        let r = tokio::time::timeout(Duration::from_millis(20), s.acquire()).await;
        assert!(r.is_err());
        assert_eq!(s.waiting(), 0);
    }
}
