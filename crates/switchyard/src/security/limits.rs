//! The `[limit NAME]` sections at run time: which limits apply to a request, its key, and the
//! shared buckets every reactor thread checks.
//!
//! A `global` limit is one atomic TAT (lock-free, see [`Gcra::check_atomic`]); a keyed one is
//! a table split into shards, each behind its own mutex held only for one lookup, so threads
//! rarely meet and never wait on one global lock. Either way N reactor threads together
//! enforce the configured rate. Nothing here logs.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use switchyard_config::{Config, LimitKey};

use super::gcra::{Decision, Gcra};
use super::keyed::KeyedTable;

/// Shards of a keyed limit's table (fewer when `max_keys` is smaller).
const SHARDS: usize = 16;

/// A request refused by a limit: what the 429 says.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The limit's name.
    pub limit: Arc<str>,
    /// Its burst (`x-ratelimit-limit-requests`).
    pub burst: u32,
    /// Nanoseconds until a request would pass (`Retry-After`, rounded up to seconds).
    pub retry_after_ns: u64,
    /// Nanoseconds until the bucket is full again (`x-ratelimit-reset-requests`).
    pub reset_ns: u64,
}

impl Refusal {
    /// Adds `Retry-After` and the `x-ratelimit-*` headers.
    pub fn set_headers(&self, h: &mut HeaderMap) {
        let secs = self.retry_after_ns.div_ceil(1_000_000_000).max(1);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        h.insert("x-ratelimit-limit-requests", HeaderValue::from(self.burst));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        if let Ok(v) = HeaderValue::from_str(&format_reset(self.reset_ns)) {
            h.insert("x-ratelimit-reset-requests", v);
        }
    }
}

/// A request the limits let pass: the `x-ratelimit-*-requests` figures of the tightest limit
/// that applied (the one with the fewest requests left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Its burst (`x-ratelimit-limit-requests`).
    pub burst: u32,
    /// Requests the key may still send now (`x-ratelimit-remaining-requests`).
    pub remaining: u32,
    /// Nanoseconds until its bucket is full again (`x-ratelimit-reset-requests`).
    pub reset_ns: u64,
}

impl Allowance {
    /// Adds the `x-ratelimit-*-requests` headers.
    pub fn set_headers(&self, h: &mut HeaderMap) {
        h.insert("x-ratelimit-limit-requests", HeaderValue::from(self.burst));
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from(self.remaining),
        );
        if let Ok(v) = HeaderValue::from_str(&format_reset(self.reset_ns)) {
            h.insert("x-ratelimit-reset-requests", v);
        }
    }
}

/// A duration as OpenAI writes its reset headers: `250ms` below a second, else seconds with
/// up to three decimals (`1s`, `1.5s`, `90s`).
pub fn format_reset(ns: u64) -> String {
    let ms = ns.div_ceil(1_000_000);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    }
}

enum Buckets {
    Global(AtomicU64),
    Keyed(Box<[Mutex<KeyedTable>]>),
}

struct Limit {
    name: Arc<str>,
    key: LimitKey,
    gcra: Gcra,
    path_prefix: Option<String>,
    /// Route indices it applies to; empty: every route.
    routes: Vec<usize>,
    buckets: Arc<Buckets>,
    denied: AtomicU64,
    /// Its settings (without `routes`), to tell whether a reload changed it.
    settings: switchyard_config::LimitConfig,
}

/// Every configured limit.
pub struct Limits {
    limits: Vec<Limit>,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.limits.iter().map(|l| &*l.name).collect();
        f.debug_struct("Limits").field("limits", &names).finish()
    }
}

impl Limits {
    /// The limits of `config`.
    pub fn new(config: &Config) -> Self {
        Self::reloaded(config, None)
    }

    /// The limits of `config` replacing `previous` (a reload): a limit with the same name and
    /// settings (its `routes` aside) keeps its buckets, so clients keep what they had spent;
    /// a new or changed limit starts with full buckets.
    pub fn reloaded(config: &Config, previous: Option<&Limits>) -> Self {
        let limits = config
            .limits
            .iter()
            .map(|l| {
                let settings = switchyard_config::LimitConfig {
                    routes: Vec::new(),
                    ..l.clone()
                };
                let kept = previous.and_then(|p| {
                    p.limits
                        .iter()
                        .find(|o| o.settings == settings)
                        .map(|o| Arc::clone(&o.buckets))
                });
                let buckets = kept.unwrap_or_else(|| {
                    Arc::new(match l.key {
                        LimitKey::Global => Buckets::Global(AtomicU64::new(0)),
                        _ => {
                            let shards = SHARDS.min(l.max_keys).max(1);
                            let per = l.max_keys / shards;
                            Buckets::Keyed(
                                (0..shards)
                                    .map(|_| Mutex::new(KeyedTable::new(per)))
                                    .collect(),
                            )
                        }
                    })
                });
                Limit {
                    settings,
                    name: l.name.as_str().into(),
                    key: l.key.clone(),
                    gcra: Gcra::new(l.rate, l.burst),
                    path_prefix: l.path_prefix.clone(),
                    routes: l
                        .routes
                        .iter()
                        .filter_map(|r| config.routes.iter().position(|c| &c.name == r))
                        .collect(),
                    buckets,
                    denied: AtomicU64::new(0),
                }
            })
            .collect();
        Limits {
            limits,
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            hasher: previous.map_or_else(Default::default, |p| p.hasher.clone()),
        }
    }

    /// Whether no limit is configured.
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// Checks a request routed to `route` against every limit that applies, now: the
    /// tightest limit's figures (`None` when no limit applies), or the refusal.
    pub fn check(
        &self,
        route: usize,
        path: &str,
        headers: &HeaderMap,
        client_ip: &[u8],
    ) -> Result<Option<Allowance>, Refusal> {
        if self.limits.is_empty() {
            return Ok(None);
        }
        // Starts at 1: a stored TAT of 0 means a bucket never used.
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        self.check_at(now, route, path, headers, client_ip)
    }

    /// [`Limits::check`] at `now` (nanoseconds since the limits were made, plus one).
    pub fn check_at(
        &self,
        now: u64,
        route: usize,
        path: &str,
        headers: &HeaderMap,
        client_ip: &[u8],
    ) -> Result<Option<Allowance>, Refusal> {
        let mut tightest: Option<Allowance> = None;
        for limit in &self.limits {
            if !limit.routes.is_empty() && !limit.routes.contains(&route) {
                continue;
            }
            if limit
                .path_prefix
                .as_ref()
                .is_some_and(|p| !path.starts_with(p.as_str()))
            {
                continue;
            }
            let decision = match &*limit.buckets {
                Buckets::Global(tat) => limit.gcra.check_atomic(tat, now),
                Buckets::Keyed(shards) => {
                    let key = self.key_hash(&limit.key, path, headers, client_ip);
                    // The hash map takes its bucket from the low bits and its tag from the
                    // top seven (the hasher passes keys through), so the shard comes from
                    // the middle: every shard's keys still spread over both.
                    let shard = &shards[(key >> 32) as usize % shards.len()];
                    let mut table = shard.lock().unwrap_or_else(|e| e.into_inner());
                    table.check(&limit.gcra, key, now)
                }
            };
            match decision {
                Decision::Deny {
                    retry_after_ns,
                    reset_ns,
                } => {
                    limit.denied.fetch_add(1, Relaxed);
                    return Err(Refusal {
                        limit: Arc::clone(&limit.name),
                        burst: limit.gcra.burst(),
                        retry_after_ns,
                        reset_ns,
                    });
                }
                Decision::Allow {
                    remaining,
                    reset_ns,
                } => {
                    if tightest.is_none_or(|t| remaining < t.remaining) {
                        tightest = Some(Allowance {
                            burst: limit.gcra.burst(),
                            remaining,
                            reset_ns,
                        });
                    }
                }
            }
        }
        Ok(tightest)
    }

    /// The request's key for `key`, hashed with this process's random SipHash key.
    fn key_hash(&self, key: &LimitKey, path: &str, headers: &HeaderMap, client_ip: &[u8]) -> u64 {
        let bytes: &[u8] = match key {
            LimitKey::Global => b"",
            LimitKey::ClientIp => client_ip,
            LimitKey::Path => path.as_bytes(),
            LimitKey::ApiKey => headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(bearer)
                .unwrap_or(b""),
            LimitKey::Header(name) => headers.get(name.as_str()).map_or(b"", |v| v.as_bytes()),
        };
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        h.finish()
    }

    /// Per limit, its name and refusals: read without taking the key tables' locks (which
    /// the data plane takes), for `/metrics`.
    pub fn denied(&self) -> Vec<(&str, u64)> {
        self.limits
            .iter()
            .map(|l| (&*l.name, l.denied.load(Relaxed)))
            .collect()
    }

    /// The `/stats` entries: per limit, its key, refusals, keys held and evictions.
    pub fn report(&self) -> Value {
        let entries: Vec<Value> = self
            .limits
            .iter()
            .map(|l| {
                let (keys, evictions) = match &*l.buckets {
                    Buckets::Global(_) => (1, 0),
                    Buckets::Keyed(shards) => shards.iter().fold((0, 0), |(k, e), s| {
                        let t = s.lock().unwrap_or_else(|e| e.into_inner());
                        (k + t.len(), e + t.evictions())
                    }),
                };
                json!({
                    "name": &*l.name,
                    "key": l.key.to_string(),
                    "denied": l.denied.load(Relaxed),
                    "keys": keys,
                    "evictions": evictions,
                })
            })
            .collect();
        Value::Array(entries)
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (scheme case-insensitive).
pub(super) fn bearer(v: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = v.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text: &str) -> Limits {
        let text = format!(
            "[backend b]\naddress = h:1\n[route a]\npath_prefix = /a\nbackends = b\n\
             [route z]\nbackends = b\n{text}"
        );
        Limits::new(&switchyard_config::parse(&text, "t.ini").unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn api_keys_are_limited_apart() {
        let l = limits("[limit k]\nkey = api_key\nrate = 1/m\nburst = 1\n");
        let (a, b) = (
            headers(&[("authorization", "Bearer sk-a")]),
            headers(&[("authorization", "bearer sk-b")]),
        );
        assert!(l.check_at(1, 0, "/a", &a, b"1.1.1.1").is_ok());
        let refusal = l.check_at(1, 0, "/a", &a, b"1.1.1.2").unwrap_err();
        assert_eq!((refusal.burst, refusal.retry_after_ns), (1, 60_000_000_000));
        assert!(l.check_at(1, 0, "/a", &b, b"1.1.1.1").is_ok());
    }

    #[test]
    fn scopes_by_route_and_path_prefix() {
        let l = limits(
            "[limit r]\nrate = 1/m\nburst = 1\nroutes = a\n\
             [limit p]\nrate = 1/m\nburst = 1\npath_prefix = /z/slow\n",
        );
        let h = HeaderMap::new();
        assert!(l.check_at(1, 0, "/a", &h, b"").is_ok());
        assert_eq!(&*l.check_at(1, 0, "/a", &h, b"").unwrap_err().limit, "r");
        assert!(l.check_at(1, 1, "/z/fast", &h, b"").is_ok());
        assert!(l.check_at(1, 1, "/z/fast", &h, b"").is_ok());
        assert!(l.check_at(1, 1, "/z/slow/1", &h, b"").is_ok());
        assert_eq!(
            &*l.check_at(1, 1, "/z/slow/2", &h, b"").unwrap_err().limit,
            "p"
        );
    }

    #[test]
    fn a_header_key_and_its_absence() {
        let l = limits("[limit t]\nkey = header:x-tenant\nrate = 1/m\nburst = 1\n");
        let none = HeaderMap::new();
        assert!(l.check_at(1, 0, "/", &none, b"").is_ok());
        assert!(
            l.check_at(1, 0, "/", &none, b"").is_err(),
            "anonymous share one"
        );
        let t = headers(&[("x-tenant", "t1")]);
        assert!(l.check_at(1, 0, "/", &t, b"").is_ok());
    }

    #[test]
    fn the_table_is_bounded_and_reports_evictions() {
        let l = limits("[limit ip]\nkey = client_ip\nrate = 1/m\nburst = 1\nmax_keys = 64\n");
        let h = HeaderMap::new();
        for i in 0..5000u32 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            assert!(l.check_at(1, 0, "/", &h, ip.as_bytes()).is_ok());
        }
        let report = l.report();
        let keys = report[0]["keys"].as_u64().unwrap();
        let evictions = report[0]["evictions"].as_u64().unwrap();
        assert!(keys <= 64, "{report}");
        assert_eq!(keys + evictions, 5000, "{report}");
    }

    #[test]
    fn the_tightest_limit_gives_the_figures() {
        let l = limits("[limit wide]\nrate = 100/m\n[limit narrow]\nrate = 1/m\nburst = 3\n");
        let h = HeaderMap::new();
        let a = l.check_at(1, 0, "/", &h, b"").unwrap().unwrap();
        assert_eq!((a.burst, a.remaining), (3, 2));
        assert_eq!(a.reset_ns, 60_000_000_000);
        let mut headers = HeaderMap::new();
        a.set_headers(&mut headers);
        assert_eq!(headers["x-ratelimit-limit-requests"], "3");
        assert_eq!(headers["x-ratelimit-remaining-requests"], "2");
        assert_eq!(headers["x-ratelimit-reset-requests"], "60s");
        assert_eq!(limits("").check_at(1, 0, "/", &h, b"").unwrap(), None);
    }

    #[test]
    fn reset_formats() {
        assert_eq!(format_reset(1), "1ms");
        assert_eq!(format_reset(250_000_000), "250ms");
        assert_eq!(format_reset(1_000_000_000), "1s");
        assert_eq!(format_reset(1_500_000_000), "1.5s");
        assert_eq!(format_reset(60_000_000_000), "60s");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let r = Refusal {
            limit: "x".into(),
            burst: 3,
            retry_after_ns: 100_000_000,
            reset_ns: 300_000_000,
        };
        let mut h = HeaderMap::new();
        r.set_headers(&mut h);
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["x-ratelimit-limit-requests"], "3");
        assert_eq!(h["x-ratelimit-remaining-requests"], "0");
        assert_eq!(h["x-ratelimit-reset-requests"], "300ms");
    }
}
