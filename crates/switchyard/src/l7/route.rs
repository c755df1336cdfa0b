//! Picking a `[route]` for a request: by host, then the longest path prefix.
//!
//! Routes that name hosts are tried first; a request whose host matches none of them falls
//! through to routes without `host`. Within each tier the longest matching `path_prefix` wins
//! (a plain string prefix, as nginx's prefix locations). Host comparison ignores ASCII case and
//! the port; `*.example.com` matches any name ending in `.example.com`.

use switchyard_config::RouteConfig;

/// A route compiled for matching.
#[derive(Debug, Clone)]
struct Compiled {
    index: usize,
    hosts: Vec<HostPattern>,
    prefix: String,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl HostPattern {
    fn parse(s: &str) -> Self {
        match s.strip_prefix('*') {
            Some(suffix) => HostPattern::Suffix(suffix.to_ascii_lowercase()),
            None => HostPattern::Exact(s.to_ascii_lowercase()),
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

/// The routing table: immutable once built, shared by every reactor thread.
#[derive(Debug, Clone)]
pub struct Router {
    /// Routes with hosts, longest prefix first.
    with_host: Vec<Compiled>,
    /// Routes without hosts, longest prefix first.
    any_host: Vec<Compiled>,
}

impl Router {
    /// Compiles `routes`; the index returned by [`Router::find`] is the position in `routes`.
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut with_host = Vec::new();
        let mut any_host = Vec::new();
        for (index, r) in routes.iter().enumerate() {
            let c = Compiled {
                index,
                hosts: r.hosts.iter().map(|h| HostPattern::parse(h)).collect(),
                prefix: r.path_prefix.clone(),
            };
            if c.hosts.is_empty() {
                any_host.push(c);
            } else {
                with_host.push(c);
            }
        }
        // Stable sort keeps file order among equal lengths.
        with_host.sort_by_key(|c| std::cmp::Reverse(c.prefix.len()));
        any_host.sort_by_key(|c| std::cmp::Reverse(c.prefix.len()));
        Router {
            with_host,
            any_host,
        }
    }

    /// The route for a request to `host` (as sent, port allowed; `None` if absent) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        if let Some(host) = host.map(strip_port) {
            let hit = self.with_host.iter().find(|c| {
                path.starts_with(c.prefix.as_str()) && c.hosts.iter().any(|p| p.matches(host))
            });
            if let Some(c) = hit {
                return Some(c.index);
            }
        }
        self.any_host
            .iter()
            .find(|c| path.starts_with(c.prefix.as_str()))
            .map(|c| c.index)
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, hosts: &[&str], prefix: &str) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            path_prefix: prefix.into(),
            backends: vec!["b".into()],
            balancer: "round_robin".into(),
            hash_key: Default::default(),
            explain: false,
            max_websockets: 10_000,
            websocket_max_frame: None,
            rewrite: Default::default(),
            traffic: Default::default(),
            discovery: false,
            versions: Vec::new(),
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let r = Router::new(&[route("all", &[], "/"), route("v1", &[], "/v1/")]);
        assert_eq!(r.find(None, "/v1/chat"), Some(1));
        assert_eq!(r.find(Some("x"), "/v2"), Some(0));
    }

    #[test]
    fn host_routes_first_then_fallthrough() {
        let r = Router::new(&[
            route("any", &[], "/"),
            route("api", &["api.example.com"], "/"),
            route("wild", &["*.models.example.com"], "/v1/"),
        ]);
        assert_eq!(r.find(Some("API.example.com:8080"), "/x"), Some(1));
        assert_eq!(r.find(Some("a.models.example.com"), "/v1/x"), Some(2));
        assert_eq!(r.find(Some("a.models.example.com"), "/other"), Some(0));
        assert_eq!(r.find(Some("models.example.com"), "/v1/x"), Some(0));
        assert_eq!(r.find(Some("elsewhere"), "/v1/x"), Some(0));
    }

    #[test]
    fn no_match() {
        let r = Router::new(&[route("v1", &[], "/v1/")]);
        assert_eq!(r.find(Some("h"), "/v2/"), None);
    }

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
