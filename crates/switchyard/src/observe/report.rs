//! The `/stats` JSON document, built from the merged counters and the backend states.

use crate::net::proxy_protocol::gate::ProxyStats;
use serde_json::{json, Map, Value};
use switchyard_config::L4Protocol;

use super::histogram::Snapshot;
use super::stats::{ErrorKind, ItemTotals};
use crate::server::Shared;
use crate::upstream::directory::{Backend, Membership, Source};

fn classes(status: &[u64; 6]) -> Value {
    json!({
        "1xx": status[1], "2xx": status[2], "3xx": status[3],
        "4xx": status[4], "5xx": status[5], "other": status[0],
    })
}

fn latency(h: &Snapshot) -> Value {
    json!({
        "count": h.count(),
        "p50": h.quantile(0.50),
        "p90": h.quantile(0.90),
        "p99": h.quantile(0.99),
    })
}

/// Resident memory of this process in bytes, from `/proc/self/status` (0 where unavailable).
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A backend's scraped figures: `null` when it has no `metrics` endpoint.
fn engine_figures(shared: &Shared, b: &Backend, now: u64) -> Value {
    if b.config.metrics.is_none() {
        return Value::Null;
    }
    let st = &b.state;
    let fresh = st.figures(now);
    let s = &shared.scrapes[b.slot];
    json!({
        "fresh": fresh.is_some(),
        "age_ms": st.figures_scraped_at().map(|at| now.saturating_sub(at)),
        "waiting": fresh.and_then(|f| f.waiting),
        "running": fresh.and_then(|f| f.running),
        "kv_cache_usage": fresh.and_then(|f| f.kv_cache_usage),
        "gpu_util": fresh.and_then(|f| f.gpu_util),
        "gpu_memory_usage": fresh.and_then(|f| f.gpu_memory_usage),
        "scrapes_ok": s.ok.load(std::sync::atomic::Ordering::Relaxed),
        "scrapes_failed": s.failed.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// The whole `/stats` document.
pub fn stats_json(shared: &Shared) -> Value {
    let t = shared.stats.totals();
    let mut errors = Map::new();
    for k in ErrorKind::ALL {
        errors.insert(k.name().into(), json!(t.errors[k as usize]));
    }
    let now = shared.clock.now_ms();
    let membership = shared.directory.snapshot();
    let routing = &membership.routing;
    let routes: Vec<Value> = routing
        .config
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let s: ItemTotals = shared.stats.route(routing.stat_slots[i]);
            json!({
                "name": r.name,
                "hosts": r.hosts,
                "path_prefix": r.path_prefix,
                "balancer": r.balancer,
                "backends": membership.groups[i].backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
                "requests": s.requests,
                "errors": s.errors,
                "responses": classes(&s.status),
                "latency_us": latency(&s.latency),
                "prefix_index_entries": (r.balancer == "prefix_cache").then_some(s.prefix_index_entries),
                "websocket": {
                    "max_frame": r.websocket_max_frame(&routing.config.server),
                    "frames_too_large": s.websocket_frames_too_large,
                    "protocol_errors": s.websocket_protocol_errors,
                },
            })
        })
        .collect();
    let backends: Vec<Value> = membership
        .backends()
        .map(|b| backend_json(shared, &membership, b, now))
        .collect();
    let ports = shared.ports.current();
    let l4: Vec<Value> = ports
        .l4
        .iter()
        .map(|port| {
            let (l, s) = (&port.config, port.totals());
            let mut v = json!({
                "name": l.name,
                "protocol": l.protocol.to_string(),
                "listen": port.addr.to_string(),
                "backends": l.backends,
                "balancer": l.balancer,
                "no_backend": s.no_backend,
            });
            let counts = match l.protocol {
                L4Protocol::Tcp => json!({
                    "connections": s.connections,
                    "active": s.connections.saturating_sub(s.closed),
                    "connect_failures": s.connect_failures,
                    "idle_timeouts": s.idle_timeouts,
                }),
                L4Protocol::Udp => json!({
                    "sessions": s.sessions,
                    "active": s.sessions.saturating_sub(s.sessions_closed),
                    "max_sessions": l.max_sessions,
                    "sessions_expired": s.sessions_expired,
                    "sessions_rejected": s.sessions_rejected,
                    "datagrams_dropped": s.datagrams_dropped,
                }),
            };
            if let (Some(v), Value::Object(counts)) = (v.as_object_mut(), counts) {
                v.extend(counts);
            }
            if l.proxy_protocol.is_on() {
                v["proxy_protocol"] =
                    ProxyStats::report(l.proxy_protocol, port.stats.iter().map(|t| &t.proxy));
            }
            v
        })
        .collect();
    let (history, alerts) = crate::admin::observe::stats_parts(shared);
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "process": {
            "uptime_secs": (shared.clock.uptime_secs() * 1000.0).round() / 1000.0,
            "threads": shared.threads,
            "resident_memory_bytes": resident_memory_bytes(),
            "open_files_limit": shared.nofile_limit,
        },
        "totals": {
            "connections": {
                "accepted": t.conns_accepted,
                "active": t.conns_accepted.saturating_sub(t.conns_closed),
            },
            "requests": t.requests,
            "retries": t.retries,
            "responses": classes(&t.status),
            "bytes": { "in": t.bytes_in, "out": t.bytes_out },
            "errors": errors,
        },
        "routes": routes,
        "backends": backends,
        "l4": l4,
        "listeners": crate::net::listeners::report(&ports.listeners),
        "listen": listen_json(shared),
        "audit": shared.audit.stats_json(),
        "admin": shared.admin_auth.stats_json(),
        "limits": routing.limits.report(),
        "budgets": routing.budgets.report(),
        "acls": routing.acls.report(),
        "plugins": routing.plugins.report(),
        "cache": shared.cache.report(),
        "mirror": shared.mirrors.report(),
        "config": shared.reloads.stats_json(),
        "accept": crate::net::accept_limit::report(shared.accept_limit.as_ref()),
        "history": history,
        "alerts": alerts,
    })
}

/// `[server] listen`'s part of `/stats`: its addresses, and its PROXY protocol counters when
/// `proxy_protocol` is on.
fn listen_json(shared: &Shared) -> Value {
    let s = &shared.config.server;
    let mut v = json!({
        "listen": s.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if s.proxy_protocol.is_on() {
        v["proxy_protocol"] =
            ProxyStats::report(s.proxy_protocol, shared.stats.threads().map(|t| &t.proxy));
    }
    v
}

/// One backend's entry in `/stats` and `GET /admin/backends`.
pub fn backend_json(shared: &Shared, membership: &Membership, b: &Backend, now: u64) -> Value {
    let s = shared.stats.backend(b.slot);
    let st = &b.state;
    let source = match b.source {
        Source::Static => json!("static"),
        Source::Registered { .. } => json!("registered"),
    };
    let expires_in_ms = match b.source {
        Source::Static => None,
        Source::Registered { .. } => Some(
            b.expires_ms
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(now),
        ),
    };
    json!({
        "name": b.name(),
        "source": source,
        "expires_in_ms": expires_in_ms,
        "address": b.config.address.to_string(),
        "resolved": b.addr.to_string(),
        "weight": b.config.weight,
        "models": b.config.models.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": membership.routes_of(b),
        "up": st.is_available(now),
        "in_flight": st.in_flight(),
        "consecutive_failures": b.outlier.consecutive(),
        "ejections": b.outlier.ejections(),
        "ewma_latency_us": st.ewma_latency_us().round(),
        "peak_ewma_latency_us": st.peak_latency_us(now).round(),
        "penalized": st.is_penalized(now),
        "queue_estimate": st.queue_estimate(now),
        "engine": engine_figures(shared, b, now),
        "health": b.config.health.as_ref().map(|check| {
            let h = &shared.health[b.slot];
            json!({
                "check": check.to_string(),
                "state": h.state_name(),
                "ok": h.ok.load(std::sync::atomic::Ordering::Relaxed),
                "failed": h.failed.load(std::sync::atomic::Ordering::Relaxed),
            })
        }),
        "requests": s.requests,
        "errors": s.errors,
        "connections_opened": s.conns_opened,
        "connections_reused": s.conns_reused,
        "latency_us": latency(&s.latency),
        "tcp_bytes_in": s.l4_bytes_in,
        "tcp_bytes_out": s.l4_bytes_out,
        "udp_datagrams_in": s.udp_datagrams_in,
        "udp_datagrams_out": s.udp_datagrams_out,
        "udp_bytes_in": s.udp_bytes_in,
        "udp_bytes_out": s.udp_bytes_out,
    })
}
