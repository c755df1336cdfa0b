//! The cache's storage: entries by key, bounded by bytes, least recently used evicted first,
//! none served past its time. No clock of its own (every call takes `now_ms`) and no lock
//! (the caller shards and locks, see [`super::Cache`]).
//!
//! A response that varies on request headers takes two entries: under its primary key (the
//! method, host and target) the header names it varies on, and under the variant key (the
//! primary key and those headers' values) the response. Both count against the bound and
//! are evicted like any other entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

/// A cache key: a SHA-256 digest, so that no two requests share one by accident or design.
pub type Key = [u8; 32];

/// A stored response.
#[derive(Debug)]
pub struct Cached {
    /// The response status.
    pub status: StatusCode,
    /// The response headers, hop-by-hop ones already removed.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When it was stored (the caller's milliseconds), for `Age`.
    pub stored_ms: u64,
    /// The request's host and path, for purges by prefix.
    pub host: Box<str>,
    /// See `host`.
    pub path: Box<str>,
}

impl Cached {
    /// What the entry counts against the bound: body, headers, and a fixed overhead.
    pub fn size(&self) -> usize {
        const OVERHEAD: usize = 256;
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        OVERHEAD + self.body.len() + headers + self.host.len() + self.path.len()
    }
}

/// What a key leads to.
#[derive(Debug, Clone)]
pub enum Found {
    /// A response.
    Response(Arc<Cached>),
    /// The header names its responses vary on: look again under the variant key.
    Vary(Arc<[HeaderName]>),
}

#[derive(Debug)]
struct Slot {
    found: Found,
    size: usize,
    expires_ms: u64,
    used: u64,
}

/// Counters since start (in `/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Entries pushed out to make room.
    pub evicted: u64,
    /// Entries dropped because their time had passed.
    pub expired: u64,
    /// Entries removed by purges.
    pub purged: u64,
}

/// Entries bounded by bytes, with least-recently-used eviction and lifetimes.
#[derive(Debug)]
pub struct Store {
    slots: HashMap<Key, Slot>,
    /// Last use (a tick, unique) -> key, oldest first.
    order: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    max_bytes: usize,
    counts: StoreCounts,
}

impl Store {
    /// An empty store holding at most `max_bytes` (as [`Cached::size`] counts).
    pub fn new(max_bytes: usize) -> Self {
        Store {
            slots: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_bytes,
            counts: StoreCounts::default(),
        }
    }

    /// The entry under `key` if it is still fresh at `now_ms` (and, with `max_age_ms`, no
    /// older than that), marking it used; an expired one is dropped.
    pub fn get(&mut self, key: &Key, now_ms: u64, max_age_ms: Option<u64>) -> Option<Found> {
        let slot = self.slots.get(key)?;
        if slot.expires_ms <= now_ms {
            self.remove(key);
            self.counts.expired += 1;
            return None;
        }
        if let (Some(max), Found::Response(r)) = (max_age_ms, &slot.found) {
            if now_ms.saturating_sub(r.stored_ms) > max {
                return None;
            }
        }
        let found = slot.found.clone();
        self.touch(key);
        Some(found)
    }

    /// Stores `found` under `key` until `expires_ms`, replacing what was there, evicting the
    /// least recently used entries to make room. Answers false (and stores nothing) for an
    /// entry larger than the whole store.
    pub fn insert(&mut self, key: Key, found: Found, expires_ms: u64) -> bool {
        let size = match &found {
            Found::Response(r) => r.size(),
            Found::Vary(names) => 128 + names.iter().map(|n| n.as_str().len()).sum::<usize>(),
        };
        if size > self.max_bytes {
            return false;
        }
        self.remove(&key);
        while self.bytes + size > self.max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(s) = self.slots.remove(&oldest) {
                self.bytes -= s.size;
                self.counts.evicted += 1;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key);
        self.slots.insert(
            key,
            Slot {
                found,
                size,
                expires_ms,
                used: self.tick,
            },
        );
        self.bytes += size;
        true
    }

    /// Removes every response `matches` selects (and every vary entry, which the next store
    /// re-creates); answers how many responses went.
    pub fn purge(&mut self, matches: impl Fn(&Cached) -> bool) -> usize {
        let doomed: Vec<Key> = self
            .slots
            .iter()
            .filter(|(_, s)| match &s.found {
                Found::Response(r) => matches(r),
                Found::Vary(_) => false,
            })
            .map(|(k, _)| *k)
            .collect();
        for k in &doomed {
            self.remove(k);
        }
        self.counts.purged += doomed.len() as u64;
        doomed.len()
    }

    /// Entries held (responses and vary entries).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes held, as [`Cached::size`] counts.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The counters.
    pub fn counts(&self) -> StoreCounts {
        self.counts
    }

    fn touch(&mut self, key: &Key) {
        if let Some(slot) = self.slots.get_mut(key) {
            self.order.remove(&slot.used);
            self.tick += 1;
            slot.used = self.tick;
            self.order.insert(self.tick, *key);
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(s) = self.slots.remove(key) {
            self.order.remove(&s.used);
            self.bytes -= s.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    fn response(body: usize, path: &str) -> Found {
        Found::Response(Arc::new(Cached {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; body]),
            stored_ms: 0,
            host: "h".into(),
            path: path.into(),
        }))
    }

    fn body_len(f: Option<Found>) -> Option<usize> {
        match f? {
            Found::Response(r) => Some(r.body.len()),
            Found::Vary(_) => None,
        }
    }

    #[test]
    fn entries_expire_at_their_time() {
        let mut s = Store::new(1 << 20);
        assert!(s.insert(key(1), response(10, "/a"), 1000));
        assert_eq!(body_len(s.get(&key(1), 999, None)), Some(10));
        assert!(s.get(&key(1), 1000, None).is_none());
        assert!(s.is_empty() && s.bytes() == 0);
        assert_eq!(s.counts().expired, 1);
    }

    #[test]
    fn a_request_max_age_skips_older_entries_without_dropping_them() {
        let mut s = Store::new(1 << 20);
        s.insert(key(1), response(1, "/a"), 10_000);
        assert!(s.get(&key(1), 5000, Some(4000)).is_none());
        assert!(s.get(&key(1), 5000, Some(6000)).is_some());
    }

    #[test]
    fn the_least_recently_used_go_first() {
        let one = match response(1000, "/") {
            Found::Response(r) => r.size(),
            Found::Vary(_) => unreachable!(),
        };
        let mut s = Store::new(3 * one);
        for n in 1..=3 {
            assert!(s.insert(key(n), response(1000, "/"), u64::MAX));
        }
        // 1 is used, so 2 is now the oldest.
        assert!(s.get(&key(1), 0, None).is_some());
        assert!(s.insert(key(4), response(1000, "/"), u64::MAX));
        assert!(s.get(&key(2), 0, None).is_none());
        for n in [1, 3, 4] {
            assert!(s.get(&key(n), 0, None).is_some(), "{n}");
        }
        assert_eq!(s.counts().evicted, 1);
        assert!(s.bytes() <= 3 * one);
        assert!(
            !s.insert(key(9), response(4 * one, "/"), u64::MAX),
            "larger than the store"
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn purges_by_what_the_entry_says() {
        let mut s = Store::new(1 << 20);
        s.insert(key(1), response(1, "/v1/models"), u64::MAX);
        s.insert(key(2), response(1, "/v1/embeddings"), u64::MAX);
        s.insert(key(3), Found::Vary(Arc::from(vec![])), u64::MAX);
        assert_eq!(s.purge(|c| c.path.starts_with("/v1/m")), 1);
        assert!(s.get(&key(1), 0, None).is_none());
        assert!(s.get(&key(2), 0, None).is_some());
        assert_eq!(s.counts().purged, 1);
    }

    proptest! {
        /// Whatever is stored and read, the bytes held never pass the bound and always equal
        /// the sum of what is held.
        #[test]
        fn the_bound_holds(ops in proptest::collection::vec((0u8..16, 0usize..3000, any::<bool>()), 1..200)) {
            let mut s = Store::new(8000);
            for (i, (k, size, read)) in ops.into_iter().enumerate() {
                if read {
                    let _ = s.get(&key(k), i as u64, None);
                } else {
                    s.insert(key(k), response(size, "/"), i as u64 + 50);
                }
                prop_assert!(s.bytes() <= 8000);
                let sum: usize = s.slots.values().map(|v| v.size).sum();
                prop_assert_eq!(sum, s.bytes());
                prop_assert_eq!(s.order.len(), s.slots.len());
            }
        }
    }
}
