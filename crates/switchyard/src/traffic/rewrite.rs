//! A route's rewrite rules (`strip_prefix`, `rewrite_path`, `add_prefix`, request and response
//! header rules, `host_rewrite`), compiled once per config generation, and applied by pure
//! functions over request parts, header maps and path strings (sans-io).
//!
//! Order on a request: the path (`strip_prefix`, then `rewrite_path`, then `add_prefix`; the
//! query string is kept), then request headers (remove, then set, then add), then `Host`
//! (`host_rewrite`). On a response: remove, then set, then add. The proxy routes on the
//! client's original host and path before any of this, and adds its forwarding headers
//! (`X-Forwarded-For`, `X-Forwarded-Proto`, `Via`) after it.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Uri;
use regex::Regex;
use switchyard_config::{HeaderRules, RewriteConfig};

/// Why rules that passed config validation could not be compiled (a config built by hand,
/// not by [`switchyard_config::parse`]).
#[derive(Debug)]
pub enum CompileError {
    /// `rewrite_path`'s regex.
    Regex(regex::Error),
    /// A header rule's name.
    HeaderName(String),
    /// A header rule's value, or `host_rewrite`.
    HeaderValue(String),
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileError::Regex(e) => write!(f, "rewrite_path: {e}"),
            CompileError::HeaderName(n) => write!(f, "`{n}` is not a header name"),
            CompileError::HeaderValue(v) => write!(f, "`{v}` is not a header value"),
        }
    }
}

impl std::error::Error for CompileError {}

/// What a rewritten path may not be sent as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath {
    /// The path the rules produced.
    pub path: String,
}

impl std::fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the rewrite rules made `{}`, which is not a path starting with `/`",
            self.path
        )
    }
}

impl std::error::Error for InvalidPath {}

/// Header rules in the types of the `http` crate.
#[derive(Debug, Default)]
pub struct HeaderOps {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderOps {
    fn compile(rules: &HeaderRules) -> Result<Self, CompileError> {
        let pair = |(n, v): &(String, String)| Ok((name(n)?, value(v)?));
        Ok(HeaderOps {
            remove: rules
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set: rules.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: rules.add.iter().map(pair).collect::<Result<_, _>>()?,
        })
    }

    /// Applies the rules to `headers`: remove, then set (replacing every line of the name;
    /// several `set` entries of one name leave the last), then add (appending a line).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for n in &self.remove {
            headers.remove(n);
        }
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            headers.append(n.clone(), v.clone());
        }
    }

    fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }
}

fn name(n: &str) -> Result<HeaderName, CompileError> {
    HeaderName::from_bytes(n.as_bytes()).map_err(|_| CompileError::HeaderName(n.to_string()))
}

fn value(v: &str) -> Result<HeaderValue, CompileError> {
    HeaderValue::from_str(v).map_err(|_| CompileError::HeaderValue(v.to_string()))
}

/// A route's compiled rewrite rules.
#[derive(Debug)]
pub struct Rewrite {
    strip_prefix: Option<Box<str>>,
    rewrite_path: Option<(Regex, Box<str>)>,
    add_prefix: Option<Box<str>>,
    request: HeaderOps,
    host: Option<HeaderValue>,
    response: HeaderOps,
}

impl Rewrite {
    /// Compiles `config`; `None` when it has no rule (such a route pays nothing per request).
    pub fn compile(config: &RewriteConfig) -> Result<Option<Self>, CompileError> {
        if config.is_empty() {
            return Ok(None);
        }
        let rewrite_path = match &config.rewrite_path {
            None => None,
            Some(p) => Some((
                Regex::new(&p.pattern).map_err(CompileError::Regex)?,
                p.replacement.as_str().into(),
            )),
        };
        Ok(Some(Rewrite {
            strip_prefix: config.strip_prefix.as_deref().map(Into::into),
            rewrite_path,
            add_prefix: config.add_prefix.as_deref().map(Into::into),
            request: HeaderOps::compile(&config.request_headers)?,
            host: config.host_rewrite.as_deref().map(value).transpose()?,
            response: HeaderOps::compile(&config.response_headers)?,
        }))
    }

    /// Whether the rules set `Host`.
    pub fn sets_host(&self) -> bool {
        self.host.is_some()
    }

    /// Whether any rule changes responses.
    pub fn has_response_rules(&self) -> bool {
        !self.response.is_empty()
    }

    /// The path after `strip_prefix`, `rewrite_path` and `add_prefix`; borrowed when no rule
    /// changed it.
    pub fn path<'a>(&self, path: &'a str) -> Result<Cow<'a, str>, InvalidPath> {
        let mut out = Cow::Borrowed(path);
        if let Some(prefix) = &self.strip_prefix {
            if let Some(rest) = strip_prefix(&out, prefix) {
                out = Cow::Owned(rest);
            }
        }
        if let Some((re, replacement)) = &self.rewrite_path {
            let replaced = match re.replace_all(&out, &**replacement) {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            if let Some(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        if let Some(prefix) = &self.add_prefix {
            out = Cow::Owned(add_prefix(&out, prefix));
        }
        if !out.starts_with('/') {
            return Err(InvalidPath {
                path: out.into_owned(),
            });
        }
        Ok(out)
    }

    /// Rewrites a request for the backend: its target (origin-form, query kept), then its
    /// headers, then `Host`.
    pub fn request(&self, parts: &mut Parts) -> Result<(), InvalidPath> {
        let new = match self.path(parts.uri.path())? {
            Cow::Owned(new) => Some(new),
            Cow::Borrowed(_) => None,
        };
        if let Some(new) = new {
            let target = match parts.uri.query() {
                Some(q) => format!("{new}?{q}"),
                None => new,
            };
            parts.uri = Uri::try_from(target.as_str()).map_err(|_| InvalidPath {
                path: target.clone(),
            })?;
        }
        self.request.apply(&mut parts.headers);
        if let Some(host) = &self.host {
            parts.headers.insert(http::header::HOST, host.clone());
        }
        Ok(())
    }

    /// Rewrites a backend response's headers for the client.
    pub fn response(&self, headers: &mut HeaderMap) {
        self.response.apply(headers);
    }
}

/// `path` without `prefix`, when `prefix` is a whole leading segment run of it (`/api` strips
/// `/api` and `/api/x`, not `/apix`); the result starts with `/`.
pub fn strip_prefix(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some("/".to_string());
    }
    if rest.starts_with('/') {
        return Some(rest.to_string());
    }
    // A prefix ending in `/` already ended at a segment boundary.
    prefix.ends_with('/').then(|| format!("/{rest}"))
}

/// `prefix` in front of `path` (which starts with `/`), with no doubled `/` between them.
pub fn add_prefix(path: &str, prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let mut out = String::with_capacity(prefix.len() + path.len());
    out.push_str(prefix);
    if !path.starts_with('/') {
        out.push('/');
    }
    out.push_str(path);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use switchyard_config::PathRewrite;

    fn rules(f: impl FnOnce(&mut RewriteConfig)) -> Rewrite {
        let mut c = RewriteConfig::default();
        f(&mut c);
        Rewrite::compile(&c).unwrap().expect("some rule")
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_rules_compile_to_nothing() {
        assert!(Rewrite::compile(&RewriteConfig::default())
            .unwrap()
            .is_none());
    }

    #[test]
    fn prefixes_strip_at_segment_boundaries() {
        assert_eq!(strip_prefix("/api/v1/x", "/api").as_deref(), Some("/v1/x"));
        assert_eq!(strip_prefix("/api", "/api").as_deref(), Some("/"));
        assert_eq!(strip_prefix("/apix", "/api"), None);
        assert_eq!(strip_prefix("/api/x", "/api/").as_deref(), Some("/x"));
        assert_eq!(strip_prefix("/other", "/api"), None);
        assert_eq!(add_prefix("/x", "/v1"), "/v1/x");
        assert_eq!(add_prefix("/", "/v1/"), "/v1/");
    }

    #[test]
    fn path_rules_run_strip_regex_add() {
        let r = rules(|c| {
            c.strip_prefix = Some("/api".into());
            c.rewrite_path = Some(PathRewrite {
                pattern: "^/models/(?P<m>[^/]+)$".into(),
                replacement: "/engines/${m}/info".into(),
            });
            c.add_prefix = Some("/v2".into());
        });
        assert_eq!(
            r.path("/api/models/llama").unwrap(),
            "/v2/engines/llama/info"
        );
        assert_eq!(r.path("/api/other").unwrap(), "/v2/other");
        assert_eq!(r.path("/else").unwrap(), "/v2/else");
        let unchanged = rules(|c| c.strip_prefix = Some("/api".into()));
        assert!(matches!(unchanged.path("/x").unwrap(), Cow::Borrowed("/x")));
    }

    #[test]
    fn a_path_without_a_leading_slash_is_an_error() {
        let r = rules(|c| {
            c.rewrite_path = Some(PathRewrite {
                pattern: "^/api/(.*)$".into(),
                replacement: "$1".into(),
            })
        });
        assert_eq!(
            r.path("/api/x").unwrap_err(),
            InvalidPath { path: "x".into() }
        );
    }

    #[test]
    fn requests_keep_their_query_and_get_headers_and_host() {
        let r = rules(|c| {
            c.strip_prefix = Some("/api".into());
            c.request_headers.remove = vec!["x-drop".into(), "x-set".into()];
            c.request_headers.set = pairs(&[("x-set", "new")]);
            c.request_headers.add = pairs(&[("x-add", "1"), ("x-add", "2")]);
            c.host_rewrite = Some("api.internal".into());
        });
        let req = http::Request::builder()
            .uri("/api/v1/chat?stream=true&a=%20")
            .header("host", "public.example")
            .header("x-drop", "1")
            .header("x-set", "old")
            .header("x-set", "older")
            .header("x-add", "0")
            .body(())
            .unwrap();
        let (mut parts, ()) = req.into_parts();
        r.request(&mut parts).unwrap();
        assert_eq!(parts.uri, "/v1/chat?stream=true&a=%20");
        let h = &parts.headers;
        assert!(!h.contains_key("x-drop"));
        assert_eq!(h.get_all("x-set").iter().collect::<Vec<_>>(), ["new"]);
        assert_eq!(
            h.get_all("x-add").iter().collect::<Vec<_>>(),
            ["0", "1", "2"]
        );
        assert_eq!(h["host"], "api.internal");
        assert!(r.sets_host());
        assert!(!r.has_response_rules());
    }

    #[test]
    fn responses_get_remove_set_add() {
        let r = rules(|c| {
            c.response_headers.remove = vec!["server".into()];
            c.response_headers.set = pairs(&[("cache-control", "no-store")]);
            c.response_headers.add = pairs(&[("x-via", "sw")]);
        });
        let mut h = HeaderMap::new();
        h.insert("server", HeaderValue::from_static("engine"));
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        r.response(&mut h);
        assert!(!h.contains_key("server"));
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-via"], "sw");
    }

    fn segment() -> impl Strategy<Value = String> {
        "[a-z0-9._~-]{1,8}"
    }

    proptest! {
        /// A prefix added and then stripped gives the path back; every result starts with `/`.
        #[test]
        fn add_then_strip_round_trips(
            segs in proptest::collection::vec(segment(), 0..5),
            pre in proptest::collection::vec(segment(), 1..3),
            slash in any::<bool>(),
        ) {
            let path = format!("/{}", segs.join("/"));
            let prefix = format!("/{}{}", pre.join("/"), if slash { "/" } else { "" });
            let added = add_prefix(&path, &prefix);
            prop_assert!(added.starts_with('/'));
            let back = strip_prefix(&added, prefix.trim_end_matches('/')).unwrap();
            prop_assert_eq!(back, path);
        }

        /// Stripping any prefix from any path leaves a path starting with `/`.
        #[test]
        fn stripped_paths_start_with_a_slash(
            segs in proptest::collection::vec(segment(), 0..5),
            prefix in "/[a-z/]{1,6}",
        ) {
            let path = format!("/{}", segs.join("/"));
            if let Some(rest) = strip_prefix(&path, &prefix) {
                prop_assert!(rest.starts_with('/'));
            }
        }
    }
}
