//! The traffic-shaping keys: a route's `plugins`, `mirror` and `cache*` keys, the `[server]`
//! bounds behind them (`cache_max_bytes`, `mirror_max_body`, `mirror_max_in_flight`), and the
//! `[plugin NAME]` sections.

use std::time::Duration;

use crate::error::{ConfigError, ErrorKind};
use crate::ini::Section;
use crate::reader::SectionReader;
use crate::value::{
    format_duration, format_list, format_size, parse_duration, parse_list, parse_size,
};

/// The route keys read here, in the order they are rendered.
pub(crate) const TRAFFIC_ROUTE_KEYS: &[&str] = &[
    "plugins",
    "mirror",
    "cache",
    "cache_ttl",
    "cache_max_ttl",
    "cache_max_object",
    "cache_post",
    "cache_streams",
];

/// The `[server]` keys read here, in the order they are rendered.
#[cfg(test)]
pub(crate) const TRAFFIC_SERVER_KEYS: &[&str] =
    &["cache_max_bytes", "mirror_max_body", "mirror_max_in_flight"];

/// The default `cache_max_bytes`: 64 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: usize = 64 << 20;
/// The default `mirror_max_body`: 1 MiB.
pub const DEFAULT_MIRROR_MAX_BODY: usize = 1 << 20;
/// The default `mirror_max_in_flight`.
pub const DEFAULT_MIRROR_MAX_IN_FLIGHT: usize = 256;
/// The default `cache_max_object`: 1 MiB.
pub const DEFAULT_CACHE_MAX_OBJECT: usize = 1 << 20;
/// The default `cache_max_ttl`: one day.
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(86_400);

/// The `[server]` bounds of the response cache and of mirroring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficSettings {
    /// `cache_max_bytes`: the response cache's size (bodies, headers and keys), shared by every
    /// route with `cache = on`; least recently used entries are evicted past it.
    pub cache_max_bytes: usize,
    /// `mirror_max_body`: the largest request body copied to a mirror; larger requests are not
    /// mirrored (counted as skipped).
    pub mirror_max_body: usize,
    /// `mirror_max_in_flight`: mirrored requests outstanding at once (over all threads); more
    /// are skipped rather than queued.
    pub mirror_max_in_flight: usize,
}

impl Default for TrafficSettings {
    fn default() -> Self {
        TrafficSettings {
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            mirror_max_body: DEFAULT_MIRROR_MAX_BODY,
            mirror_max_in_flight: DEFAULT_MIRROR_MAX_IN_FLIGHT,
        }
    }
}

/// `mirror = ROUTE, PERCENT`: a copy of a sample of the route's requests goes to a backend of
/// another route's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The route whose backends (and balancer) receive the copies.
    pub route: String,
    /// The share of requests copied, in hundredths of a percent (1 to 10000).
    pub share: u32,
}

impl MirrorConfig {
    /// The share of requests copied, as a percentage.
    pub fn percent(&self) -> f64 {
        f64::from(self.share) / 100.0
    }
}

/// A route's response cache (`cache = on` and the `cache_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCache {
    /// `cache_ttl`: how long a response that gives no freshness of its own is kept; `None`
    /// stores only responses with `Cache-Control: max-age`/`s-maxage` or `Expires`.
    pub ttl: Option<Duration>,
    /// `cache_max_ttl`: the longest any response is kept.
    pub max_ttl: Duration,
    /// `cache_max_object`: the largest response body stored (and the largest request body
    /// hashed for `cache_post`).
    pub max_object: usize,
    /// `cache_post`: also cache POSTs to `.../embeddings`, `.../completions` and
    /// `.../chat/completions` whose JSON body has `temperature` 0, keyed on the body.
    pub post: bool,
    /// `cache_streams`: also store `text/event-stream` responses (and `"stream": true` POSTs).
    pub streams: bool,
}

impl Default for RouteCache {
    fn default() -> Self {
        RouteCache {
            ttl: None,
            max_ttl: DEFAULT_CACHE_MAX_TTL,
            max_object: DEFAULT_CACHE_MAX_OBJECT,
            post: false,
            streams: false,
        }
    }
}

/// A route's traffic-shaping keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteTraffic {
    /// `plugins`: the `[plugin NAME]` sections run on the route's requests, in this order.
    pub plugins: Vec<String>,
    /// `mirror`, if set.
    pub mirror: Option<MirrorConfig>,
    /// The cache, when `cache = on`.
    pub cache: Option<RouteCache>,
}

/// `[plugin NAME]`: a plugin library and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// The section's name (routes name it in `plugins`).
    pub name: String,
    /// `path`: the shared library (`.so`); a relative path is taken from the working directory.
    pub path: String,
    /// Every other key of the section, in file order, handed to the plugin's `create`.
    pub settings: Vec<(String, String)>,
}

fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err("expected on or off".to_string()),
    }
}

fn on_off(b: bool) -> String {
    if b {
        "on".to_string()
    } else {
        String::new()
    }
}

fn positive_size(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("must be greater than 0".to_string()),
        n => Ok(n),
    }
}

fn ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be greater than 0".to_string());
    }
    if d > Duration::from_secs(365 * 86_400) {
        return Err("must be at most 365d".to_string());
    }
    Ok(d)
}

/// `ROUTE, PERCENT` (the percent with or without `%`, decimals allowed).
fn mirror(s: &str) -> Result<MirrorConfig, String> {
    let parts = parse_list(s)?;
    let [route, percent] = parts[..] else {
        return Err("expected ROUTE, PERCENT (e.g. `shadow, 10%`)".to_string());
    };
    if !crate::ini::is_valid_name(route) {
        return Err(format!("`{route}` is not a route name"));
    }
    let number = percent.strip_suffix('%').unwrap_or(percent).trim();
    let percent: f64 = number
        .parse()
        .map_err(|_| format!("`{percent}` is not a percentage"))?;
    let share = (percent * 100.0).round();
    if !(1.0..=10_000.0).contains(&share) {
        return Err("the percentage must be between 0.01 and 100".to_string());
    }
    Ok(MirrorConfig {
        route: route.to_string(),
        share: share as u32,
    })
}

fn name_list(s: &str) -> Result<Vec<String>, String> {
    let names = parse_list(s)?;
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !crate::ini::is_valid_name(n) {
            return Err(format!("`{n}` is not a section name"));
        }
        if out.iter().any(|o| o == n) {
            return Err(format!("`{n}` is listed twice"));
        }
        out.push(n.to_string());
    }
    Ok(out)
}

/// Reads the route keys of [`TRAFFIC_ROUTE_KEYS`] (the names in `plugins` and `mirror` are
/// checked against the whole file later).
pub(crate) fn read_route_traffic(r: &mut SectionReader<'_>) -> RouteTraffic {
    let d = RouteCache::default();
    let on = r.value("cache", false, boolean);
    let cache = RouteCache {
        ttl: r.optional("cache_ttl", ttl),
        max_ttl: r.value("cache_max_ttl", d.max_ttl, ttl),
        max_object: r.value("cache_max_object", d.max_object, positive_size),
        post: r.value("cache_post", false, boolean),
        streams: r.value("cache_streams", false, boolean),
    };
    if !on {
        for key in &TRAFFIC_ROUTE_KEYS[3..] {
            if let Some(entry) = r.get(key) {
                let kind = ErrorKind::InvalidValue {
                    value: entry.value.clone(),
                    reason: "applies only with `cache = on`".to_string(),
                };
                r.error(entry.line, Some(key), kind);
            }
        }
    }
    RouteTraffic {
        plugins: r.value("plugins", Vec::new(), name_list),
        mirror: r.optional("mirror", mirror),
        cache: on.then_some(cache),
    }
}

/// The route keys with their values as INI text (empty: unset).
pub(crate) fn route_traffic_values(t: &RouteTraffic) -> Vec<(&'static str, String)> {
    let c = t.cache.as_ref();
    vec![
        ("plugins", format_list(&t.plugins)),
        (
            "mirror",
            t.mirror
                .as_ref()
                .map(|m| format!("{}, {}%", m.route, m.percent()))
                .unwrap_or_default(),
        ),
        ("cache", on_off(c.is_some())),
        (
            "cache_ttl",
            c.and_then(|c| c.ttl)
                .map(format_duration)
                .unwrap_or_default(),
        ),
        (
            "cache_max_ttl",
            c.map(|c| format_duration(c.max_ttl)).unwrap_or_default(),
        ),
        (
            "cache_max_object",
            c.map(|c| format_size(c.max_object)).unwrap_or_default(),
        ),
        ("cache_post", on_off(c.is_some_and(|c| c.post))),
        ("cache_streams", on_off(c.is_some_and(|c| c.streams))),
    ]
}

/// Reads the `[server]` keys of [`TRAFFIC_SERVER_KEYS`].
pub(crate) fn read_server_traffic(r: &mut SectionReader<'_>) -> TrafficSettings {
    let d = TrafficSettings::default();
    let in_flight = |s: &str| match crate::value::parse_u64(s)? {
        n @ 1..=1_000_000 => Ok(n as usize),
        _ => Err("must be between 1 and 1000000".to_string()),
    };
    TrafficSettings {
        cache_max_bytes: r.value("cache_max_bytes", d.cache_max_bytes, parse_size),
        mirror_max_body: r.value("mirror_max_body", d.mirror_max_body, parse_size),
        mirror_max_in_flight: r.value("mirror_max_in_flight", d.mirror_max_in_flight, in_flight),
    }
}

/// The `[server]` keys with their values as INI text.
pub(crate) fn server_traffic_values(s: &TrafficSettings) -> Vec<(&'static str, String)> {
    vec![
        ("cache_max_bytes", format_size(s.cache_max_bytes)),
        ("mirror_max_body", format_size(s.mirror_max_body)),
        ("mirror_max_in_flight", s.mirror_max_in_flight.to_string()),
    ]
}

/// Reads `[plugin NAME]`: `path` is required; every other key is the plugin's own setting,
/// passed through in file order (a key given twice is an error).
pub(crate) fn read_plugin(
    file: &str,
    section: &Section,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<PluginConfig> {
    let mut path: Option<String> = None;
    let mut settings: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut fail = |line: usize, key: &str, kind: ErrorKind| {
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            section: Some(section.label.clone()),
            key: Some(key.to_string()),
            kind,
        })
    };
    let mut ok = true;
    for entry in &section.entries {
        if let Some((_, first_line)) = seen.iter().find(|(k, _)| *k == entry.key) {
            ok = false;
            fail(
                entry.line,
                &entry.key,
                ErrorKind::DuplicateKey {
                    first_line: *first_line,
                },
            );
            continue;
        }
        seen.push((&entry.key, entry.line));
        if entry.key == "path" {
            if entry.value.is_empty() {
                ok = false;
                let kind = ErrorKind::InvalidValue {
                    value: String::new(),
                    reason: "empty value".to_string(),
                };
                fail(entry.line, "path", kind);
            }
            path = Some(entry.value.clone());
        } else {
            settings.push((entry.key.clone(), entry.value.clone()));
        }
    }
    if path.is_none() {
        ok = false;
        let kind = ErrorKind::MissingKey {
            key: "path".to_string(),
        };
        fail(section.line, "path", kind);
    }
    Some(PluginConfig {
        name: name.to_string(),
        path: path?,
        settings,
    })
    .filter(|_| ok)
}

/// `[plugin NAME]`'s keys with their values as INI text, `path` first.
pub(crate) fn plugin_values(p: &PluginConfig) -> Vec<(String, String)> {
    std::iter::once(("path".to_string(), p.path.clone()))
        .chain(p.settings.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_values() {
        let m = mirror("shadow, 10%").unwrap();
        assert_eq!((m.route.as_str(), m.share), ("shadow", 1000));
        assert_eq!(mirror("shadow,12.5").unwrap().percent(), 12.5);
        assert_eq!(mirror("shadow, 0.01%").unwrap().share, 1);
        assert!(mirror("shadow").is_err());
        assert!(mirror("shadow, 0").is_err());
        assert!(mirror("shadow, 101%").is_err());
        assert!(mirror("shadow, NaN").is_err());
        assert!(mirror("sha dow, 5").is_err());
    }

    #[test]
    fn route_and_server_key_lists_hold_these_in_order() {
        for (all, these) in [
            (crate::sections::ROUTE_KEYS, TRAFFIC_ROUTE_KEYS),
            (crate::sections::SERVER_KEYS, TRAFFIC_SERVER_KEYS),
        ] {
            let at = all.iter().position(|k| *k == these[0]).unwrap();
            assert_eq!(&all[at..at + these.len()], these);
        }
    }
}
