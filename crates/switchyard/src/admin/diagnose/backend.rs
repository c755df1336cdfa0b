//! What `/admin/diagnose` says about one backend besides its live probe: its health as the
//! balancers see it (and why), its metrics scrapes, its connection counters and its last
//! upstream errors.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use crate::server::Shared;
use crate::upstream::directory::{Backend, Source};
use crate::upstream::errlog;
use crate::upstream::health::DOWN;

/// The backend's entry, without its probe.
pub fn report(shared: &Shared, b: &Backend, routes: Vec<&str>, now_ms: u64) -> Value {
    json!({
        "name": b.name(),
        "source": match b.source {
            Source::Static => "static",
            Source::Registered { .. } => "registered",
        },
        "address": b.config.address.to_string(),
        "resolved": b.addr.to_string(),
        "protocol": b.config.protocol.to_string(),
        "tls": b.tls.is_some(),
        "routes": routes,
        "models": b.config.models.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "health": health(shared, b, now_ms),
        "metrics": metrics(shared, b, now_ms),
        "pool": pool(shared, b),
        "last_errors": last_errors(shared, b),
    })
}

/// `up`, `down` (an active check or the progress check), `ejected` (passive health), and why.
fn health(shared: &Shared, b: &Backend, now_ms: u64) -> Value {
    let h = &shared.health[b.slot];
    let stalled = h.is_stalled();
    let check_down = h.state.load(Relaxed) == DOWN && !stalled;
    let available = b.state.is_available(now_ms);
    let mut reasons = Vec::new();
    if check_down {
        let check = b.config.health.as_ref().map(ToString::to_string);
        reasons.push(format!(
            "the active health check ({}) is failing",
            check.as_deref().unwrap_or("?")
        ));
    }
    if stalled {
        reasons.push(
            "requests are running but the engine's token counter stands still (progress_timeout)"
                .to_string(),
        );
    }
    let state = if available {
        "up"
    } else if check_down || stalled {
        "down"
    } else {
        reasons.push(format!(
            "ejected by passive health after consecutive failures ({} ejection(s) so far)",
            b.outlier.ejections()
        ));
        "ejected"
    };
    if available && b.state.is_penalized(now_ms) {
        reasons.push("answered 429 or 503 recently: chosen less until its Retry-After".into());
    }
    json!({
        "state": state,
        "reasons": reasons,
        "active": b.config.health.as_ref().map(|check| json!({
            "check": check.to_string(),
            "state": h.state_name(),
            "ok": h.ok.load(Relaxed),
            "failed": h.failed.load(Relaxed),
        })),
        "consecutive_failures": b.outlier.consecutive(),
        "ejections": b.outlier.ejections(),
    })
}

/// The last scrape: its age, outcome and error (`null` without `metrics`).
fn metrics(shared: &Shared, b: &Backend, now_ms: u64) -> Value {
    let Some(endpoint) = &b.config.metrics else {
        return Value::Null;
    };
    let s = &shared.scrapes[b.slot];
    let last = s.last();
    let now_unix = errlog::unix_ms();
    let secs = |ms: u64| (ms as f64 / 100.0).round() / 10.0;
    let outcome = match &last {
        None => "none yet",
        Some(l) if l.error.is_none() => "ok",
        Some(_) => "failed",
    };
    json!({
        "endpoint": endpoint.to_string(),
        "last_scrape_age_s": last.as_ref().map(|l| secs(now_unix.saturating_sub(l.unix_ms))),
        "last_outcome": outcome,
        "last_error": last.and_then(|l| l.error),
        "figures_age_s": b.state.figures_scraped_at().map(|at| secs(now_ms.saturating_sub(at))),
        "fresh": b.state.figures(now_ms).is_some(),
        "scrapes_ok": s.ok.load(Relaxed),
        "scrapes_failed": s.failed.load(Relaxed),
    })
}

/// The connection counters there are: requests in flight, connections opened and reused, and
/// how many idle connections each reactor thread may keep.
fn pool(shared: &Shared, b: &Backend) -> Value {
    let s = shared.stats.backend(b.slot);
    json!({
        "in_flight": b.state.in_flight(),
        "connections_opened": s.conns_opened,
        "connections_reused": s.conns_reused,
        "max_idle_per_thread": shared.routing().config.server.upstream_keepalive,
        "requests": s.requests,
        "errors": s.errors,
    })
}

fn last_errors(shared: &Shared, b: &Backend) -> Vec<Value> {
    let Some(log) = shared.upstream_errors.get(b.slot) else {
        return Vec::new();
    };
    log.recent(b.generation)
        .into_iter()
        .map(|e| {
            json!({
                "cause": e.cause.name(),
                "status": match e.cause {
                    errlog::Cause::Status(s) => Some(s),
                    _ => None,
                },
                "message": e.message,
                "unix_ms": e.unix_ms,
            })
        })
        .collect()
}
