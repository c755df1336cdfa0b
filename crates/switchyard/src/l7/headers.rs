//! Header rewriting between client and backend: hop-by-hop headers removed, forwarding headers
//! added.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The `Via` entry switchyard adds (RFC 9110 section 7.6.3).
const VIA: &str = "1.1 switchyard";

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop header that `name` is, if it is one: headers that describe one connection,
/// not the message (RFC 9110 section 7.6.1), and are never forwarded. `Transfer-Encoding` is
/// re-derived from the body that is streamed. A match on the name's text (length first) costs
/// a few instructions per header, with no hashing.
pub(crate) fn hop_by_hop(name: &HeaderName) -> Option<&'static HeaderName> {
    Some(match name.as_str() {
        "connection" => &header::CONNECTION,
        "keep-alive" => &KEEP_ALIVE,
        "proxy-connection" => &PROXY_CONNECTION,
        "te" => &header::TE,
        "trailer" => &header::TRAILER,
        "upgrade" => &header::UPGRADE,
        "proxy-authorization" => &header::PROXY_AUTHORIZATION,
        "proxy-authenticate" => &header::PROXY_AUTHENTICATE,
        "transfer-encoding" => &header::TRANSFER_ENCODING,
        _ => return None,
    })
}

/// Headers named by `Connection` beyond its usual `keep-alive` / `close`, which are hop-by-hop
/// too. `None` (no allocation) in the usual case.
pub(crate) fn connection_named(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut named: Option<Vec<HeaderName>> = None;
    for v in headers.get_all(header::CONNECTION) {
        let Ok(v) = v.to_str() else { continue };
        for token in v.split(',').map(str::trim) {
            if token.is_empty()
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                named.get_or_insert_with(Vec::new).push(name);
            }
        }
    }
    named
}

/// Removes hop-by-hop headers: the fixed list plus every header named in `Connection`.
///
/// One pass over the (few) names finds the hop-by-hop ones present; only those are removed.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present: [Option<&'static HeaderName>; 9] = [None; 9];
    let mut n = 0;
    for name in headers.keys() {
        if let Some(h) = hop_by_hop(name) {
            if n < present.len() {
                present[n] = Some(h);
                n += 1;
            }
        }
    }
    if n == 0 {
        return;
    }
    let named = if present[..n].contains(&Some(&header::CONNECTION)) {
        connection_named(headers)
    } else {
        None
    };
    for h in present[..n].iter().flatten() {
        headers.remove(*h);
    }
    for h in named.into_iter().flatten() {
        headers.remove(h);
    }
}

/// Prepares a request's headers for the backend: hop-by-hop removed, `Expect` dropped (the
/// proxy answers `100-continue` itself), `X-Forwarded-For` extended with the client address,
/// `X-Forwarded-Proto` set, `Via` extended. `Host` is kept as the client sent it.
pub fn to_upstream(headers: &mut HeaderMap, client_ip: &HeaderValue, proto: &'static str) {
    remove_hop_by_hop(headers);
    if headers.contains_key(header::EXPECT) {
        headers.remove(header::EXPECT);
    }
    append_list(headers, &X_FORWARDED_FOR, client_ip);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    append_list(headers, &header::VIA, &HeaderValue::from_static(VIA));
}

/// Prepares a response's headers for the client: hop-by-hop removed, `Via` extended.
pub fn to_downstream(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    append_list(headers, &header::VIA, &HeaderValue::from_static(VIA));
}

/// Appends `value` to a comma-separated list header, joining existing lines into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, value: &HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(v) => {
            v.insert(value.clone());
        }
        header::Entry::Occupied(mut o) => {
            let mut joined: Vec<u8> = Vec::with_capacity(64);
            for v in o.iter() {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                o.insert(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn no_rewrite_rule_may_set_a_hop_by_hop_header() {
        // Request rules run before the hop-by-hop headers are removed: a rule on one would
        // silently do nothing, so the config refuses it.
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
            "transfer-encoding",
        ] {
            let h = HeaderName::from_static(name);
            assert!(hop_by_hop(&h).is_some(), "{name}");
            let text = format!(
                "[backend a]\naddress = h:1\n[route r]\nbackends = a\nrequest_header_set = {name}: x\n"
            );
            assert!(switchyard_config::parse(&text, "t.ini").is_err(), "{name}");
        }
    }

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "foo"),
            ("proxy-authorization", "Basic x"),
            ("transfer-encoding", "chunked"),
            ("trailer", "x"),
            ("host", "example.com"),
            ("x-keep", "yes"),
        ]);
        remove_hop_by_hop(&mut h);
        // HeaderMap::remove does not keep the order of the other fields.
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["host", "x-keep"]);
    }

    #[test]
    fn forwarding_headers() {
        let ip = HeaderValue::from_static("10.1.2.3");
        let mut h = map(&[
            ("host", "a"),
            ("x-forwarded-for", "1.1.1.1"),
            ("expect", "100-continue"),
        ]);
        to_upstream(&mut h, &ip, "http");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["via"], "1.1 switchyard");
        assert_eq!(h["host"], "a");
        assert!(!h.contains_key("expect"));

        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        to_upstream(&mut h, &ip, "http");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.1.2.3");
    }

    #[test]
    fn via_appended_downstream() {
        let mut h = map(&[("via", "1.0 fred"), ("connection", "close")]);
        to_downstream(&mut h);
        assert_eq!(h["via"], "1.0 fred, 1.1 switchyard");
        assert!(!h.contains_key("connection"));
    }
}
