//! Whether a response may be stored, for how long, and whether a request may be answered from
//! the cache: the parts of RFC 9111 a shared cache in front of inference servers needs. Pure
//! functions over header maps; the caller gives the time.
//!
//! What is implemented: `Cache-Control` on requests (`no-cache`, `no-store`, `max-age`, and
//! `Pragma: no-cache`) and on responses (`no-store`, `no-cache`, `private`, `s-maxage`,
//! `max-age`), `Expires` against `Date`, `Age`, `Vary`. What is not: revalidation (a
//! `no-cache` response or request goes to the backend every time, and the answer is not
//! stored), `stale-while-revalidate`, `must-revalidate` beyond never serving stale entries
//! (entries are never served past their time).

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, HeaderName, StatusCode};

/// What a request's headers ask of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestRules {
    /// `no-cache` (or `Pragma: no-cache`, or `max-age=0`): go to the backend, do not answer
    /// from the cache (the answer may still be stored).
    pub bypass: bool,
    /// `no-store`: neither answer from the cache nor store the answer.
    pub no_store: bool,
    /// `max-age=N`: an entry older than this is not good enough for this request.
    pub max_age: Option<Duration>,
}

/// Reads a request's `Cache-Control` and `Pragma`.
pub fn request_rules(headers: &HeaderMap) -> RequestRules {
    let mut rules = RequestRules::default();
    for (name, arg) in directives(headers) {
        match name {
            "no-cache" => rules.bypass = true,
            "no-store" => rules.no_store = true,
            "max-age" => match arg.and_then(seconds) {
                Some(0) => rules.bypass = true,
                Some(s) => rules.max_age = Some(Duration::from_secs(s)),
                None => {}
            },
            _ => {}
        }
    }
    let pragma = headers.get_all(header::PRAGMA).iter();
    if pragma.filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
    }) {
        rules.bypass = true;
    }
    rules
}

/// Why a response is not stored (for `/stats` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// The status is not one a shared cache stores.
    Status,
    /// `Cache-Control: no-store`, `no-cache` or `private`.
    Directive,
    /// `Set-Cookie`: the answer belongs to one client.
    SetCookie,
    /// `Vary: *`: no later request can be known to match.
    VaryAll,
    /// No freshness from the response and no default on the route.
    NoLifetime,
    /// Already as old as its lifetime (`Age` or `Expires` in the past).
    Stale,
}

/// How long a response may be served from the cache, counted from now, or why it may not be
/// stored. `default_ttl` (the route's `cache_ttl`) applies when the response gives no
/// freshness of its own; `max_ttl` caps any lifetime.
pub fn response_ttl(
    status: StatusCode,
    headers: &HeaderMap,
    now: SystemTime,
    default_ttl: Option<Duration>,
    max_ttl: Duration,
) -> Result<Duration, NotStored> {
    if !matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    ) {
        return Err(NotStored::Status);
    }
    let (mut s_maxage, mut max_age) = (None, None);
    for (name, arg) in directives(headers) {
        match name {
            "no-store" | "no-cache" | "private" => return Err(NotStored::Directive),
            "s-maxage" => s_maxage = arg.and_then(seconds),
            "max-age" => max_age = arg.and_then(seconds),
            _ => {}
        }
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if vary(headers).is_err() {
        return Err(NotStored::VaryAll);
    }
    let lifetime = match s_maxage.or(max_age) {
        Some(s) => Duration::from_secs(s),
        None => match expires_in(headers, now) {
            Some(d) => d,
            None => default_ttl.ok_or(NotStored::NoLifetime)?,
        },
    };
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(seconds)
        .map_or(Duration::ZERO, Duration::from_secs);
    let left = lifetime.saturating_sub(age).min(max_ttl);
    if left.is_zero() {
        return Err(NotStored::Stale);
    }
    Ok(left)
}

/// The request header names a response varies on (lowercase, in order, without repeats), or
/// `Err(())` for `Vary: *`.
#[allow(clippy::result_unit_err)]
pub fn vary(headers: &HeaderMap) -> Result<Vec<HeaderName>, ()> {
    let mut names: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else { continue };
        for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Err(());
            }
            if let Ok(h) = HeaderName::from_bytes(name.as_bytes()) {
                if !names.contains(&h) {
                    names.push(h);
                }
            }
        }
    }
    Ok(names)
}

/// `Expires` minus `Date` (or minus `now` without a valid `Date`); zero for an `Expires` in
/// the past or an invalid one (RFC 9111 section 5.3: an invalid date means already expired).
fn expires_in(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = expires
        .to_str()
        .ok()
        .and_then(|t| httpdate::parse_http_date(t).ok())
    else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| httpdate::parse_http_date(t).ok())
        .unwrap_or(now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The `Cache-Control` directives: lowercase names, with their argument (quotes removed).
fn directives(headers: &HeaderMap) -> impl Iterator<Item = (&str, Option<&str>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| {
            let d = d.trim();
            if d.is_empty() {
                return None;
            }
            let (name, arg) = match d.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (d, None),
            };
            Some((name, arg))
        })
        .map(|(name, arg)| (lower_directive(name), arg))
}

/// The known directive names, matched without regard to case (anything else unchanged).
fn lower_directive(name: &str) -> &str {
    const KNOWN: [&str; 6] = [
        "no-cache", "no-store", "max-age", "s-maxage", "private", "public",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(name)
}

/// Delta-seconds (RFC 9111 section 1.2.2): digits only; values too large saturate.
fn seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    fn ttl(status: u16, pairs: &[(&str, &str)], default: Option<u64>) -> Result<u64, NotStored> {
        let now = httpdate::parse_http_date("Thu, 26 Nov 2026 12:00:00 GMT").unwrap();
        response_ttl(
            StatusCode::from_u16(status).unwrap(),
            &h(pairs),
            now,
            default.map(Duration::from_secs),
            DAY,
        )
        .map(|d| d.as_secs())
    }

    #[test]
    fn lifetimes() {
        assert_eq!(ttl(200, &[("cache-control", "max-age=60")], None), Ok(60));
        assert_eq!(
            ttl(
                200,
                &[("cache-control", "public, max-age=60, s-maxage=30")],
                None
            ),
            Ok(30),
            "s-maxage wins for a shared cache"
        );
        assert_eq!(
            ttl(200, &[("cache-control", "Max-Age=\"90\"")], None),
            Ok(90)
        );
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60"), ("age", "45")], None),
            Ok(15)
        );
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=60"), ("age", "60")], None),
            Err(NotStored::Stale)
        );
        assert_eq!(
            ttl(200, &[("cache-control", "max-age=999999999")], None),
            Ok(86_400),
            "capped"
        );
        let expires = [
            ("date", "Thu, 26 Nov 2026 12:00:00 GMT"),
            ("expires", "Thu, 26 Nov 2026 12:02:00 GMT"),
        ];
        assert_eq!(ttl(200, &expires, None), Ok(120));
        assert_eq!(
            ttl(200, &[("expires", "Thu, 26 Nov 2026 12:00:30 GMT")], None),
            Ok(30),
            "without Date, from now"
        );
        assert_eq!(
            ttl(200, &[("expires", "0")], Some(60)),
            Err(NotStored::Stale)
        );
        assert_eq!(ttl(200, &[], Some(60)), Ok(60));
        assert_eq!(ttl(200, &[], None), Err(NotStored::NoLifetime));
        assert_eq!(ttl(404, &[], Some(5)), Ok(5));
    }

    #[test]
    fn what_is_never_stored() {
        for cc in ["no-store", "no-cache", "private", "max-age=60, private"] {
            assert_eq!(
                ttl(200, &[("cache-control", cc)], Some(60)),
                Err(NotStored::Directive),
                "{cc}"
            );
        }
        for status in [201, 206, 302, 500, 502, 503] {
            assert_eq!(
                ttl(status, &[], Some(60)),
                Err(NotStored::Status),
                "{status}"
            );
        }
        assert_eq!(
            ttl(200, &[("set-cookie", "a=b")], Some(60)),
            Err(NotStored::SetCookie)
        );
        assert_eq!(
            ttl(200, &[("vary", "accept, *")], Some(60)),
            Err(NotStored::VaryAll)
        );
    }

    #[test]
    fn request_directives() {
        assert_eq!(request_rules(&h(&[])), RequestRules::default());
        assert!(request_rules(&h(&[("cache-control", "no-cache")])).bypass);
        assert!(request_rules(&h(&[("cache-control", "max-age=0")])).bypass);
        assert!(request_rules(&h(&[("pragma", "no-cache")])).bypass);
        let r = request_rules(&h(&[("cache-control", "NO-STORE, max-age=10")]));
        assert!(r.no_store && !r.bypass);
        assert_eq!(r.max_age, Some(Duration::from_secs(10)));
        assert_eq!(
            request_rules(&h(&[("cache-control", "max-age=abc")])).max_age,
            None
        );
    }

    #[test]
    fn vary_names() {
        let names = vary(&h(&[
            ("vary", "Accept-Encoding, accept"),
            ("vary", "x-user"),
        ]))
        .unwrap();
        assert_eq!(names, ["accept-encoding", "accept", "x-user"]);
        assert_eq!(vary(&h(&[])).unwrap(), Vec::<HeaderName>::new());
        assert!(vary(&h(&[("vary", "*")])).is_err());
    }
}
