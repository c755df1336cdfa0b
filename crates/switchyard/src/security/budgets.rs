//! The `[budget NAME]` sections at run time: token buckets per key (and model), reserved at
//! admission from an estimate, settled on the response's real usage (see [`Settlement`]).
//!
//! Each budget's table is split into shards, each behind its own lock, held only for one
//! bucket update. Time is an argument (milliseconds of the server's clock), so the whole
//! admission and settlement path is tested without sleeping. Nothing here logs.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use http::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use switchyard_config::{Config, LimitKey};

use super::budget::{Admission, BudgetTable, TokenRate};
use super::limits::{bearer, format_reset};
use super::usage::UsageScanner;

/// Shards of a budget's table (fewer when `max_keys` is smaller).
const SHARDS: usize = 16;

/// What a request asks for, as far as budgets care.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The model it names, if any.
    pub model: Option<&'a str>,
    /// The prompt's estimated tokens (at least 1).
    pub prompt_tokens: u64,
    /// Its `max_tokens` / `max_completion_tokens`, if it sets one.
    pub max_tokens: Option<u64>,
}

/// Who is asking: the request's headers and the client's address (as text).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The request headers (`Authorization`, the `header:NAME` keys).
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub client_ip: &'a [u8],
}

/// A request refused by a budget: what the 429 says.
#[derive(Debug, Clone)]
pub struct BudgetRefusal {
    /// The budget's name.
    pub budget: Arc<str>,
    /// Its burst (`x-ratelimit-limit-tokens`).
    pub burst: u64,
    /// Tokens left in the bucket (`x-ratelimit-remaining-tokens`).
    pub remaining: u64,
    /// The request's estimate.
    pub estimate: u64,
    /// Milliseconds until the estimate would fit (`Retry-After`, rounded up to seconds).
    pub retry_after_ms: u64,
    /// Milliseconds until the bucket is full (`x-ratelimit-reset-tokens`).
    pub reset_ms: u64,
}

impl BudgetRefusal {
    /// Adds `Retry-After` and the `x-ratelimit-*-tokens` headers.
    pub fn set_headers(&self, h: &mut HeaderMap) {
        let secs = self.retry_after_ms.div_ceil(1000).max(1);
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        TokenHeaders {
            burst: self.burst,
            remaining: self.remaining,
            reset_ms: self.reset_ms,
        }
        .set(h);
    }
}

/// The `x-ratelimit-*-tokens` figures of an admitted request: the tightest budget's, after
/// its reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHeaders {
    /// The bucket's capacity.
    pub burst: u64,
    /// Whole tokens left.
    pub remaining: u64,
    /// Milliseconds until the bucket is full.
    pub reset_ms: u64,
}

impl TokenHeaders {
    /// Adds `x-ratelimit-{limit,remaining,reset}-tokens`.
    pub fn set(&self, h: &mut HeaderMap) {
        h.insert("x-ratelimit-limit-tokens", HeaderValue::from(self.burst));
        h.insert(
            "x-ratelimit-remaining-tokens",
            HeaderValue::from(self.remaining),
        );
        if let Ok(v) = HeaderValue::from_str(&format_reset(self.reset_ms * 1_000_000)) {
            h.insert("x-ratelimit-reset-tokens", v);
        }
    }
}

/// One budget's reservation for a request.
#[derive(Debug, Clone, Copy)]
struct Hold {
    budget: usize,
    key: u64,
    tokens: u64,
}

/// The reservations of an admitted request, to be settled once when its response ends.
#[derive(Debug)]
pub struct Settlement {
    holds: Vec<Hold>,
    prompt_tokens: u64,
    /// The response status; 0 until known (a request that never got one is refunded).
    status: u16,
    /// The backend's body, read as it passes (set when the backend answered).
    scanner: Option<UsageScanner>,
    /// The tokens headers of the admission.
    pub headers: TokenHeaders,
}

impl Settlement {
    /// Records the response status and, for a backend's response, starts reading its usage
    /// (`sse`: the body is an event stream).
    pub fn respond(&mut self, status: u16, from_backend: Option<bool>) {
        self.status = status;
        if let Some(sse) = from_backend {
            self.scanner = Some(UsageScanner::new(sse));
        }
    }

    /// Records the response status alone (a proxy-made response).
    pub fn set_status(&mut self, status: u16) {
        if self.status == 0 {
            self.status = status;
        }
    }

    /// Takes a piece of the backend's body.
    pub fn feed(&mut self, data: &[u8]) {
        if let Some(s) = &mut self.scanner {
            s.feed(data);
        }
    }

    /// The tokens to charge for a hold of `reserved`: see [`charge`].
    fn actual(&self, reserved: u64) -> u64 {
        charge(
            self.status,
            reserved,
            self.prompt_tokens,
            self.scanner.as_ref(),
        )
    }
}

/// What a request is charged once its response ends (or breaks off):
/// - no response from a backend, or a 5xx: nothing (the reservation is refunded in full);
/// - another status outside 2xx: the prompt estimate (the backend read the prompt);
/// - 2xx with a `usage` object in the body (JSON, or an SSE stream's usage chunk): its total;
/// - 2xx event stream without usage: the prompt estimate plus one token per `data:` event;
/// - 2xx otherwise (no usage could be read): the reservation stands.
pub fn charge(status: u16, reserved: u64, prompt: u64, scanner: Option<&UsageScanner>) -> u64 {
    match (status, scanner) {
        (0, _) | (500.., _) => 0,
        (200..=299, Some(s)) => match s.total() {
            Some(total) => total,
            None if s.is_sse() => prompt.saturating_add(s.events()),
            None => reserved,
        },
        (200..=299, None) => reserved,
        _ => prompt.min(reserved),
    }
}

struct Budget {
    name: Arc<str>,
    key: LimitKey,
    per_model: bool,
    models: Vec<String>,
    /// Route indices it applies to; empty: every route.
    routes: Vec<usize>,
    rate: TokenRate,
    default_max_tokens: u64,
    shards: Arc<[Mutex<BudgetTable>]>,
    /// Its settings (without `routes`), to tell whether a reload changed it.
    settings: switchyard_config::BudgetConfig,
    admitted: AtomicU64,
    denied: AtomicU64,
    reserved: AtomicU64,
    charged: AtomicU64,
}

impl Budget {
    fn applies(&self, route: usize, model: Option<&str>) -> bool {
        (self.routes.is_empty() || self.routes.contains(&route))
            && (self.models.is_empty() || model.is_some_and(|m| self.models.iter().any(|x| x == m)))
    }

    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, BudgetTable> {
        // As for limits: the shard from the middle bits, the map uses the low and top ones.
        let shard = &self.shards[(key >> 32) as usize % self.shards.len()];
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Every configured budget.
pub struct Budgets {
    budgets: Vec<Budget>,
    /// Per route, whether any budget may apply.
    by_route: Vec<bool>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.budgets.iter().map(|b| &*b.name).collect();
        f.debug_struct("Budgets").field("budgets", &names).finish()
    }
}

impl Budgets {
    /// The budgets of `config`.
    pub fn new(config: &Config) -> Self {
        Self::reloaded(config, None)
    }

    /// The budgets of `config` replacing `previous` (a reload): a budget with the same name
    /// and settings (its `routes` aside) keeps its tables (what each key spent); a new or
    /// changed one starts full.
    pub fn reloaded(config: &Config, previous: Option<&Budgets>) -> Self {
        let budgets: Vec<Budget> = config
            .budgets
            .iter()
            .map(|b| {
                let shards = SHARDS.min(b.max_keys).max(1);
                let per = b.max_keys / shards;
                let settings = switchyard_config::BudgetConfig {
                    routes: Vec::new(),
                    ..b.clone()
                };
                let kept = previous.and_then(|p| {
                    p.budgets
                        .iter()
                        .find(|o| o.settings == settings)
                        .map(|o| Arc::clone(&o.shards))
                });
                Budget {
                    settings,
                    name: b.name.as_str().into(),
                    key: b.key.clone(),
                    per_model: b.per_model,
                    models: b.models.clone(),
                    routes: b
                        .routes
                        .iter()
                        .filter_map(|r| config.routes.iter().position(|c| &c.name == r))
                        .collect(),
                    rate: TokenRate::new(b.tokens_per_minute, b.burst),
                    default_max_tokens: u64::from(b.default_max_tokens),
                    shards: kept.unwrap_or_else(|| {
                        (0..shards)
                            .map(|_| Mutex::new(BudgetTable::new(per)))
                            .collect()
                    }),
                    admitted: AtomicU64::new(0),
                    denied: AtomicU64::new(0),
                    reserved: AtomicU64::new(0),
                    charged: AtomicU64::new(0),
                }
            })
            .collect();
        let by_route = (0..config.routes.len())
            .map(|r| {
                budgets
                    .iter()
                    .any(|b| b.routes.is_empty() || b.routes.contains(&r))
            })
            .collect();
        Budgets {
            budgets,
            by_route,
            hasher: previous.map_or_else(Default::default, |p| p.hasher.clone()),
        }
    }

    /// Whether any budget may apply to requests of `route`.
    pub fn guards_route(&self, route: usize) -> bool {
        self.by_route.get(route).copied().unwrap_or(false)
    }

    /// Reserves the request's estimate in every budget that applies, at `now` (ms). `None`
    /// when none applies; refused by the first budget short of tokens (the earlier ones'
    /// reservations are then given back).
    pub fn reserve(
        &self,
        now: u64,
        route: usize,
        ask: &Ask<'_>,
        caller: &Caller<'_>,
    ) -> Result<Option<Box<Settlement>>, BudgetRefusal> {
        let mut settlement: Option<Box<Settlement>> = None;
        for (i, b) in self.budgets.iter().enumerate() {
            if !b.applies(route, ask.model) {
                continue;
            }
            let estimate = ask
                .prompt_tokens
                .max(1)
                .saturating_add(ask.max_tokens.unwrap_or(b.default_max_tokens))
                .min(b.rate.burst());
            let key = self.key_hash(b, ask.model, caller);
            let admission = b.shard(key).reserve(&b.rate, key, now, estimate);
            match admission {
                Admission::Allow {
                    remaining,
                    reset_ms,
                } => {
                    b.admitted.fetch_add(1, Relaxed);
                    b.reserved.fetch_add(estimate, Relaxed);
                    let hold = Hold {
                        budget: i,
                        key,
                        tokens: estimate,
                    };
                    let headers = TokenHeaders {
                        burst: b.rate.burst(),
                        remaining,
                        reset_ms,
                    };
                    match &mut settlement {
                        None => {
                            settlement = Some(Box::new(Settlement {
                                holds: vec![hold],
                                prompt_tokens: ask.prompt_tokens.max(1),
                                status: 0,
                                scanner: None,
                                headers,
                            }))
                        }
                        Some(s) => {
                            s.holds.push(hold);
                            if remaining < s.headers.remaining {
                                s.headers = headers;
                            }
                        }
                    }
                }
                Admission::Deny {
                    remaining,
                    retry_after_ms,
                    reset_ms,
                } => {
                    b.denied.fetch_add(1, Relaxed);
                    if let Some(mut s) = settlement.take() {
                        // Not admitted after all: the earlier budgets give their share back.
                        for h in &s.holds {
                            self.budgets[h.budget].admitted.fetch_sub(1, Relaxed);
                        }
                        s.status = 0;
                        self.settle(now, &mut s);
                    }
                    return Err(BudgetRefusal {
                        budget: Arc::clone(&b.name),
                        burst: b.rate.burst(),
                        remaining,
                        estimate,
                        retry_after_ms,
                        reset_ms,
                    });
                }
            }
        }
        Ok(settlement)
    }

    /// Replaces the reservations by the response's real usage (see [`charge`]), at `now`.
    /// Settles each hold once: the settlement is emptied.
    pub fn settle(&self, now: u64, s: &mut Settlement) {
        for hold in std::mem::take(&mut s.holds) {
            let Some(b) = self.budgets.get(hold.budget) else {
                continue;
            };
            let actual = s.actual(hold.tokens);
            b.charged.fetch_add(actual, Relaxed);
            b.shard(hold.key)
                .settle(&b.rate, hold.key, now, hold.tokens, actual);
        }
    }

    /// The request's key for budget `b`, hashed with this process's random SipHash key.
    fn key_hash(&self, b: &Budget, model: Option<&str>, caller: &Caller<'_>) -> u64 {
        let bytes: &[u8] = match &b.key {
            LimitKey::Global | LimitKey::Path => b"",
            LimitKey::ClientIp => caller.client_ip,
            LimitKey::ApiKey => caller
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .and_then(bearer)
                .unwrap_or(b""),
            LimitKey::Header(name) => caller
                .headers
                .get(name.as_str())
                .map_or(b"", |v| v.as_bytes()),
        };
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        if b.per_model {
            h.write_u8(0xff); // never in a header value: the two parts cannot run together
            h.write(model.unwrap_or("").as_bytes());
        }
        h.finish()
    }

    /// Per budget, its name, refusals and tokens charged: read without taking the key
    /// tables' locks (which the data plane takes), for `/metrics`.
    pub fn counters(&self) -> Vec<(&str, u64, u64)> {
        self.budgets
            .iter()
            .map(|b| (&*b.name, b.denied.load(Relaxed), b.charged.load(Relaxed)))
            .collect()
    }

    /// The `/stats` entries: per budget, its counters and table.
    pub fn report(&self) -> Value {
        let entries: Vec<Value> = self
            .budgets
            .iter()
            .map(|b| {
                let (keys, evictions) = b.shards.iter().fold((0, 0), |(k, e), s| {
                    let t = s.lock().unwrap_or_else(|e| e.into_inner());
                    (k + t.len(), e + t.evictions())
                });
                json!({
                    "name": &*b.name,
                    "key": b.key.to_string(),
                    "per_model": b.per_model,
                    "admitted": b.admitted.load(Relaxed),
                    "denied": b.denied.load(Relaxed),
                    "tokens_reserved": b.reserved.load(Relaxed),
                    "tokens_charged": b.charged.load(Relaxed),
                    "keys": keys,
                    "evictions": evictions,
                })
            })
            .collect();
        Value::Array(entries)
    }
}

#[cfg(test)]
#[path = "budgets_tests.rs"]
mod tests;
