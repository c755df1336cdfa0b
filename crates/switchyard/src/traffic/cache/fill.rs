//! The cache's part in one exchange, without I/O: whether a request may be answered from the
//! cache or its answer stored ([`Plan`]), and the copy of a backend's answer on its way to the
//! client that is stored when its body has ended ([`Fill`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use switchyard_config::RouteCache;

use super::answer::Capture;
use super::collapse::{InFlight, Leading};
use super::policy::{request_rules, response_ttl, vary};
use super::{primary_key, Cache, Cached, Key};

/// The server's response cache: the store, and the misses being fetched.
#[derive(Debug)]
pub struct ResponseCache {
    /// The entries.
    pub store: Cache,
    /// Misses being fetched by a leader.
    pub inflight: Arc<InFlight>,
    /// `cache_max_bytes`.
    pub max_bytes: usize,
}

impl ResponseCache {
    /// A cache of `max_bytes`: one shard per 4 MiB, from 1 to 16 (a small cache is one exact
    /// LRU; a large one contends less).
    pub fn new(max_bytes: usize) -> Self {
        let shards = (max_bytes / (4 << 20)).clamp(1, 16);
        ResponseCache {
            store: Cache::new(max_bytes, shards),
            inflight: Arc::default(),
            max_bytes,
        }
    }
}

impl ResponseCache {
    /// `/stats`' view: lookups, hit ratio, size, evictions.
    pub fn report(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.store.counters;
        let (hits, misses) = (c.hits.load(Relaxed), c.misses.load(Relaxed));
        let (entries, bytes, counts) = self.store.size();
        let lookups = hits + misses;
        serde_json::json!({
            "hits": hits,
            "misses": misses,
            "hit_ratio": if lookups == 0 { 0.0 } else { hits as f64 / lookups as f64 },
            "stored": c.stored.load(Relaxed),
            "collapsed": c.collapsed.load(Relaxed),
            "fetching": self.inflight.len(),
            "entries": entries,
            "bytes": bytes,
            "max_bytes": self.max_bytes,
            "evicted": counts.evicted,
            "expired": counts.expired,
            "purged": counts.purged,
        })
    }

    /// Removes the entries whose host is `host` (any, if `None`) and whose path starts with
    /// `prefix` (any, if `None`); answers how many.
    pub fn purge(&self, host: Option<&str>, prefix: Option<&str>) -> usize {
        self.store.purge(|c| {
            host.is_none_or(|h| c.host.eq_ignore_ascii_case(h))
                && prefix.is_none_or(|p| c.path.starts_with(p))
        })
    }
}

/// POST paths whose deterministic answers `cache_post` caches.
const POST_PATHS: [&str; 3] = ["/embeddings", "/completions", "/chat/completions"];

/// Whether a POST to `path` with JSON `body` may be cached on a route with `cache_post`: an
/// embeddings request, or a completion with `temperature` 0 (and not streamed unless
/// `streams`).
pub fn post_cacheable(path: &str, body: &[u8], streams: bool) -> bool {
    if !POST_PATHS.iter().any(|p| path.ends_with(p)) {
        return false;
    }
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    if !streams && doc.get("stream").and_then(serde_json::Value::as_bool) == Some(true) {
        return false;
    }
    if path.ends_with("/embeddings") {
        return true;
    }
    doc.get("temperature")
        .and_then(serde_json::Value::as_f64)
        .is_some_and(|t| t == 0.0)
}

/// One request's dealings with the cache, decided from its head (and, for a POST, its body).
#[derive(Debug)]
pub struct Plan {
    /// The primary key.
    pub key: Key,
    /// The request asked not to be answered from the cache (`x-cache: BYPASS`).
    pub bypass: bool,
    /// The answer may be stored.
    pub store: bool,
    /// The oldest entry the request accepts, in milliseconds.
    pub max_age_ms: Option<u64>,
    /// The route's settings.
    pub route: RouteCache,
    /// The request's headers (for `Vary`), host and path (for purges), kept on a miss whose
    /// answer may be stored (see [`Plan::keep_request`]); a hit copies none of them.
    pub request_headers: HeaderMap,
    /// See `request_headers`.
    pub host: Box<str>,
    /// See `request_headers`.
    pub path: Box<str>,
    /// Held by the request fetching its key for others (see [`super::collapse`]).
    pub leading: Option<Leading>,
}

impl Plan {
    /// The plan for a request on a route with `route`'s cache: `None` when the method is not
    /// cached (GET and HEAD; POST with `cache_post` when `body` is given, see
    /// [`post_cacheable`]). A HEAD is answered from a GET's entry but never stored.
    pub fn new(
        route: &RouteCache,
        method: &Method,
        host: &str,
        target: &str,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> Option<Plan> {
        let (key_method, storable) = match *method {
            Method::GET => (Method::GET, true),
            Method::HEAD => (Method::GET, false),
            Method::POST if body.is_some() => (Method::POST, true),
            _ => return None,
        };
        let rules = request_rules(headers);
        Some(Plan {
            key: primary_key(&key_method, host, target, body),
            bypass: rules.bypass || rules.no_store,
            store: storable && !rules.no_store,
            max_age_ms: rules.max_age.map(|d| d.as_millis() as u64),
            route: route.clone(),
            request_headers: HeaderMap::new(),
            host: Box::default(),
            path: Box::default(),
            leading: None,
        })
    }

    /// Keeps what storing the answer needs of the request: its headers (for `Vary`; RFC 9111
    /// section 3.5 also has an answer to a request with credentials shared only when the
    /// response says so, see [`Plan::fill`]), its host and its path.
    pub fn keep_request(&mut self, headers: &HeaderMap, host: &str, target: &str) {
        if self.store {
            self.request_headers = headers.clone();
            self.host = host.into();
            self.path = target.split('?').next().unwrap_or(target).into();
        }
    }

    /// The copy to make of a backend's answer with `status` and `headers` (hop-by-hop fields
    /// already removed), if it may be stored; `None` lets any followers go at once.
    pub fn fill(self, status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Fill> {
        if !self.store {
            return None;
        }
        let ttl = response_ttl(status, headers, now, self.route.ttl, self.route.max_ttl).ok()?;
        if self.request_headers.contains_key(header::AUTHORIZATION) && !shared_explicitly(headers) {
            return None;
        }
        let streamed = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streamed && !self.route.streams {
            return None;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let vary = vary(headers).ok()?;
        Some(Fill {
            capture: Capture::new(self.route.max_object, length),
            status,
            headers: headers.clone(),
            vary,
            ttl,
            plan: self,
        })
    }
}

/// `Cache-Control: public` or `s-maxage`: a response to a request with credentials that a
/// shared cache may store.
fn shared_explicitly(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .any(|d| d == "public" || d.starts_with("s-maxage"))
}

/// A backend's answer being copied for the cache as it streams to the client.
#[derive(Debug)]
pub struct Fill {
    capture: Capture,
    status: StatusCode,
    headers: HeaderMap,
    vary: Vec<http::HeaderName>,
    ttl: Duration,
    plan: Plan,
}

impl Fill {
    /// Copies a chunk of the body; `false` once it outgrew `cache_max_object` (then nothing
    /// is stored, and the fill may be dropped).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        self.capture.push(chunk)
    }

    /// Stores the answer, its body complete, at `now_ms`; answers whether it was stored.
    /// Followers waiting on the key are released when this returns.
    pub fn finish(self, cache: &Cache, now_ms: u64) -> bool {
        let Some(body) = self.capture.finish() else {
            return false;
        };
        let cached = Cached {
            status: self.status,
            headers: self.headers,
            body,
            stored_ms: now_ms,
            host: self.plan.host,
            path: self.plan.path,
        };
        let expires = now_ms.saturating_add(self.ttl.as_millis() as u64);
        cache.store(
            self.plan.key,
            &self.plan.request_headers,
            self.vary,
            cached,
            expires,
        )
    }
}

/// The body of an answer from the cache: empty for a HEAD.
pub fn hit_body(cached: &Cached, method: &Method) -> Bytes {
    if *method == Method::HEAD {
        Bytes::new()
    } else {
        cached.body.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_caching_takes_only_deterministic_inference() {
        let emb = br#"{"model":"e","input":"hi"}"#;
        assert!(post_cacheable("/v1/embeddings", emb, false));
        let t0 = br#"{"model":"m","temperature":0,"messages":[]}"#;
        assert!(post_cacheable("/v1/chat/completions", t0, false));
        assert!(post_cacheable(
            "/v1/completions",
            br#"{"temperature":0.0}"#,
            false
        ));
        let warm = br#"{"model":"m","temperature":0.7}"#;
        assert!(!post_cacheable("/v1/chat/completions", warm, false));
        assert!(!post_cacheable(
            "/v1/chat/completions",
            br#"{"model":"m"}"#,
            false
        ));
        let streamed = br#"{"temperature":0,"stream":true}"#;
        assert!(!post_cacheable("/v1/completions", streamed, false));
        assert!(post_cacheable("/v1/completions", streamed, true));
        assert!(!post_cacheable("/v1/other", emb, false));
        assert!(!post_cacheable("/v1/embeddings", b"not json", false));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn plan(method: Method, req: &[(&'static str, &'static str)]) -> Option<Plan> {
        let route = RouteCache {
            ttl: Some(Duration::from_secs(60)),
            ..RouteCache::default()
        };
        Plan::new(&route, &method, "h", "/a?b", &headers(req), None)
    }

    #[test]
    fn which_requests_and_answers_are_kept() {
        let now = SystemTime::now();
        let ok = headers(&[("content-length", "2")]);
        assert!(plan(Method::PUT, &[]).is_none());
        assert!(plan(Method::POST, &[]).is_none(), "POST without cache_post");
        let mut p = plan(Method::GET, &[]).unwrap();
        p.keep_request(&HeaderMap::new(), "h", "/a?b");
        assert_eq!(&*p.path, "/a");
        assert!(p.fill(StatusCode::OK, &ok, now).is_some());
        // HEAD shares GET's key and stores nothing.
        let head = plan(Method::HEAD, &[]).unwrap();
        assert_eq!(head.key, plan(Method::GET, &[]).unwrap().key);
        assert!(head.fill(StatusCode::OK, &ok, now).is_none());
        // no-store on the request: neither served nor stored.
        let ns = plan(Method::GET, &[("cache-control", "no-store")]).unwrap();
        assert!(ns.bypass);
        assert!(ns.fill(StatusCode::OK, &ok, now).is_none());
        // Credentials: stored only when the response is explicitly shared.
        let auth = || {
            let mut p = plan(Method::GET, &[("authorization", "Bearer k")]).unwrap();
            p.keep_request(&headers(&[("authorization", "Bearer k")]), "h", "/a?b");
            p
        };
        assert!(auth().fill(StatusCode::OK, &ok, now).is_none());
        let public = headers(&[("cache-control", "public, max-age=5")]);
        assert!(auth().fill(StatusCode::OK, &public, now).is_some());
        // Streams only when opted in.
        let sse = headers(&[("content-type", "text/event-stream")]);
        assert!(plan(Method::GET, &[])
            .unwrap()
            .fill(StatusCode::OK, &sse, now)
            .is_none());
        // Too large by its Content-Length: nothing is kept.
        let big = headers(&[("content-length", "999999999")]);
        let mut f = plan(Method::GET, &[])
            .unwrap()
            .fill(StatusCode::OK, &big, now)
            .unwrap();
        assert!(!f.push(b"x"));
    }
}
