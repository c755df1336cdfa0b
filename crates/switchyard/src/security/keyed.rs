//! A bounded table of GCRA buckets by key, for one shard of a keyed limit.
//!
//! Sans-io (time passed in). The table never holds more than its capacity: a key whose bucket
//! is full again (TAT at or before now) carries no information and is dropped when room is
//! needed; when every key is active the stalest (smallest TAT, the closest to full) are
//! evicted, an eighth of the table at a time so a flood of new keys pays one scan per
//! capacity/8 insertions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::gcra::{Decision, Gcra};

/// Keys are already SipHash outputs (with a random key): hashing them again is wasted work.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Buckets by hashed key, at most `capacity` of them.
#[derive(Debug)]
pub struct KeyedTable {
    tats: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>,
    capacity: usize,
    /// Active keys evicted to make room (expired ones are not counted).
    evictions: u64,
    /// Reused while choosing what to evict.
    scratch: Vec<u64>,
}

impl KeyedTable {
    /// An empty table holding at most `capacity` (at least 1) keys.
    pub fn new(capacity: usize) -> Self {
        KeyedTable {
            tats: HashMap::default(),
            capacity: capacity.max(1),
            evictions: 0,
            scratch: Vec::new(),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.tats.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    /// Active keys evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Checks a request of `key` at `now`.
    pub fn check(&mut self, gcra: &Gcra, key: u64, now: u64) -> Decision {
        if let Some(tat) = self.tats.get_mut(&key) {
            let (decision, next) = gcra.decide(*tat, now);
            *tat = next;
            return decision;
        }
        let (decision, next) = gcra.decide(0, now);
        if matches!(decision, Decision::Allow { .. }) {
            if self.tats.len() >= self.capacity {
                self.make_room(now);
            }
            self.tats.insert(key, next);
        }
        decision
    }

    /// Drops full buckets; if none was, evicts the stalest eighth of the table.
    fn make_room(&mut self, now: u64) {
        self.tats.retain(|_, tat| *tat > now);
        if self.tats.len() < self.capacity {
            return;
        }
        let n = (self.capacity / 8).max(1);
        self.scratch.clear();
        self.scratch.extend(self.tats.values().copied());
        let (_, cut, _) = self.scratch.select_nth_unstable(n - 1);
        let cut = *cut;
        let before = self.tats.len();
        let mut left = n;
        // Ties at `cut` are evicted only up to `n` in all.
        self.tats.retain(|_, tat| {
            if *tat <= cut && left > 0 {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.evictions += (before - self.tats.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchyard_config::Rate;

    const S: u64 = 1_000_000_000;

    fn gcra() -> Gcra {
        // 1/s, burst 2.
        Gcra::new(
            Rate {
                count: 1,
                per: Duration::from_secs(1),
            },
            2,
        )
    }

    fn allowed(d: Decision) -> bool {
        matches!(d, Decision::Allow { .. })
    }

    #[test]
    fn keys_are_isolated() {
        let (g, mut t) = (gcra(), KeyedTable::new(10));
        assert!(allowed(t.check(&g, 1, S)));
        assert!(allowed(t.check(&g, 1, S)));
        assert!(!allowed(t.check(&g, 1, S)));
        assert!(allowed(t.check(&g, 2, S)), "another key has its own burst");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_flood_of_keys_stays_within_capacity() {
        let (g, mut t) = (gcra(), KeyedTable::new(64));
        for key in 0..10_000u64 {
            assert!(allowed(t.check(&g, key, S + key)));
            assert!(t.len() <= 64);
        }
        assert_eq!(t.len() as u64 + t.evictions(), 10_000);
        // The newest key survived (its second request passes, its third does not).
        assert!(allowed(t.check(&g, 9_999, S + 9_999)));
        assert!(!allowed(t.check(&g, 9_999, S + 9_999)));
    }

    #[test]
    fn idle_keys_expire_without_counting_as_evictions() {
        let (g, mut t) = (gcra(), KeyedTable::new(4));
        for key in 0..4 {
            t.check(&g, key, S);
        }
        // Ten seconds later every bucket is full again: dropped, not evicted.
        for key in 10..14 {
            assert!(allowed(t.check(&g, key, 10 * S)));
        }
        assert_eq!((t.len(), t.evictions()), (4, 0));
    }
}
