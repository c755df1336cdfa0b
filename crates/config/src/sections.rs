//! The keys of each section: what they accept and their defaults.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::address::normalize_host_pattern;
use crate::error::ErrorKind;
use crate::ini::is_valid_name;
use crate::model::{
    AcceptSettings, BackendConfig, BackendProtocol, BackendTls, H2Settings, HashKey, HealthCheck,
    L4Config, L4Protocol, MetricsEndpoint, ModelId, RouteConfig, ServerConfig, DEFAULT_BALANCER,
    DEFAULT_PATH_PREFIX, DEFAULT_WEIGHT,
};
use crate::reader::SectionReader;
use crate::suggest::suggest;
use crate::value::{format_duration, parse_duration, parse_list, parse_size, parse_socket_addr};
use crate::Address;

/// The keys of `[server]`, in the order they are rendered.
pub(crate) const SERVER_KEYS: &[&str] = &[
    "listen",
    "threads",
    "admin_listen",
    "drain_timeout",
    "client_header_timeout",
    "client_keepalive_timeout",
    "max_header_bytes",
    "max_headers",
    "trusted_proxies",
    "proxy_protocol",
    "proxy_protocol_timeout",
    "h2_max_concurrent_streams",
    "h2_stream_window",
    "h2_connection_window",
    "h2_max_reset_streams",
    "websocket_max_frame",
    "max_connections",
    "max_connections_per_ip",
    "max_connection_rate_per_ip",
    "ban_after",
    "ban_time",
    "max_tracked_ips",
    "upstream_connect_timeout",
    "upstream_response_timeout",
    "upstream_keepalive_timeout",
    "upstream_keepalive",
    "fail_threshold",
    "fail_timeout",
    "fail_timeout_max",
    "max_ejected_percent",
    "max_registered_backends",
    "metrics_interval",
    "metrics_timeout",
    "metrics_max_age",
    "health_interval",
    "health_timeout",
    "health_rise",
    "health_fall",
    "health_jitter",
    "retries",
    "retry_budget",
    "config_history",
    // crate::observe::OBSERVE_KEYS, in that order:
    "history_interval",
    "history_window",
    "history_long_step",
    "history_long_window",
    "alert_webhook",
    "alert_webhook_timeout",
    "alert_webhook_retries",
    "default_alerts",
    // crate::security::SECURITY_KEYS, in that order:
    "admin_token_file",
    "admin_max_failures",
    "admin_block_time",
    "admin_session_ttl",
    "admin_max_sessions",
    "audit_log",
    "audit_max_bytes",
    "audit_max_age",
    "audit_keep",
    "audit_sample",
    "audit_queue",
    // crate::traffic::TRAFFIC_SERVER_KEYS, in that order:
    "cache_max_bytes",
    "mirror_max_body",
    "mirror_max_in_flight",
];
/// The keys of `[backend NAME]`, in the order they are rendered.
pub(crate) const BACKEND_KEYS: &[&str] = &[
    "address",
    "weight",
    "metrics",
    "models",
    "health",
    "progress_timeout",
    "protocol",
    "tls",
    "tls_ca",
    "tls_server_name",
];
/// The keys of `[route NAME]`, in the order they are rendered.
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "host",
    "path_prefix",
    "backends",
    "discovery",
    "balancer",
    "hash_key",
    "versions",
    "explain",
    "max_websockets",
    "websocket_max_frame",
    // crate::rewrite::REWRITE_KEYS, in that order:
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
    // crate::traffic::TRAFFIC_ROUTE_KEYS, in that order:
    "plugins",
    "mirror",
    "cache",
    "cache_ttl",
    "cache_max_ttl",
    "cache_max_object",
    "cache_post",
    "cache_streams",
];
/// The keys of `[l4 NAME]`, in the order they are rendered.
pub(crate) const L4_KEYS: &[&str] = &[
    "listen",
    "protocol",
    "backends",
    "balancer",
    "idle_timeout",
    "connect_timeout",
    "max_sessions",
    "max_datagram",
    "proxy_protocol",
    "proxy_protocol_timeout",
];
/// The range of `[l4 NAME]` `max_sessions`.
pub(crate) const MAX_SESSIONS_RANGE: (u64, u64) = (1, 1_000_000);
/// The range of `[l4 NAME]` `max_datagram`: a UDP payload is at most 65,535 bytes, and every
/// host must accept 512.
pub(crate) const MAX_DATAGRAM_RANGE: (usize, usize) = (512, 65_535);

/// The longest duration any key accepts.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
/// The most threads `threads` accepts.
pub(crate) const MAX_THREADS: u64 = 1024;
/// The range of `max_header_bytes`.
pub(crate) const HEADER_BYTES_RANGE: (usize, usize) = (8 * 1024, 1024 * 1024);
/// The most `max_headers` accepts.
pub(crate) const MAX_HEADERS: u64 = 1000;
/// The most `max_connections` and `max_connections_per_ip` accept.
pub(crate) const MAX_ACCEPT_LIMIT: u64 = 10_000_000;
/// The most `h2_max_concurrent_streams` and `h2_max_reset_streams` accept.
pub(crate) const MAX_H2_STREAMS: u64 = 10_000;
/// The most `upstream_keepalive` accepts.
pub(crate) const MAX_UPSTREAM_KEEPALIVE: u64 = 65_536;
/// The most `health_jitter` accepts, in percent.
pub(crate) const MAX_HEALTH_JITTER: u64 = 50;
/// The most `max_registered_backends` accepts.
pub(crate) const MAX_REGISTERED_BACKENDS: u64 = 4096;
/// The default `max_websockets`.
pub(crate) const DEFAULT_MAX_WEBSOCKETS: u32 = 10_000;
/// The most `max_websockets` accepts.
pub(crate) const MAX_WEBSOCKETS: u64 = 1_000_000;
/// The most `weight` accepts.
pub(crate) const MAX_WEIGHT: u64 = 10_000;

/// A duration parser accepting `0` only when `allow_zero`, and at most [`MAX_DURATION`].
fn duration(allow_zero: bool) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = parse_duration(s)?;
        if d.is_zero() && !allow_zero {
            Err("must be greater than 0".to_string())
        } else if d > MAX_DURATION {
            Err(format!("must be at most {}", format_duration(MAX_DURATION)))
        } else {
            Ok(d)
        }
    }
}

/// A whole-number parser for `lo..=hi`.
fn number<T: TryFrom<u64>>(lo: u64, hi: u64) -> impl Fn(&str) -> Result<T, String> {
    move |s| {
        let n = crate::value::parse_u64(s)?;
        if n < lo || n > hi {
            return Err(format!("must be between {lo} and {hi}"));
        }
        T::try_from(n).map_err(|_| format!("must be between {lo} and {hi}"))
    }
}

/// An HTTP/2 flow-control window: from the protocol's initial 65535 bytes to its largest,
/// 2^31 - 1.
fn h2_window(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    if !(65_535..=(i32::MAX as usize)).contains(&n) {
        return Err("must be between 65535 bytes and 2147483647 bytes (2^31 - 1)".to_string());
    }
    Ok(n as u32)
}

fn header_bytes(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    let (lo, hi) = HEADER_BYTES_RANGE;
    if n < lo || n > hi {
        return Err(format!("must be between 8k ({lo}) and 1m ({hi}) bytes"));
    }
    Ok(n)
}

/// Prefixes `reason` with the entry it is about when the list has several.
fn in_list(entries: &[&str], entry: &str, reason: String) -> String {
    if entries.len() > 1 {
        format!("`{entry}`: {reason}")
    } else {
        reason
    }
}

fn listen_list(s: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut seen = HashSet::new();
    let entries = parse_list(s)?;
    for &entry in &entries {
        let addr = parse_socket_addr(entry).map_err(|r| in_list(&entries, entry, r))?;
        if !seen.insert(addr) {
            return Err(format!("{addr} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

fn admin_listen(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_socket_addr(s)
        .map(Some)
        .map_err(|r| format!("{r}; or `off` to disable the admin endpoint"))
}

/// Whether binding `w` would also take `x`'s address: `0.0.0.0` covers every IPv4 address and
/// `[::]` (dual-stack) covers every address.
fn covers(w: IpAddr, x: IpAddr) -> bool {
    w.is_unspecified() && (w.is_ipv6() || x.is_ipv4())
}

/// Whether two listening addresses would collide. Port 0 (any free port) never collides.
pub(crate) fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Reads `[server]`.
pub(crate) fn read_server(r: &mut SectionReader<'_>) -> ServerConfig {
    let d = ServerConfig::default();
    let (admin_token_file, admin_max_failures, admin_block_time, admin_sessions, audit) =
        crate::security::read_security(r);
    let observe = crate::observe::read_observe(r);
    let traffic = crate::traffic::read_server_traffic(r);
    let server = ServerConfig {
        observe,
        traffic,
        admin_token_file,
        admin_max_failures,
        admin_block_time,
        admin_sessions,
        audit,
        listen: r.value("listen", d.listen, listen_list),
        threads: r.value("threads", d.threads, number(0, MAX_THREADS)),
        admin_listen: r.value("admin_listen", d.admin_listen, admin_listen),
        drain_timeout: r.value("drain_timeout", d.drain_timeout, duration(true)),
        client_header_timeout: r.value(
            "client_header_timeout",
            d.client_header_timeout,
            duration(false),
        ),
        client_keepalive_timeout: r.value(
            "client_keepalive_timeout",
            d.client_keepalive_timeout,
            duration(false),
        ),
        max_header_bytes: r.value("max_header_bytes", d.max_header_bytes, header_bytes),
        max_headers: r.value("max_headers", d.max_headers, number(1, MAX_HEADERS)),
        trusted_proxies: r.value("trusted_proxies", Vec::new(), crate::acl::cidr_list),
        proxy_protocol: r.value("proxy_protocol", d.proxy_protocol, |s| s.parse()),
        proxy_protocol_timeout: r.value(
            "proxy_protocol_timeout",
            d.proxy_protocol_timeout,
            crate::proxy_protocol::timeout,
        ),
        h2: H2Settings {
            max_concurrent_streams: r.value(
                "h2_max_concurrent_streams",
                d.h2.max_concurrent_streams,
                number(1, MAX_H2_STREAMS),
            ),
            stream_window: r.value("h2_stream_window", d.h2.stream_window, h2_window),
            connection_window: r.value("h2_connection_window", d.h2.connection_window, h2_window),
            max_reset_streams: r.value(
                "h2_max_reset_streams",
                d.h2.max_reset_streams,
                number(1, MAX_H2_STREAMS),
            ),
        },
        websocket_max_frame: r.value("websocket_max_frame", d.websocket_max_frame, parse_size),
        accept: AcceptSettings {
            max_connections: r.value(
                "max_connections",
                d.accept.max_connections,
                number(0, MAX_ACCEPT_LIMIT),
            ),
            max_connections_per_ip: r.value(
                "max_connections_per_ip",
                d.accept.max_connections_per_ip,
                number(0, MAX_ACCEPT_LIMIT),
            ),
            max_connection_rate_per_ip: r.value(
                "max_connection_rate_per_ip",
                d.accept.max_connection_rate_per_ip,
                number(0, 1000),
            ),
            ban_after: r.value("ban_after", d.accept.ban_after, number(0, 1_000_000)),
            ban_time: r.value("ban_time", d.accept.ban_time, duration(false)),
            max_tracked_ips: r.value(
                "max_tracked_ips",
                d.accept.max_tracked_ips,
                number(16, 10_000_000),
            ),
        },
        upstream_connect_timeout: r.value(
            "upstream_connect_timeout",
            d.upstream_connect_timeout,
            duration(false),
        ),
        upstream_response_timeout: r.value(
            "upstream_response_timeout",
            d.upstream_response_timeout,
            duration(false),
        ),
        upstream_keepalive_timeout: r.value(
            "upstream_keepalive_timeout",
            d.upstream_keepalive_timeout,
            duration(false),
        ),
        upstream_keepalive: r.value(
            "upstream_keepalive",
            d.upstream_keepalive,
            number(0, MAX_UPSTREAM_KEEPALIVE),
        ),
        fail_threshold: r.value(
            "fail_threshold",
            d.fail_threshold,
            number(0, u64::from(u32::MAX)),
        ),
        fail_timeout: r.value("fail_timeout", d.fail_timeout, duration(false)),
        fail_timeout_max: r.value("fail_timeout_max", d.fail_timeout_max, duration(false)),
        max_ejected_percent: r.value("max_ejected_percent", d.max_ejected_percent, |s| {
            number(0, 100)(s.strip_suffix('%').unwrap_or(s))
        }),
        max_registered_backends: r.value(
            "max_registered_backends",
            d.max_registered_backends,
            number(0, MAX_REGISTERED_BACKENDS),
        ),
        metrics_interval: r.value("metrics_interval", d.metrics_interval, |s| {
            let v = duration(false)(s)?;
            if v < Duration::from_millis(50) {
                return Err("must be at least 50ms".to_string());
            }
            Ok(v)
        }),
        metrics_timeout: r.value("metrics_timeout", d.metrics_timeout, duration(false)),
        metrics_max_age: r.value("metrics_max_age", d.metrics_max_age, duration(false)),
        health_interval: r.value("health_interval", d.health_interval, duration(false)),
        health_timeout: r.value("health_timeout", d.health_timeout, duration(false)),
        health_rise: r.value("health_rise", d.health_rise, number(1, 100)),
        health_fall: r.value("health_fall", d.health_fall, number(1, 100)),
        health_jitter: r.value("health_jitter", d.health_jitter, |s| {
            number(0, MAX_HEALTH_JITTER)(s.strip_suffix('%').unwrap_or(s))
        }),
        retries: r.value("retries", d.retries, number(0, 5)),
        retry_budget: r.value("retry_budget", d.retry_budget, |s| {
            number(0, 100)(s.strip_suffix('%').unwrap_or(s))
        }),
        config_history: r.value("config_history", d.config_history, number(1, 1000)),
    };
    check_admin_listen(r, &server);
    if server.proxy_protocol.is_on()
        && server.trusted_proxies.is_empty()
        && !r.failed("trusted_proxies")
    {
        let kind = crate::proxy_protocol::needs_trusted_proxies();
        r.error(r.line_of("proxy_protocol"), Some("proxy_protocol"), kind);
    }
    server
}

/// `admin_listen` must not collide with any `listen` address.
fn check_admin_listen(r: &mut SectionReader<'_>, server: &ServerConfig) {
    if r.failed("listen") || r.failed("admin_listen") {
        return;
    }
    let Some(admin) = server.admin_listen else {
        return;
    };
    let Some(&listen) = server.listen.iter().find(|l| collide(**l, admin)) else {
        return;
    };
    // Blame admin_listen when it was written, else the listen line that moved onto it.
    let key = if r.get("admin_listen").is_some() || r.get("listen").is_none() {
        "admin_listen"
    } else {
        "listen"
    };
    let line = r.line_of(key);
    r.error(
        line,
        Some(key),
        ErrorKind::AdminListenConflict { admin, listen },
    );
}

/// Reads `[backend NAME]`; `None` if it has errors.
pub(crate) fn read_backend(r: &mut SectionReader<'_>, name: &str) -> Option<BackendConfig> {
    let address = r.required("address", |s| s.parse::<Address>());
    let weight = r.value("weight", DEFAULT_WEIGHT, number(1, MAX_WEIGHT));
    let mut metrics = r.value("metrics", None, |s| s.parse::<MetricsEndpoint>().map(Some));
    let models = r.value("models", Vec::new(), model_list);
    let health = r.value("health", None, |s| s.parse::<HealthCheck>().map(Some));
    let progress_timeout = r.value("progress_timeout", None, |s| duration(false)(s).map(Some));
    let protocol = r.value("protocol", BackendProtocol::default(), |s| s.parse());
    let tls_on = r.value("tls", false, boolean);
    let ca = r.value("tls_ca", None, |s| non_empty(s).map(Some));
    let server_name = r.value("tls_server_name", None, |s| server_name(s).map(Some));
    for key in ["tls_ca", "tls_server_name"] {
        if !tls_on && r.get(key).is_some() {
            let kind = ErrorKind::NeedsKey {
                needed: "tls = true".to_string(),
                reason: format!("`{key}` only applies to TLS connections"),
            };
            r.error(r.line_of(key), Some(key), kind);
        }
    }
    let tls = tls_on.then_some(BackendTls { ca, server_name });
    if let Some(m) = &mut metrics {
        m.progress_timeout = progress_timeout;
    } else if progress_timeout.is_some() && r.get("metrics").is_none() {
        let kind = ErrorKind::NeedsKey {
            needed: "metrics".to_string(),
            reason: "the progress check reads the engine's generated-token counter from its \
                     metrics endpoint"
                .to_string(),
        };
        r.error(
            r.line_of("progress_timeout"),
            Some("progress_timeout"),
            kind,
        );
    }
    Some(BackendConfig {
        name: name.to_string(),
        address: address?,
        weight,
        metrics,
        models,
        health,
        protocol,
        tls,
    })
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// A DNS name or IP address for SNI and certificate checks.
fn server_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if valid {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("expected a DNS name or an IP address".to_string())
    }
}

/// A route as read, before the cross-checks that need the whole file.
pub(crate) struct RouteRead {
    /// The route, with defaults where values were invalid.
    pub config: RouteConfig,
    /// The line of `backends` (the header's if absent).
    pub backends_line: usize,
    /// Whether the section had no errors (only clean routes are compared for duplicates).
    pub clean: bool,
}

fn host_list(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let entries = parse_list(s)?;
    for &entry in &entries {
        let host = normalize_host_pattern(entry).map_err(|r| in_list(&entries, entry, r))?;
        if !seen.insert(host.clone()) {
            return Err(format!("host `{host}` is listed twice"));
        }
        out.push(host);
    }
    Ok(out)
}

fn path_prefix(s: &str) -> Result<String, String> {
    let valid = s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
    if !valid {
        return Err(
            "expected a path starting with `/`, of visible ASCII characters \
                    (no spaces, `?` or `#`), e.g. /v1/"
                .to_string(),
        );
    }
    Ok(s.to_string())
}

fn model_list(s: &str) -> Result<Vec<ModelId>, String> {
    let mut out: Vec<ModelId> = Vec::new();
    for entry in parse_list(s)? {
        let id: ModelId = entry.parse()?;
        if out.contains(&id) {
            return Err(format!("model `{id}` is listed twice"));
        }
        out.push(id);
    }
    Ok(out)
}

fn backend_list(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for entry in parse_list(s)? {
        if !is_valid_name(entry) {
            return Err(format!(
                "`{entry}` is not a backend name (A-Z a-z 0-9 _ . - only)"
            ));
        }
        if !seen.insert(entry) {
            return Err(format!("backend `{entry}` is listed twice"));
        }
        out.push(entry.to_string());
    }
    Ok(out)
}

fn balancer(r: &mut SectionReader<'_>) -> String {
    let Some(entry) = r.get("balancer") else {
        return DEFAULT_BALANCER.to_string();
    };
    if switchyard_balance::is_known(&entry.value) {
        return entry.value.clone();
    }
    let kind = ErrorKind::UnknownBalancer {
        name: entry.value.clone(),
        known: switchyard_balance::names().map(str::to_string).collect(),
        suggestion: suggest(&entry.value, switchyard_balance::names()),
    };
    r.error(entry.line, Some("balancer"), kind);
    DEFAULT_BALANCER.to_string()
}

fn boolean(s: &str) -> Result<bool, String> {
    match s {
        "true" | "on" | "yes" => Ok(true),
        "false" | "off" | "no" => Ok(false),
        _ => Err("expected true or false".to_string()),
    }
}

/// Reads `[route NAME]` (the backends' existence is checked later, against the whole file).
pub(crate) fn read_route(r: &mut SectionReader<'_>, name: &str) -> RouteRead {
    let config = RouteConfig {
        name: name.to_string(),
        hosts: r.value("host", Vec::new(), host_list),
        path_prefix: r.value("path_prefix", DEFAULT_PATH_PREFIX.to_string(), path_prefix),
        discovery: r.value("discovery", false, boolean),
        backends: Vec::new(),
        balancer: balancer(r),
        hash_key: r.value("hash_key", HashKey::default(), |s| s.parse()),
        versions: r.value("versions", Vec::new(), crate::versions::parse_versions),
        explain: r.value("explain", false, boolean),
        max_websockets: r.value(
            "max_websockets",
            DEFAULT_MAX_WEBSOCKETS,
            number(0, MAX_WEBSOCKETS),
        ),
        websocket_max_frame: r.value("websocket_max_frame", None, |s| parse_size(s).map(Some)),
        rewrite: crate::rewrite::read_rewrite(r),
        traffic: crate::traffic::read_route_traffic(r),
    };
    // A route open to registered backends may start with none of its own.
    let mut config = config;
    config.backends = if config.discovery {
        r.value("backends", Vec::new(), backend_list)
    } else {
        r.required("backends", backend_list).unwrap_or_default()
    };
    RouteRead {
        config,
        backends_line: r.line_of("backends"),
        clean: !r.had_errors(),
    }
}

/// An L4 listener as read, before the cross-checks that need the whole file.
pub(crate) struct L4Read {
    /// The listener; `None` if a required key is missing or invalid.
    pub config: Option<L4Config>,
    /// The line of `listen` (the header's if absent).
    pub listen_line: usize,
    /// The line of `backends` (the header's if absent).
    pub backends_line: usize,
    /// The line of `proxy_protocol` (the header's if absent).
    pub proxy_protocol_line: usize,
}

/// Reads `[l4 NAME]` (the backends' existence and address collisions are checked later,
/// against the whole file).
pub(crate) fn read_l4(r: &mut SectionReader<'_>, name: &str) -> L4Read {
    let listen = r.required("listen", parse_socket_addr);
    let protocol = r.value("protocol", L4Protocol::default(), |s| s.parse());
    let backends = r.required("backends", backend_list);
    let balancer = balancer(r);
    // Defaults that depend on the protocol; `new` fills them in.
    let defaults = L4Config::new(
        name,
        "0.0.0.0:0".parse().expect("literal"),
        protocol,
        vec![],
    );
    let idle_timeout = r.value("idle_timeout", defaults.idle_timeout, duration(false));
    let connect_timeout = r.value("connect_timeout", None, |s| duration(false)(s).map(Some));
    let (lo, hi) = MAX_SESSIONS_RANGE;
    let max_sessions = r.value("max_sessions", defaults.max_sessions, number(lo, hi));
    let max_datagram = r.value("max_datagram", defaults.max_datagram, datagram_size);
    let (proxy_protocol, proxy_protocol_timeout) =
        crate::proxy_protocol::read_port_keys(r, protocol == L4Protocol::Tcp);
    let not_for: &[(&str, &str)] = match protocol {
        L4Protocol::Tcp => &[
            (
                "max_sessions",
                "it caps UDP sessions; TCP tunnels are bounded by open files",
            ),
            ("max_datagram", "TCP carries byte streams, not datagrams"),
        ],
        L4Protocol::Udp => &[
            (
                "connect_timeout",
                "UDP has no connection handshake to time out",
            ),
            (
                "proxy_protocol",
                "the PROXY protocol header is read at the start of a TCP connection",
            ),
            (
                "proxy_protocol_timeout",
                "the PROXY protocol header is read at the start of a TCP connection",
            ),
        ],
    };
    for (key, reason) in not_for {
        if let Some(entry) = r.get(key) {
            let kind = ErrorKind::NotForProtocol {
                protocol: protocol.to_string(),
                reason: (*reason).to_string(),
            };
            r.error(entry.line, Some(key), kind);
        }
    }
    let config = match (listen, backends) {
        (Some(listen), Some(backends)) => Some(L4Config {
            name: name.to_string(),
            listen,
            protocol,
            backends,
            balancer,
            idle_timeout,
            connect_timeout,
            max_sessions,
            max_datagram,
            proxy_protocol,
            proxy_protocol_timeout,
        }),
        _ => None,
    };
    L4Read {
        config,
        listen_line: r.line_of("listen"),
        backends_line: r.line_of("backends"),
        proxy_protocol_line: r.line_of("proxy_protocol"),
    }
}

fn datagram_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    let (lo, hi) = MAX_DATAGRAM_RANGE;
    if n < lo || n > hi {
        return Err(format!("must be between {lo} and {hi} bytes"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn collisions() {
        assert!(collide(sa("127.0.0.1:80"), sa("127.0.0.1:80")));
        assert!(collide(sa("0.0.0.0:80"), sa("127.0.0.1:80")));
        assert!(collide(sa("127.0.0.1:80"), sa("0.0.0.0:80")));
        assert!(collide(sa("[::]:80"), sa("127.0.0.1:80")));
        assert!(collide(sa("[::]:80"), sa("[::1]:80")));
        assert!(!collide(sa("0.0.0.0:80"), sa("[::1]:80")));
        assert!(!collide(sa("127.0.0.1:80"), sa("127.0.0.1:81")));
        assert!(!collide(sa("127.0.0.1:80"), sa("127.0.0.2:80")));
        assert!(!collide(sa("127.0.0.1:0"), sa("127.0.0.1:0")));
    }

    #[test]
    fn path_prefixes() {
        assert!(path_prefix("/").is_ok());
        assert!(path_prefix("/v1/chat").is_ok());
        for bad in ["", "v1", "/a b", "/a?b", "/a#b", "/\u{e9}", "/a\tb"] {
            assert!(path_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_ranges() {
        assert!(duration(true)("0").is_ok());
        assert!(duration(false)("0").is_err());
        assert!(duration(false)("24h").is_ok());
        assert!(duration(false)("1441m").is_err());
    }
}
