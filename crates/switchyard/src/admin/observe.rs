//! `GET /history` and `GET /admin/alerts`: the sampler's series and alerts as JSON.

use http::StatusCode;
use serde_json::{json, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::time::UNIX_EPOCH;

use crate::clock::unix_ms;

use super::form::param;
use crate::server::Shared;

/// How far back `/history` reaches without `since`, in seconds.
pub const DEFAULT_SINCE_SECS: u64 = 300;

/// `GET /history?series=a,b&since=SECONDS`: each series' points over the last `since`
/// seconds (default [`DEFAULT_SINCE_SECS`]), times in Unix milliseconds.
pub fn history(shared: &Shared, query: &str) -> (StatusCode, Value) {
    let since_secs = match param(query, "since") {
        None => DEFAULT_SINCE_SECS,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "since must be a whole number of seconds ago, e.g. since=300"}),
                )
            }
        },
    };
    let now = shared.clock.now_ms();
    // Clock milliseconds to Unix milliseconds.
    let offset = unix_ms().saturating_sub(now);
    let since_ms = now.saturating_sub(since_secs.saturating_mul(1000));
    let sampler = shared.monitor.sampler();
    let available = sampler.series();
    let wanted: Vec<String> = match param(query, "series") {
        Some(s) if !s.is_empty() => s
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect(),
        _ => switchyard_config::GLOBAL_SERIES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut series = serde_json::Map::new();
    for name in &wanted {
        let Some(p) = sampler.query(name, since_ms) else {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": format!("unknown series {name:?}"), "available": available}),
            );
        };
        let points: Vec<Value> = p
            .points
            .iter()
            .map(|(t, v)| json!([t + offset, v.map(f64::from)]))
            .collect();
        series.insert(
            name.clone(),
            json!({"step_ms": p.step_ms, "points": points}),
        );
    }
    (
        StatusCode::OK,
        json!({"series": series, "available": available}),
    )
}

/// `GET /admin/alerts`: the alerts firing, the rules and the notifications' counters.
pub fn alerts(shared: &Shared) -> (StatusCode, Value) {
    let now = shared.clock.now_ms();
    let offset = unix_ms().saturating_sub(now);
    let sampler = shared.monitor.sampler();
    let firing: Vec<Value> = sampler
        .firing()
        .into_iter()
        .map(|(rule, series, severity, value, since)| {
            json!({
                "alert": rule,
                "series": series,
                "severity": severity.name(),
                "value": value.filter(|v| v.is_finite()),
                "since": crate::audit::line::rfc3339(
                    UNIX_EPOCH + std::time::Duration::from_millis(since + offset)
                ),
            })
        })
        .collect();
    let rules: Vec<Value> = sampler
        .rules()
        .map(|r| {
            let c = &r.condition;
            let cmp = match c.comparison {
                crate::observe::alerts::Comparison::Above => "above",
                crate::observe::alerts::Comparison::Below => "below",
            };
            json!({
                "name": r.name,
                "series": r.series,
                cmp: c.threshold,
                "resolve": c.resolve_threshold,
                "for_ms": c.for_ms,
                "resolve_for_ms": c.resolve_for_ms,
                "severity": r.severity.name(),
            })
        })
        .collect();
    let n = &shared.monitor.notifications;
    (
        StatusCode::OK,
        json!({
            "firing": firing,
            "rules": rules,
            "webhook": shared.config.server.observe.alert_webhook.as_ref().map(ToString::to_string),
            "notifications": {
                "sent": n.sent.load(Relaxed),
                "failed": n.failed.load(Relaxed),
                "dropped": n.dropped.load(Relaxed),
            },
        }),
    )
}

/// `/stats`' `history` and `alerts` parts.
pub fn stats_parts(shared: &Shared) -> (Value, Value) {
    let sampler = shared.monitor.sampler();
    (
        json!({
            "memory_bytes": sampler.memory_bytes(),
            "interval_ms": shared.monitor.interval_ms,
            "series": sampler.series().len(),
        }),
        json!({"firing": sampler.firing().len(), "rules": sampler.rules().count()}),
    )
}
