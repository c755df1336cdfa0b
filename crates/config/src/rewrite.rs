//! The rewrite keys of `[route NAME]`: path (`strip_prefix`, `rewrite_path`, `add_prefix`),
//! request and response header rules, and `host_rewrite`.
//!
//! Values are checked here, at config time, so the proxy only compiles what is known to be
//! valid: regexes compile, replacements name existing groups, header names are HTTP tokens
//! that do not touch message framing, header values are visible ASCII.

use crate::reader::SectionReader;

/// The rewrite keys of `[route NAME]`, in the order they are rendered.
pub(crate) const REWRITE_KEYS: &[&str] = &[
    "strip_prefix",
    "rewrite_path",
    "add_prefix",
    "request_header_remove",
    "request_header_set",
    "request_header_add",
    "host_rewrite",
    "response_header_remove",
    "response_header_set",
    "response_header_add",
];

/// Header names no rule may touch: they frame the message or describe one connection
/// (hop-by-hop), so the proxy owns them; `host` has its own key, `host_rewrite`.
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A route's rewrite rules; the default rewrites nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewriteConfig {
    /// `strip_prefix`: removed from the start of the path when present (the result keeps a
    /// leading `/`).
    pub strip_prefix: Option<String>,
    /// `rewrite_path`: a regex and its replacement, applied to the path (not the query).
    pub rewrite_path: Option<PathRewrite>,
    /// `add_prefix`: put in front of the path.
    pub add_prefix: Option<String>,
    /// Rules for the request headers sent to the backend.
    pub request_headers: HeaderRules,
    /// `host_rewrite`: the `Host` sent to the backend, instead of the client's.
    pub host_rewrite: Option<String>,
    /// Rules for the headers of backend responses sent to the client.
    pub response_headers: HeaderRules,
}

impl RewriteConfig {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self == &RewriteConfig::default()
    }
}

/// `rewrite_path = REGEX REPLACEMENT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRewrite {
    /// The regex (the `regex` crate's syntax), matched against the path.
    pub pattern: String,
    /// The replacement: `$1`, `${1}`, `$name`, `${name}` insert captures, `$$` a `$`.
    pub replacement: String,
}

impl std::fmt::Display for PathRewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.pattern, self.replacement)
    }
}

/// Header rules, applied remove, then set, then add. Names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderRules {
    /// `*_header_remove = a, b`: headers removed.
    pub remove: Vec<String>,
    /// `*_header_set = name: value; name2: value2`: headers replaced (every earlier line of
    /// the name goes).
    pub set: Vec<(String, String)>,
    /// `*_header_add = name: value; ...`: header lines appended to any already there.
    pub add: Vec<(String, String)>,
}

impl HeaderRules {
    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

/// Reads the rewrite keys of a `[route NAME]` section.
pub(crate) fn read_rewrite(r: &mut SectionReader<'_>) -> RewriteConfig {
    RewriteConfig {
        strip_prefix: r.optional("strip_prefix", prefix),
        rewrite_path: r.optional("rewrite_path", path_rewrite),
        add_prefix: r.optional("add_prefix", prefix),
        request_headers: HeaderRules {
            remove: r.value("request_header_remove", Vec::new(), header_names),
            set: r.value("request_header_set", Vec::new(), header_pairs),
            add: r.value("request_header_add", Vec::new(), header_pairs),
        },
        host_rewrite: r.optional("host_rewrite", host),
        response_headers: HeaderRules {
            remove: r.value("response_header_remove", Vec::new(), header_names),
            set: r.value("response_header_set", Vec::new(), header_pairs),
            add: r.value("response_header_add", Vec::new(), header_pairs),
        },
    }
}

/// Every rewrite key with its value as INI text (empty when unset), in [`REWRITE_KEYS`]
/// order.
pub(crate) fn rewrite_values(w: &RewriteConfig) -> Vec<(&'static str, String)> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let (req, resp) = (&w.request_headers, &w.response_headers);
    let values = [
        opt(&w.strip_prefix),
        w.rewrite_path
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        opt(&w.add_prefix),
        req.remove.join(", "),
        format_pairs(&req.set),
        format_pairs(&req.add),
        opt(&w.host_rewrite),
        resp.remove.join(", "),
        format_pairs(&resp.set),
        format_pairs(&resp.add),
    ];
    REWRITE_KEYS.iter().copied().zip(values).collect()
}

fn format_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A path prefix: starts with `/`, visible ASCII without `?` or `#`, not `/` alone (which
/// would change nothing).
fn prefix(s: &str) -> Result<String, String> {
    let valid = s.len() > 1
        && s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if valid {
        Ok(s.to_string())
    } else {
        Err(
            "expected a path prefix longer than `/`, starting with `/`, of visible ASCII \
             characters (no spaces, `?` or `#`), e.g. /api"
                .to_string(),
        )
    }
}

/// `REGEX REPLACEMENT`, split at the last run of whitespace (a regex may hold spaces as
/// `\x20`, a path may not).
fn path_rewrite(s: &str) -> Result<PathRewrite, String> {
    let Some((pattern, replacement)) = s.rsplit_once(char::is_whitespace) else {
        return Err(
            "expected `REGEX REPLACEMENT`, e.g. `^/v1/models/([^/]+)$ /models/$1`".to_string(),
        );
    };
    let (pattern, replacement) = (pattern.trim_end(), replacement);
    let re = regex::Regex::new(pattern).map_err(|e| format!("invalid regex: {e}"))?;
    if !replacement
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        return Err(
            "the replacement must be visible ASCII without `?` or `#` (the query string is \
             kept as it is)"
                .to_string(),
        );
    }
    for group in replacement_groups(replacement)? {
        let known = match group.parse::<usize>() {
            Ok(i) => i < re.captures_len(),
            Err(_) => re.capture_names().flatten().any(|n| n == group),
        };
        if !known {
            return Err(format!(
                "the replacement names group `{group}`, which the regex does not have \
                 ({} numbered, names: {})",
                re.captures_len() - 1,
                names_of(&re)
            ));
        }
    }
    Ok(PathRewrite {
        pattern: pattern.to_string(),
        replacement: replacement.to_string(),
    })
}

fn names_of(re: &regex::Regex) -> String {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The groups a replacement refers to, with the `regex` crate's rules: `$$` is a `$`;
/// `${NAME}`; `$NAME` takes the longest run of `[_0-9A-Za-z]`. A lone `$` is rejected
/// (the crate would silently drop it).
fn replacement_groups(rep: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = rep;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| "`${` without a closing `}` in the replacement".to_string())?;
            let name = &r[..end];
            if name.is_empty() {
                return Err("`${}` names no group".to_string());
            }
            out.push(name);
            rest = &r[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                return Err(
                    "a `$` in the replacement must start `$1`, `${name}` or `$$` \
                            (for a literal `$`)"
                        .to_string(),
                );
            }
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    Ok(out)
}

/// An HTTP field name (RFC 9110 token), lowercased, not one the proxy owns.
fn header_name(s: &str) -> Result<String, String> {
    let token = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!("`{s}` is not an HTTP header name"));
    }
    let name = s.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&name.as_str()) {
        let hint = if name == "host" {
            " (use host_rewrite)"
        } else {
            ""
        };
        return Err(format!(
            "`{name}` is managed by the proxy (framing or hop-by-hop) and cannot be \
             rewritten{hint}"
        ));
    }
    Ok(name)
}

/// `a, b`: header names, no duplicates.
fn header_names(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for entry in crate::value::parse_list(s)? {
        let name = header_name(entry)?;
        if out.contains(&name) {
            return Err(format!("header `{name}` is listed twice"));
        }
        out.push(name);
    }
    Ok(out)
}

/// `name: value; name2: value2`. A `;` starts a new entry only when what follows looks like
/// `NAME:`, so values such as `text/plain; charset=utf-8` stay whole.
fn header_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in split_entries(s) {
        let Some((name, value)) = entry.split_once(':') else {
            return Err(format!(
                "`{}` is not `name: value` (several entries: `a: 1; b: 2`)",
                entry.trim()
            ));
        };
        let name = header_name(name.trim())?;
        let value = value.trim();
        if !value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(format!(
                "the value of `{name}` must be visible ASCII, spaces and tabs"
            ));
        }
        out.push((name, value.to_string()));
    }
    Ok(out)
}

/// Whether `key` holds `name: value` header entries (`*_header_set`, `*_header_add`).
pub(crate) fn is_header_pairs_key(key: &str) -> bool {
    REWRITE_KEYS.contains(&key) && (key.ends_with("_header_set") || key.ends_with("_header_add"))
}

/// Whether a header's value is a credential: `authorization`, `proxy-authorization`,
/// `cookie`, `set-cookie`, or a name that says so (`auth`, `token`, `secret`, `password`,
/// `key`, as in `x-api-key`).
fn is_secret_header(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.contains("cookie")
        || ["auth", "token", "secret", "password", "key"]
            .iter()
            .any(|w| n.contains(w))
}

/// `name: value; ...` with the value of every [secret header](is_secret_header) replaced by
/// `redacted`; `None` when there is none.
pub(crate) fn redact_header_pairs(value: &str, redacted: &str) -> Option<String> {
    let entries = split_entries(value);
    let secret = |e: &&str| e.split_once(':').is_some_and(|(n, _)| is_secret_header(n));
    if !entries.iter().any(secret) {
        return None;
    }
    let shown: Vec<String> = entries
        .iter()
        .map(|e| match e.split_once(':') {
            Some((n, _)) if is_secret_header(n) => format!("{}: {redacted}", n.trim()),
            _ => e.trim().to_string(),
        })
        .collect();
    Some(shown.join("; "))
}

/// Splits at each `;` that is followed by `NAME:` (optional whitespace around NAME).
fn split_entries(s: &str) -> Vec<&str> {
    let starts_entry = |rest: &str| {
        let rest = rest.trim_start();
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
            .unwrap_or(rest.len());
        end > 0 && rest[end..].trim_start().starts_with(':')
    };
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in s.match_indices(';') {
        if starts_entry(&s[i + 1..]) {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// `host_rewrite`: a host name or IP address, with an optional port.
fn host(s: &str) -> Result<String, String> {
    let valid = s.len() <= 260
        && !s.starts_with([':', '.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if valid {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(
            "expected a host name or IP address with an optional port, e.g. api.internal or \
             10.0.0.5:8000"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rewrites_check_their_groups() {
        let ok = path_rewrite(r"^/v1/(?P<m>[^/]+)/(.*)$ /models/${m}/$2").unwrap();
        assert_eq!(ok.pattern, r"^/v1/(?P<m>[^/]+)/(.*)$");
        assert_eq!(ok.replacement, "/models/${m}/$2");
        assert!(path_rewrite("^/a(.*)$ /b$1$$").is_ok());
        for (bad, why) in [
            ("^/a(.*)$ /b$2", "group `2`"),
            ("^/a(.*)$ /b${x}", "group `x`"),
            ("^/a(.*)$ /b$1x", "group `1x`"),
            ("^/a(.*$ /b", "invalid regex"),
            ("^/a(.*)$", "REGEX REPLACEMENT"),
            ("^/a$ /b$", "literal `$`"),
            ("^/a$ /b${1", "closing"),
            ("^/a$ /b?x=1", "query string"),
        ] {
            let e = path_rewrite(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn header_pairs_split_only_before_names() {
        assert_eq!(
            header_pairs("X-A: 1; content-type: text/plain; charset=utf-8;x-b:two words").unwrap(),
            vec![
                ("x-a".to_string(), "1".to_string()),
                (
                    "content-type".to_string(),
                    "text/plain; charset=utf-8".to_string()
                ),
                ("x-b".to_string(), "two words".to_string()),
            ]
        );
        assert!(header_pairs("x-a 1").is_err());
        assert!(header_pairs("bad name: 1").is_err());
        assert!(header_pairs("x-a: caf\u{e9}").is_err());
        for reserved in ["host: a", "Content-Length: 1", "connection: close"] {
            assert!(header_pairs(reserved)
                .unwrap_err()
                .contains("managed by the proxy"));
        }
    }

    #[test]
    fn header_names_and_hosts() {
        assert_eq!(header_names("X-A, x-b").unwrap(), ["x-a", "x-b"]);
        assert!(header_names("x-a, X-A").unwrap_err().contains("twice"));
        assert!(header_names("transfer-encoding").is_err());
        assert_eq!(host("API.internal:8080").unwrap(), "api.internal:8080");
        assert_eq!(host("[::1]:80").unwrap(), "[::1]:80");
        assert!(host("a b").is_err());
        assert!(host("a/b").is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix("/api").unwrap(), "/api");
        for bad in ["/", "api", "/a?b", "/a b"] {
            assert!(prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_keys_hold_the_rewrite_keys_in_order() {
        let keys = crate::sections::ROUTE_KEYS;
        let at = keys.iter().position(|k| *k == REWRITE_KEYS[0]).unwrap();
        assert_eq!(&keys[at..at + REWRITE_KEYS.len()], REWRITE_KEYS);
    }

    #[test]
    fn values_render_back() {
        let pairs = header_pairs("a: 1; b: x; y").unwrap();
        assert_eq!(header_pairs(&format_pairs(&pairs)).unwrap(), pairs);
    }
}
