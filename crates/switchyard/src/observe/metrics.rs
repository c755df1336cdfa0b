//! The `/metrics` document: the counters, gauges and latency histograms of `/stats` in the
//! Prometheus text format, with conventional names and bounded labels (route, backend, L4
//! listener, status class, error kind, alert).

use switchyard_config::L4Protocol;

use super::exposition::{Exposition, Kind};
use super::histogram::Snapshot;
use super::stats::{ErrorKind, L4Totals};
use crate::server::Shared;

/// The bucket bounds of the latency histograms, in seconds.
pub const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const CLASSES: [(usize, &str); 6] = [
    (1, "1xx"),
    (2, "2xx"),
    (3, "3xx"),
    (4, "4xx"),
    (5, "5xx"),
    (0, "other"),
];

/// Folds a latency snapshot (microseconds, fine buckets) into [`BUCKETS`]: each fine bucket
/// goes to the first bound at or above its upper bound, the rest to a last infinite bucket.
/// Returns the buckets (not cumulative) and the approximate sum in seconds.
pub fn fold(s: &Snapshot) -> (Vec<(f64, u64)>, f64) {
    let mut out: Vec<(f64, u64)> = BUCKETS.iter().map(|b| (*b, 0)).collect();
    out.push((f64::INFINITY, 0));
    for (upper_us, count) in s.buckets() {
        let secs = upper_us as f64 / 1e6;
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        out[i].1 += count;
    }
    (out, s.approximate_sum() as f64 / 1e6)
}

/// The whole document.
pub fn render(shared: &Shared) -> String {
    let mut e = Exposition::new();
    let t = shared.stats.totals();
    let now = shared.clock.now_ms();
    let counter = |e: &mut Exposition, name: &str, help: &str, v: u64| {
        e.family(name, Kind::Counter, help)
            .sample(name, &[], v as f64);
    };
    requests(&mut e, shared);
    let name = "switchyard_responses_total";
    e.family(name, Kind::Counter, "Responses sent, by status class.");
    for (i, code) in CLASSES {
        e.sample(name, &[("code", code)], t.status[i] as f64);
    }
    counter(
        &mut e,
        "switchyard_retries_total",
        "Requests retried on another backend.",
        t.retries,
    );
    counter(
        &mut e,
        "switchyard_received_bytes_total",
        "Bytes received from clients.",
        t.bytes_in,
    );
    counter(
        &mut e,
        "switchyard_sent_bytes_total",
        "Bytes sent to clients.",
        t.bytes_out,
    );
    let name = "switchyard_errors_total";
    e.family(
        name,
        Kind::Counter,
        "Failed requests and connections, by kind.",
    );
    for k in ErrorKind::ALL {
        e.sample(name, &[("kind", k.name())], t.errors[k as usize] as f64);
    }
    counter(
        &mut e,
        "switchyard_connections_accepted_total",
        "Client connections accepted.",
        t.conns_accepted,
    );
    let name = "switchyard_connections_active";
    e.family(name, Kind::Gauge, "Client connections open.")
        .sample(
            name,
            &[],
            t.conns_accepted.saturating_sub(t.conns_closed) as f64,
        );
    routes(&mut e, shared);
    backends(&mut e, shared, now);
    l4(&mut e, shared);
    security(&mut e, shared);
    traffic(&mut e, shared);
    alerts(&mut e, shared);
    let name = "switchyard_uptime_seconds";
    e.family(name, Kind::Gauge, "Seconds since the server started.")
        .sample(
            name,
            &[],
            (shared.clock.uptime_secs() * 1000.0).round() / 1000.0,
        );
    e.finish()
}

/// `switchyard_requests_total{route,backend,code}`: answered requests by route, backend and
/// status class. `route=""` when no route matched, `backend=""` when the proxy answered
/// without trying a backend (for a proxy error after one was tried, the last one tried); a
/// pair appears with its first response, a class once it has counted one. Pairs past a
/// thread's table (see [`super::pairs`]) are counted under `route="*",backend="*"`.
fn requests(e: &mut Exposition, shared: &Shared) {
    let routing = shared.routing();
    let membership = shared.directory.snapshot();
    let route_name = |slot: Option<usize>| match slot {
        None => Some(""),
        Some(s) => routing
            .stat_slots
            .iter()
            .position(|x| *x == s)
            .map(|i| routing.config.routes[i].name.as_str()),
    };
    let backend_names: std::collections::HashMap<usize, &str> =
        membership.backends().map(|b| (b.slot, b.name())).collect();
    let backend_name = |slot: Option<usize>| match slot {
        None => Some(""),
        Some(s) => backend_names.get(&s).copied(),
    };
    let (pairs, overflow) = shared.stats.pairs();
    let name = "switchyard_requests_total";
    e.family(
        name,
        Kind::Counter,
        "Requests answered, by route, backend and status class.",
    );
    let rows = pairs.iter().filter_map(|(p, counts)| {
        // A slot this scrape cannot name has just changed hands: its counts are going away.
        Some((route_name(p.route)?, backend_name(p.backend)?, counts))
    });
    for (route, backend, counts) in rows.chain([("*", "*", &overflow)]) {
        for (i, code) in CLASSES {
            if counts[i] > 0 {
                let labels = [("route", route), ("backend", backend), ("code", code)];
                e.sample(name, &labels, counts[i] as f64);
            }
        }
    }
}

fn routes(e: &mut Exposition, shared: &Shared) {
    let routing = shared.routing();
    let routes: Vec<_> = routing
        .config
        .routes
        .iter()
        .zip(&routing.stat_slots)
        .map(|(r, slot)| (r.name.as_str(), shared.stats.route(*slot)))
        .collect();
    e.labelled(
        "switchyard_route_requests_total",
        Kind::Counter,
        "Requests matched to each route.",
        "route",
        routes.iter().map(|(r, s)| (*r, s.requests as f64)),
    );
    let name = "switchyard_route_responses_total";
    e.family(
        name,
        Kind::Counter,
        "Responses of each route, by status class.",
    );
    for (route, s) in &routes {
        for (i, code) in CLASSES {
            e.sample(
                name,
                &[("route", route), ("code", code)],
                s.status[i] as f64,
            );
        }
    }
    let name = "switchyard_route_request_duration_seconds";
    e.family(
        name,
        Kind::Histogram,
        "Request duration per route, from the request head to the end of the response.",
    );
    for (route, s) in &routes {
        let (buckets, sum) = fold(&s.latency);
        e.histogram(name, &[("route", route)], &buckets, sum);
    }
}

/// Reads one figure of a scrape.
type Figure = fn(&switchyard_balance::LoadFigures) -> Option<f64>;

fn backends(e: &mut Exposition, shared: &Shared, now: u64) {
    let membership = shared.directory.snapshot();
    let all: Vec<_> = membership.backends().collect();
    let totals: Vec<_> = all.iter().map(|b| shared.stats.backend(b.slot)).collect();
    let each = |f: &dyn Fn(usize) -> f64| -> Vec<(&str, f64)> {
        all.iter()
            .enumerate()
            .map(|(i, b)| (b.name(), f(i)))
            .collect()
    };
    e.labelled(
        "switchyard_backend_requests_total",
        Kind::Counter,
        "Requests sent to each backend.",
        "backend",
        each(&|i| totals[i].requests as f64),
    );
    e.labelled(
        "switchyard_backend_errors_total",
        Kind::Counter,
        "Failed exchanges with each backend.",
        "backend",
        each(&|i| totals[i].errors as f64),
    );
    e.labelled(
        "switchyard_backend_up",
        Kind::Gauge,
        "1 if balancers may pick the backend, else 0.",
        "backend",
        each(&|i| f64::from(u8::from(all[i].state.is_available(now)))),
    );
    e.labelled(
        "switchyard_backend_in_flight",
        Kind::Gauge,
        "Requests in flight to each backend through this proxy.",
        "backend",
        each(&|i| all[i].state.in_flight() as f64),
    );
    let figures: Vec<_> = all
        .iter()
        .map(|b| (b.name(), b.state.figures(now)))
        .collect();
    let scraped: [(&str, &str, Figure); 3] = [
        (
            "switchyard_backend_waiting",
            "Requests waiting in the engine (fresh scrapes only).",
            |f| f.waiting.map(|v| v as f64),
        ),
        (
            "switchyard_backend_kv_cache_usage",
            "The engine's KV-cache usage, 0..1 (fresh scrapes only).",
            |f| f.kv_cache_usage,
        ),
        (
            "switchyard_backend_gpu_utilization",
            "The engine's GPU utilisation, 0..1 (fresh scrapes only).",
            |f| f.gpu_util,
        ),
    ];
    for (name, help, get) in scraped {
        let values: Vec<_> = figures
            .iter()
            .filter_map(|(n, f)| f.as_ref().and_then(get).map(|v| (*n, v)))
            .collect();
        if values.is_empty() {
            continue;
        }
        e.labelled(name, Kind::Gauge, help, "backend", values);
    }
}

fn l4(e: &mut Exposition, shared: &Shared) {
    let ports = shared.ports.current();
    if ports.l4.is_empty() {
        return;
    }
    let all: Vec<_> = ports
        .l4
        .iter()
        .map(|p| (p.config.name.as_str(), p.config.protocol, p.totals()))
        .collect();
    let each = |f: &dyn Fn(L4Protocol, &L4Totals) -> u64| -> Vec<(&str, f64)> {
        all.iter().map(|(n, p, s)| (*n, f(*p, s) as f64)).collect()
    };
    e.labelled(
        "switchyard_l4_connections_total",
        Kind::Counter,
        "TCP connections (UDP sessions) accepted per L4 listener.",
        "listener",
        each(&|p, s| match p {
            L4Protocol::Tcp => s.connections,
            L4Protocol::Udp => s.sessions,
        }),
    );
    e.labelled(
        "switchyard_l4_connections_active",
        Kind::Gauge,
        "TCP connections (UDP sessions) open per L4 listener.",
        "listener",
        each(&|p, s| match p {
            L4Protocol::Tcp => s.connections.saturating_sub(s.closed),
            L4Protocol::Udp => s.sessions.saturating_sub(s.sessions_closed),
        }),
    );
    e.labelled(
        "switchyard_l4_connect_failures_total",
        Kind::Counter,
        "Backend connections that failed per L4 listener.",
        "listener",
        each(&|_, s| s.connect_failures),
    );
    e.labelled(
        "switchyard_l4_no_backend_total",
        Kind::Counter,
        "Connections refused for want of a backend per L4 listener.",
        "listener",
        each(&|_, s| s.no_backend),
    );
}

/// A family's `(label value, value)` pairs.
type Values<'a> = Vec<(&'a str, f64)>;

/// The `[limit]`, `[budget]` and `[acl]` counters, read from their atomics: a scrape takes
/// none of the key tables' locks that requests take.
/// The response cache, mirroring and plugins.
fn traffic(e: &mut Exposition, shared: &Shared) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &shared.cache.store.counters;
    let (entries, bytes, counts) = shared.cache.store.size();
    let name = "switchyard_cache_lookups_total";
    e.family(name, Kind::Counter, "Response cache lookups, by result.");
    e.sample(name, &[("result", "hit")], c.hits.load(Relaxed) as f64);
    e.sample(name, &[("result", "miss")], c.misses.load(Relaxed) as f64);
    let gauges = [
        (
            "switchyard_cache_entries",
            "Responses in the cache.",
            entries,
        ),
        ("switchyard_cache_bytes", "Bytes the cache holds.", bytes),
    ];
    for (name, help, v) in gauges {
        e.family(name, Kind::Gauge, help)
            .sample(name, &[], v as f64);
    }
    let name = "switchyard_cache_evictions_total";
    e.family(
        name,
        Kind::Counter,
        "Entries evicted to stay within cache_max_bytes.",
    )
    .sample(name, &[], counts.evicted as f64);
    let m = &shared.mirrors;
    let name = "switchyard_mirror_requests_total";
    e.family(name, Kind::Counter, "Mirrored copies, by outcome.");
    for (result, v) in [
        ("answered", &m.answered),
        ("failed", &m.failed),
        ("skipped_too_large", &m.skipped_too_large),
        ("skipped_busy", &m.skipped_busy),
    ] {
        e.sample(name, &[("result", result)], v.load(Relaxed) as f64);
    }
    let routing = shared.routing();
    let slots = &routing.plugins.slots;
    if !slots.is_empty() {
        let values = |f: fn(&crate::plugin::PluginCounters) -> u64| -> Values {
            slots
                .iter()
                .map(|s| (s.config.name.as_str(), f(&s.counters) as f64))
                .collect()
        };
        e.labelled(
            "switchyard_plugin_failures_total",
            Kind::Counter,
            "Failed calls of each [plugin] (each a 500, or a failed completion).",
            "plugin",
            values(|c| c.failed.load(Relaxed)),
        );
        e.labelled(
            "switchyard_plugin_answered_total",
            Kind::Counter,
            "Requests each [plugin] answered itself.",
            "plugin",
            values(|c| c.answered.load(Relaxed)),
        );
    }
}

fn security(e: &mut Exposition, shared: &Shared) {
    let routing = shared.routing();
    let f = |v: u64| v as f64;
    let limits: Vec<_> = routing.limits.denied();
    let budgets = routing.budgets.counters();
    let acls = routing.acls.report();
    let acls: Vec<(&str, f64)> = acls
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.get("name")?.as_str()?, v.get("denied")?.as_f64()?)))
        .collect();
    let families: [(&str, &str, &str, Values); 4] = [
        (
            "switchyard_limit_denied_total",
            "Requests refused by each [limit].",
            "limit",
            limits.iter().map(|(n, d)| (*n, f(*d))).collect(),
        ),
        (
            "switchyard_budget_denied_total",
            "Requests refused by each [budget].",
            "budget",
            budgets.iter().map(|(n, d, _)| (*n, f(*d))).collect(),
        ),
        (
            "switchyard_budget_tokens_charged_total",
            "Tokens charged to each [budget].",
            "budget",
            budgets.iter().map(|(n, _, c)| (*n, f(*c))).collect(),
        ),
        (
            "switchyard_acl_denied_total",
            "Requests and connections denied by each [acl].",
            "acl",
            acls,
        ),
    ];
    for (name, help, label, values) in families {
        if values.is_empty() {
            continue;
        }
        e.labelled(name, Kind::Counter, help, label, values);
    }
}

fn alerts(e: &mut Exposition, shared: &Shared) {
    let (firing, rules, memory) = {
        let s = shared.monitor.sampler();
        let rules: Vec<(String, &'static str)> = s
            .rules()
            .map(|r| (r.name.clone(), r.severity.name()))
            .collect();
        (s.firing(), rules, s.memory_bytes())
    };
    let name = "switchyard_alerts_firing";
    e.family(
        name,
        Kind::Gauge,
        "Alerts firing per rule (a backend rule counts each backend).",
    );
    for (rule, severity) in &rules {
        let n = firing.iter().filter(|f| &f.0 == rule).count();
        e.sample(name, &[("alert", rule), ("severity", severity)], n as f64);
    }
    let n = &shared.monitor.notifications;
    let name = "switchyard_alert_notifications_total";
    e.family(
        name,
        Kind::Counter,
        "Alert notifications for the webhook, by outcome.",
    );
    for (result, c) in [
        ("sent", &n.sent),
        ("failed", &n.failed),
        ("dropped", &n.dropped),
    ] {
        let v = c.load(std::sync::atomic::Ordering::Relaxed);
        e.sample(name, &[("result", result)], v as f64);
    }
    let name = "switchyard_history_memory_bytes";
    e.family(
        name,
        Kind::Gauge,
        "Bytes the history holds once its windows are full.",
    )
    .sample(name, &[], memory as f64);
}

#[cfg(test)]
mod tests {
    use super::super::histogram::Histogram;
    use super::*;

    #[test]
    fn fine_buckets_fold_into_the_fixed_bounds() {
        let h = Histogram::default();
        h.record(1_000); // 1 ms
        h.record(40_000); // 40 ms
        h.record(40_000);
        h.record(120_000_000); // 2 min: past the largest bound
        let mut s = Snapshot::default();
        h.merge_into(&mut s);
        let (buckets, sum) = fold(&s);
        assert_eq!(buckets.len(), BUCKETS.len() + 1);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 4);
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[3], (0.05, 2));
        assert_eq!(buckets[BUCKETS.len()].1, 1);
        assert!(sum > 120.0, "{sum}");
    }
}
