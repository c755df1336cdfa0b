//! Collapsing concurrent misses: of the requests that miss the cache on one key at the same
//! time, the first (the leader) goes to the backend; the others (followers) wait until the
//! leader is done, then look in the cache again. If the leader's answer could not be stored
//! (or it failed), each follower goes to the backend itself, as without collapsing; a
//! follower also stops waiting after the caller's bound (the route's response timeout), so a
//! hung leader holds nobody longer than it would have held them anyway.
//!
//! The wait uses a `watch` channel per key: the leader holds the sender and drops it when
//! done; a follower subscribed under the table's lock, so it cannot miss that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Key;

/// The keys being fetched by a leader, each with the channel its followers wait on.
#[derive(Debug, Default)]
pub struct InFlight {
    table: Mutex<HashMap<Key, watch::Receiver<()>>>,
}

/// What a request that missed is to do.
#[derive(Debug)]
pub enum Role {
    /// Go to the backend; followers wait until this is dropped.
    Leader(Leading),
    /// Wait for the leader (see [`Following::wait`]), then look again.
    Follower(Following),
}

/// The leader's hold on its key: dropping it (after storing the answer, or failing) releases
/// the followers.
#[derive(Debug)]
pub struct Leading {
    owner: Arc<InFlight>,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for Leading {
    fn drop(&mut self) {
        // Removed before the sender goes (with the struct's fields, after this), so a request
        // arriving now becomes a new leader rather than waiting on a finished one.
        self.owner.lock().remove(&self.key);
    }
}

/// A follower's wait.
#[derive(Debug)]
pub struct Following {
    done: watch::Receiver<()>,
}

impl Following {
    /// Waits until the leader is done, or `bound` has passed; answers whether the leader
    /// finished.
    pub async fn wait(mut self, bound: Duration) -> bool {
        // `changed` ends with an error once the sender is dropped; nothing is ever sent.
        tokio::time::timeout(bound, self.done.changed())
            .await
            .is_ok()
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Receiver<()>>> {
        // Nothing panics while the table is held; a poisoned lock is taken as it is.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The role of a request that missed on `key`.
    pub fn begin(self: &Arc<Self>, key: Key) -> Role {
        let mut table = self.lock();
        if let Some(rx) = table.get(&key) {
            return Role::Follower(Following { done: rx.clone() });
        }
        let (tx, rx) = watch::channel(());
        table.insert(key, rx);
        Role::Leader(Leading {
            owner: Arc::clone(self),
            key,
            _done: tx,
        })
    }

    /// Keys being fetched now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is being fetched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn followers_wait_for_the_leader_then_a_new_miss_leads_again() {
        let inflight = Arc::new(InFlight::default());
        let Role::Leader(leader) = inflight.begin([1; 32]) else {
            panic!("the first miss leads")
        };
        let released = Arc::new(AtomicUsize::new(0));
        let local = tokio::task::LocalSet::new();
        let mut waits = Vec::new();
        for _ in 0..10 {
            let Role::Follower(f) = inflight.begin([1; 32]) else {
                panic!("later misses follow")
            };
            let released = Arc::clone(&released);
            waits.push(local.spawn_local(async move {
                let finished = f.wait(Duration::from_secs(60)).await;
                released.fetch_add(1, Ordering::SeqCst);
                finished
            }));
        }
        // Another key is independent.
        assert!(matches!(inflight.begin([2; 32]), Role::Leader(_)));
        local
            .run_until(async {
                tokio::task::yield_now().await;
                assert_eq!(released.load(Ordering::SeqCst), 0, "still waiting");
                drop(leader);
                for w in waits {
                    assert!(w.await.unwrap(), "released by the leader");
                }
            })
            .await;
        assert_eq!(released.load(Ordering::SeqCst), 10);
        assert!(inflight.is_empty());
        assert!(matches!(inflight.begin([1; 32]), Role::Leader(_)));
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_hung_leader_holds_followers_only_for_the_bound() {
        let inflight = Arc::new(InFlight::default());
        let _leader = inflight.begin([7; 32]);
        let Role::Follower(f) = inflight.begin([7; 32]) else {
            panic!("follows")
        };
        let started = tokio::time::Instant::now();
        assert!(!f.wait(Duration::from_secs(5)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
