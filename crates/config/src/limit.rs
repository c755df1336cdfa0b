//! `[limit NAME]`: a request rate limit (GCRA, a token bucket without a refill timer): a rate,
//! a burst, what requests are counted together (`key`), and which requests it applies to
//! (`path_prefix`, `routes`).

use std::fmt;
use std::time::Duration;

use crate::reader::SectionReader;
use crate::value::{format_list, parse_list};

/// The keys of `[limit NAME]`, in the order they are rendered.
pub(crate) const LIMIT_KEYS: &[&str] =
    &["key", "rate", "burst", "path_prefix", "routes", "max_keys"];

/// The default `max_keys` of a keyed limit.
pub const DEFAULT_LIMIT_MAX_KEYS: usize = 100_000;
/// The largest `max_keys`.
pub const MAX_LIMIT_KEYS: usize = 10_000_000;
/// The largest `burst`.
pub const MAX_LIMIT_BURST: u32 = 1_000_000;

/// What requests a limit counts together (`key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LimitKey {
    /// `global`: every request it applies to, in one bucket (the default).
    #[default]
    Global,
    /// `client_ip`: one bucket per client address (after `trusted_proxies`, where set).
    ClientIp,
    /// `path`: one bucket per request path (without the query).
    Path,
    /// `api_key`: one bucket per `Authorization: Bearer` token.
    ApiKey,
    /// `header:NAME`: one bucket per value of a request header (lowercase name).
    Header(String),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::Global => write!(f, "global"),
            LimitKey::ClientIp => write!(f, "client_ip"),
            LimitKey::Path => write!(f, "path"),
            LimitKey::ApiKey => write!(f, "api_key"),
            LimitKey::Header(n) => write!(f, "header:{n}"),
        }
    }
}

impl std::str::FromStr for LimitKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let token = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        match s {
            "global" => Ok(LimitKey::Global),
            "client_ip" => Ok(LimitKey::ClientIp),
            "path" => Ok(LimitKey::Path),
            "api_key" => Ok(LimitKey::ApiKey),
            _ => match s.split_once(':') {
                Some(("header", n)) if token(n) => Ok(LimitKey::Header(n.to_ascii_lowercase())),
                _ => Err(
                    "expected `global`, `client_ip`, `path`, `api_key` or `header:NAME` \
                          (NAME an HTTP token, e.g. header:x-api-key)"
                        .to_string(),
                ),
            },
        }
    }
}

/// A rate: `count` requests per `per` (`100/s`, `6000/m`, `1000/h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period; at least 1.
    pub count: u32,
    /// The period: one second, minute or hour.
    pub per: Duration,
}

impl Rate {
    /// The time one request "costs": `per / count`, in nanoseconds (at least 1).
    pub fn interval_ns(&self) -> u64 {
        (self.per.as_nanos() / u128::from(self.count)).max(1) as u64
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = "expected COUNT/s, COUNT/m or COUNT/h, e.g. 100/s or 6000/m";
        let (n, unit) = s.split_once('/').ok_or_else(|| expected.to_string())?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not a whole number; {expected}", n.trim()))?;
        if count == 0 {
            return Err("the rate must be at least 1 request per period".to_string());
        }
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("unknown period `{other}`; {expected}")),
        };
        Ok(Rate { count, per })
    }
}

/// A `[limit NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConfig {
    /// The section's name (it names the limit's counters in `/stats`).
    pub name: String,
    /// `key`: what requests are counted together (default `global`).
    pub key: LimitKey,
    /// `rate`: the sustained rate allowed per key (required).
    pub rate: Rate,
    /// `burst`: how many requests may come at once, above the sustained rate (1..=1000000;
    /// default: the rate's count, e.g. 100 for `100/s`).
    pub burst: u32,
    /// `path_prefix`: the limit applies only to request paths starting with this; `None`:
    /// every path.
    pub path_prefix: Option<String>,
    /// `routes`: the limit applies only to requests routed to these routes; empty: every
    /// route.
    pub routes: Vec<String>,
    /// `max_keys`: the most keys tracked at once (keyed limits); past it the stalest keys are
    /// evicted. 1..=10000000, default [`DEFAULT_LIMIT_MAX_KEYS`].
    pub max_keys: usize,
}

impl LimitConfig {
    /// A limit with every optional key at its default.
    pub fn new(name: &str, key: LimitKey, rate: Rate) -> Self {
        LimitConfig {
            name: name.to_string(),
            key,
            rate,
            burst: rate.count.min(MAX_LIMIT_BURST),
            path_prefix: None,
            routes: Vec::new(),
            max_keys: DEFAULT_LIMIT_MAX_KEYS,
        }
    }
}

fn burst(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT_BURST).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_LIMIT_BURST}"
        )),
    }
}

fn max_keys(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT_KEYS).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to {MAX_LIMIT_KEYS}"
        )),
    }
}

fn path_prefix(s: &str) -> Result<Option<String>, String> {
    if !s.starts_with('/') || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected a path starting with `/`, without spaces".to_string());
    }
    Ok(Some(s.to_string()))
}

pub(crate) fn route_names(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in parse_list(s)? {
        if !crate::ini::is_valid_name(name) {
            return Err(format!(
                "`{name}` is not a section name (A-Z a-z 0-9 _ . - only)"
            ));
        }
        if out.iter().any(|n| n == name) {
            return Err(format!("route `{name}` is listed twice"));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

/// A limit as read, before the cross-checks that need the whole file.
pub(crate) struct LimitRead {
    /// The limit; `None` if `rate` is missing or invalid.
    pub config: Option<LimitConfig>,
    /// The line of `routes` (the header's if absent).
    pub routes_line: usize,
}

/// Reads `[limit NAME]`.
pub(crate) fn read_limit(r: &mut SectionReader<'_>, name: &str) -> LimitRead {
    let key = r.value("key", LimitKey::Global, |s| s.parse());
    let rate: Option<Rate> = r.required("rate", |s| s.parse());
    let burst = r.optional("burst", burst);
    let path_prefix = r.value("path_prefix", None, path_prefix);
    let routes = r.value("routes", Vec::new(), route_names);
    let max_keys = r.value("max_keys", DEFAULT_LIMIT_MAX_KEYS, max_keys);
    let config = rate.map(|rate| LimitConfig {
        burst: burst.unwrap_or(rate.count.min(MAX_LIMIT_BURST)),
        path_prefix,
        routes,
        max_keys,
        ..LimitConfig::new(name, key, rate)
    });
    LimitRead {
        config,
        routes_line: r.line_of("routes"),
    }
}

/// Every `[limit NAME]` key with its value as INI text, in canonical order (absent optional
/// keys omitted).
pub(crate) fn limit_values(l: &LimitConfig) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("key", l.key.to_string()),
        ("rate", l.rate.to_string()),
        ("burst", l.burst.to_string()),
    ];
    if let Some(p) = &l.path_prefix {
        out.push(("path_prefix", p.clone()));
    }
    if !l.routes.is_empty() {
        out.push(("routes", format_list(&l.routes)));
    }
    out.push(("max_keys", l.max_keys.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, count, secs) in [("100/s", 100, 1), ("6000/m", 6000, 60), ("1/h", 1, 3600)] {
            let r: Rate = text.parse().unwrap();
            assert_eq!((r.count, r.per), (count, Duration::from_secs(secs)));
            assert_eq!(r.to_string(), text);
        }
        assert_eq!("100/s".parse::<Rate>().unwrap().interval_ns(), 10_000_000);
        for bad in ["", "100", "0/s", "-1/s", "1/d", "x/s", "1.5/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse_and_print() {
        for text in ["global", "client_ip", "path", "api_key", "header:x-api-key"] {
            assert_eq!(text.parse::<LimitKey>().unwrap().to_string(), text);
        }
        assert_eq!(
            "header:X-Tenant".parse::<LimitKey>(),
            Ok(LimitKey::Header("x-tenant".into()))
        );
        for bad in ["", "ip", "header:", "header:a b", "cookie:a"] {
            assert!(bad.parse::<LimitKey>().is_err(), "{bad}");
        }
    }
}
