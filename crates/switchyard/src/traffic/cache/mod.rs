//! The response cache: keys, and the shared store behind them.
//!
//! A request's primary key is the SHA-256 of its method, host, target (path and query) and,
//! for the opt-in POST caching of deterministic inference requests, the SHA-256 of its body.
//! A response with `Vary` is stored under a variant key that adds the request's values of
//! the named headers (see [`store`]). What may be stored and for how long is [`policy`];
//! concurrent misses on one key wait for one upstream request ([`collapse`]).
//!
//! The store is split into shards by key, each behind its own mutex held only to look up,
//! insert or evict (never across an await or an upstream exchange), so reactor threads
//! contend only when they touch the same shard at the same instant.

pub mod answer;
pub mod collapse;
pub mod fill;
pub mod policy;
pub mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::{HeaderMap, HeaderName, Method};
use ring::digest::{Context, SHA256};

pub use fill::{Fill, Plan, ResponseCache};
pub use store::{Cached, Found, Key, Store, StoreCounts};

/// The primary key of a request: its method, host (compared without case), target, and the
/// body's digest when the body is part of the key.
pub fn primary_key(method: &Method, host: &str, target: &str, body: Option<&[u8]>) -> Key {
    let mut c = Context::new(&SHA256);
    c.update(method.as_str().as_bytes());
    c.update(b"\0");
    for b in host.bytes() {
        c.update(&[b.to_ascii_lowercase()]);
    }
    c.update(b"\0");
    c.update(target.as_bytes());
    c.update(b"\0");
    if let Some(body) = body {
        c.update(ring::digest::digest(&SHA256, body).as_ref());
    }
    digest(c)
}

/// The key of the variant of `primary` that a request with `headers` selects, for a response
/// that varies on `names`: each named header's values, in order, are part of it (a missing
/// header differs from an empty one).
pub fn variant_key(primary: &Key, names: &[HeaderName], headers: &HeaderMap) -> Key {
    let mut c = Context::new(&SHA256);
    c.update(primary);
    for name in names {
        c.update(name.as_str().as_bytes());
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            c.update(b"\x01");
        }
        for v in values {
            c.update(b"\x02");
            c.update(v.as_bytes());
        }
        c.update(b"\0");
    }
    digest(c)
}

fn digest(c: Context) -> Key {
    let mut key = [0u8; 32];
    key.copy_from_slice(c.finish().as_ref());
    key
}

/// Lookups and stores since start (in `/stats`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests answered from the cache.
    pub hits: AtomicU64,
    /// Cacheable requests that found nothing fresh.
    pub misses: AtomicU64,
    /// Responses stored.
    pub stored: AtomicU64,
    /// Misses that waited for another request fetching the same key.
    pub collapsed: AtomicU64,
}

/// The shared, sharded store.
#[derive(Debug)]
pub struct Cache {
    shards: Box<[Mutex<Store>]>,
    /// The counters.
    pub counters: Counters,
}

impl Cache {
    /// A cache of at most `max_bytes` in all, split into `shards` (at least 1) of equal size.
    pub fn new(max_bytes: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        Cache {
            shards: (0..shards)
                .map(|_| Mutex::new(Store::new(max_bytes / shards)))
                .collect(),
            counters: Counters::default(),
        }
    }

    fn shard(&self, key: &Key) -> MutexGuard<'_, Store> {
        let n = u64::from_le_bytes(key[..8].try_into().unwrap_or_default());
        let shard = &self.shards[(n % self.shards.len() as u64) as usize];
        // A panic while holding a shard leaves a consistent store (every method restores
        // its invariants before it can panic), so a poisoned lock is taken as it is.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fresh response for a request with key `primary` and `headers`, if there is one
    /// (counted as a hit or a miss).
    pub fn lookup(
        &self,
        primary: &Key,
        headers: &HeaderMap,
        now_ms: u64,
        max_age_ms: Option<u64>,
    ) -> Option<Arc<Cached>> {
        let found = self.find(primary, headers, now_ms, max_age_ms);
        let counter = match found {
            Some(_) => &self.counters.hits,
            None => &self.counters.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// As [`Cache::lookup`], uncounted: for a second look by a request already counted.
    pub fn find(
        &self,
        primary: &Key,
        headers: &HeaderMap,
        now_ms: u64,
        max_age_ms: Option<u64>,
    ) -> Option<Arc<Cached>> {
        let found = self.shard(primary).get(primary, now_ms, max_age_ms);
        let found = match found {
            Some(Found::Vary(names)) => {
                let variant = variant_key(primary, &names, headers);
                self.shard(&variant).get(&variant, now_ms, max_age_ms)
            }
            other => other,
        };
        match found {
            Some(Found::Response(r)) => Some(r),
            _ => None,
        }
    }

    /// Stores `cached`, the response to a request with key `primary` and `headers`, varying
    /// on `vary`, until `expires_ms`. Answers whether it was stored (not when larger than a
    /// shard).
    pub fn store(
        &self,
        primary: Key,
        headers: &HeaderMap,
        vary: Vec<HeaderName>,
        cached: Cached,
        expires_ms: u64,
    ) -> bool {
        let stored = if vary.is_empty() {
            self.shard(&primary)
                .insert(primary, Found::Response(Arc::new(cached)), expires_ms)
        } else {
            let variant = variant_key(&primary, &vary, headers);
            let ok =
                self.shard(&variant)
                    .insert(variant, Found::Response(Arc::new(cached)), expires_ms);
            ok && self
                .shard(&primary)
                .insert(primary, Found::Vary(vary.into()), expires_ms)
        };
        if stored {
            self.counters.stored.fetch_add(1, Ordering::Relaxed);
        }
        stored
    }

    /// Removes the responses `matches` selects, in every shard; answers how many.
    pub fn purge(&self, matches: impl Fn(&Cached) -> bool) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).purge(&matches))
            .sum()
    }

    /// Entries and bytes held, and the stores' counters, summed over the shards.
    pub fn size(&self) -> (usize, usize, StoreCounts) {
        let mut total = (0, 0, StoreCounts::default());
        for s in self.shards.iter() {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            let c = s.counts();
            total.0 += s.len();
            total.1 += s.bytes();
            total.2.evicted += c.evicted;
            total.2.expired += c.expired;
            total.2.purged += c.purged;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;

    fn cached(body: &'static str) -> Cached {
        Cached {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            stored_ms: 0,
            host: "h".into(),
            path: "/p".into(),
        }
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn keys_tell_requests_apart() {
        let k = primary_key(&Method::GET, "API.local", "/v1/models?x=1", None);
        assert_eq!(
            k,
            primary_key(&Method::GET, "api.local", "/v1/models?x=1", None)
        );
        for other in [
            primary_key(&Method::HEAD, "api.local", "/v1/models?x=1", None),
            primary_key(&Method::GET, "api.local", "/v1/models?x=2", None),
            primary_key(&Method::GET, "api.locaL2", "/v1/models?x=1", None),
            primary_key(&Method::GET, "api.local", "/v1/models?x=1", Some(b"")),
        ] {
            assert_ne!(k, other);
        }
        let a = primary_key(&Method::POST, "h", "/v1/embeddings", Some(b"{\"a\":1}"));
        let b = primary_key(&Method::POST, "h", "/v1/embeddings", Some(b"{\"a\":2}"));
        assert_ne!(a, b);
    }

    #[test]
    fn variants_by_the_headers_named() {
        let c = Cache::new(1 << 20, 4);
        let k = primary_key(&Method::GET, "h", "/p", None);
        let names = vec![HeaderName::from_static("accept-language")];
        let fr = h(&[("accept-language", "fr")]);
        let en = h(&[("accept-language", "en")]);
        assert!(c.store(k, &fr, names.clone(), cached("bonjour"), 1000));
        assert!(c.store(k, &en, names, cached("hello"), 1000));
        let body = |headers: &HeaderMap| c.lookup(&k, headers, 0, None).map(|r| r.body.clone());
        assert_eq!(body(&fr).as_deref(), Some(&b"bonjour"[..]));
        assert_eq!(body(&en).as_deref(), Some(&b"hello"[..]));
        assert_eq!(body(&h(&[])), None, "a missing header is its own variant");
        assert_eq!(c.counters.hits.load(Ordering::Relaxed), 2);
        assert_eq!(c.counters.misses.load(Ordering::Relaxed), 1);
        assert_eq!(c.purge(|e| e.path.as_ref() == "/p"), 2);
        assert_eq!(body(&fr), None);
    }
}
