//! Typed config back to INI text.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::model::{
    BackendConfig, Config, HashKey, L4Config, L4Protocol, RouteConfig, ServerConfig,
};
use crate::value::{format_duration, format_list, format_size};

fn addr_list(addrs: &[SocketAddr]) -> String {
    let strings: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    format_list(&strings)
}

/// Every `[server]` key with its value as INI text, in canonical order.
pub(crate) fn server_values(s: &ServerConfig) -> Vec<(&'static str, String)> {
    let mut values = vec![
        ("listen", addr_list(&s.listen)),
        ("threads", s.threads.to_string()),
        (
            "admin_listen",
            s.admin_listen
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
        ),
        ("drain_timeout", format_duration(s.drain_timeout)),
        (
            "client_header_timeout",
            format_duration(s.client_header_timeout),
        ),
        (
            "client_keepalive_timeout",
            format_duration(s.client_keepalive_timeout),
        ),
        ("max_header_bytes", format_size(s.max_header_bytes)),
        ("max_headers", s.max_headers.to_string()),
        (
            "trusted_proxies",
            crate::acl::format_cidrs(&s.trusted_proxies),
        ),
        ("proxy_protocol", s.proxy_protocol.to_string()),
        (
            "proxy_protocol_timeout",
            format_duration(s.proxy_protocol_timeout),
        ),
        (
            "h2_max_concurrent_streams",
            s.h2.max_concurrent_streams.to_string(),
        ),
        ("h2_stream_window", format_size(s.h2.stream_window as usize)),
        (
            "h2_connection_window",
            format_size(s.h2.connection_window as usize),
        ),
        ("h2_max_reset_streams", s.h2.max_reset_streams.to_string()),
        ("websocket_max_frame", format_size(s.websocket_max_frame)),
        ("max_connections", s.accept.max_connections.to_string()),
        (
            "max_connections_per_ip",
            s.accept.max_connections_per_ip.to_string(),
        ),
        (
            "max_connection_rate_per_ip",
            s.accept.max_connection_rate_per_ip.to_string(),
        ),
        ("ban_after", s.accept.ban_after.to_string()),
        ("ban_time", format_duration(s.accept.ban_time)),
        ("max_tracked_ips", s.accept.max_tracked_ips.to_string()),
        (
            "upstream_connect_timeout",
            format_duration(s.upstream_connect_timeout),
        ),
        (
            "upstream_response_timeout",
            format_duration(s.upstream_response_timeout),
        ),
        (
            "upstream_keepalive_timeout",
            format_duration(s.upstream_keepalive_timeout),
        ),
        ("upstream_keepalive", s.upstream_keepalive.to_string()),
        ("fail_threshold", s.fail_threshold.to_string()),
        ("fail_timeout", format_duration(s.fail_timeout)),
        ("fail_timeout_max", format_duration(s.fail_timeout_max)),
        ("max_ejected_percent", format!("{}%", s.max_ejected_percent)),
        (
            "max_registered_backends",
            s.max_registered_backends.to_string(),
        ),
        ("metrics_interval", format_duration(s.metrics_interval)),
        ("metrics_timeout", format_duration(s.metrics_timeout)),
        ("metrics_max_age", format_duration(s.metrics_max_age)),
        ("health_interval", format_duration(s.health_interval)),
        ("health_timeout", format_duration(s.health_timeout)),
        ("health_rise", s.health_rise.to_string()),
        ("health_fall", s.health_fall.to_string()),
        ("health_jitter", format!("{}%", s.health_jitter)),
        ("retries", s.retries.to_string()),
        ("retry_budget", format!("{}%", s.retry_budget)),
        ("config_history", s.config_history.to_string()),
    ];
    values.extend(crate::observe::observe_values(&s.observe));
    let security = crate::security::security_values(s);
    values.extend(security);
    values.extend(crate::traffic::server_traffic_values(&s.traffic));
    values
}

/// Every `[backend NAME]` key with its value as INI text, in canonical order.
pub(crate) fn backend_values(b: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![
        ("address", b.address.to_string()),
        ("weight", b.weight.to_string()),
        (
            "metrics",
            b.metrics
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            "models",
            b.models
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "health",
            b.health
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            "progress_timeout",
            b.metrics
                .as_ref()
                .and_then(|m| m.progress_timeout)
                .map(format_duration)
                .unwrap_or_default(),
        ),
        ("protocol", b.protocol.to_string()),
        (
            "tls",
            if b.tls.is_some() {
                "true".into()
            } else {
                String::new()
            },
        ),
        (
            "tls_ca",
            b.tls
                .as_ref()
                .and_then(|t| t.ca.clone())
                .unwrap_or_default(),
        ),
        (
            "tls_server_name",
            b.tls
                .as_ref()
                .and_then(|t| t.server_name.clone())
                .unwrap_or_default(),
        ),
    ]
}

/// Every `[route NAME]` key with its value as INI text, in canonical order (`host` is empty
/// when the route matches any host).
pub(crate) fn route_values(r: &RouteConfig) -> Vec<(&'static str, String)> {
    let mut values = vec![
        ("host", format_list(&r.hosts)),
        ("path_prefix", r.path_prefix.clone()),
        ("backends", format_list(&r.backends)),
        (
            "discovery",
            if r.discovery {
                "true".into()
            } else {
                String::new()
            },
        ),
        ("balancer", r.balancer.clone()),
        // The default is left out, like an empty `host`.
        (
            "hash_key",
            if r.hash_key == HashKey::default() {
                String::new()
            } else {
                r.hash_key.to_string()
            },
        ),
        (
            "versions",
            r.versions
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "explain",
            if r.explain {
                "true".into()
            } else {
                String::new()
            },
        ),
        // The default is left out.
        (
            "max_websockets",
            if r.max_websockets == crate::sections::DEFAULT_MAX_WEBSOCKETS {
                String::new()
            } else {
                r.max_websockets.to_string()
            },
        ),
        // Unset: the `[server]` value applies.
        (
            "websocket_max_frame",
            r.websocket_max_frame.map(format_size).unwrap_or_default(),
        ),
    ];
    values.extend(crate::rewrite::rewrite_values(&r.rewrite));
    values.extend(crate::traffic::route_traffic_values(&r.traffic));
    values
}

/// Every `[l4 NAME]` key with its value as INI text, in canonical order (`connect_timeout` is
/// empty when the server's `upstream_connect_timeout` applies; keys the protocol does not
/// use are empty).
pub(crate) fn l4_values(l: &L4Config) -> Vec<(&'static str, String)> {
    let udp = l.protocol == L4Protocol::Udp;
    let udp_only = |v: String| if udp { v } else { String::new() };
    let mut values = vec![
        ("listen", l.listen.to_string()),
        ("protocol", l.protocol.to_string()),
        ("backends", format_list(&l.backends)),
        ("balancer", l.balancer.clone()),
        ("idle_timeout", format_duration(l.idle_timeout)),
        (
            "connect_timeout",
            l.connect_timeout.map(format_duration).unwrap_or_default(),
        ),
        ("max_sessions", udp_only(l.max_sessions.to_string())),
        ("max_datagram", udp_only(format_size(l.max_datagram))),
    ];
    values.extend(crate::proxy_protocol::port_values(
        l.proxy_protocol,
        l.proxy_protocol_timeout,
    ));
    values
}

fn section<K: std::fmt::Display>(out: &mut String, header: &str, values: Vec<(K, String)>) {
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "[{header}]");
    for (key, value) in values {
        // An empty value means "not set" (an unset optional key, or an empty `host`).
        if !value.is_empty() {
            let _ = writeln!(out, "{key} = {value}");
        }
    }
}

/// Renders `config` as INI text that [`parse`](crate::parse) turns back into `config`.
pub(crate) fn to_ini(config: &Config) -> String {
    let mut out = String::new();
    section(&mut out, "server", server_values(&config.server));
    for b in &config.backends {
        section(&mut out, &format!("backend {}", b.name), backend_values(b));
    }
    for r in &config.routes {
        section(&mut out, &format!("route {}", r.name), route_values(r));
    }
    for l in &config.l4 {
        section(&mut out, &format!("l4 {}", l.name), l4_values(l));
    }
    for l in &config.listeners {
        let values = crate::listener::listener_values(l);
        section(&mut out, &format!("listener {}", l.name), values);
    }
    for a in &config.acls {
        let values = crate::acl::acl_values(a);
        section(&mut out, &format!("acl {}", a.name), values);
    }
    for l in &config.limits {
        let values = crate::limit::limit_values(l);
        section(&mut out, &format!("limit {}", l.name), values);
    }
    for b in &config.budgets {
        let values = crate::budget::budget_values(b);
        section(&mut out, &format!("budget {}", b.name), values);
    }
    for a in &config.alerts {
        let values = crate::alert::alert_values(a);
        section(&mut out, &format!("alert {}", a.name), values);
    }
    for p in &config.plugins {
        let values = crate::traffic::plugin_values(p);
        section(&mut out, &format!("plugin {}", p.name), values);
    }
    out
}
