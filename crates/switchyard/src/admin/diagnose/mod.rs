//! `/admin/diagnose` as JSON: per backend (static and registered) a live probe run on demand
//! ([`probe`]), its health, metrics scrapes, connection counters and last errors
//! ([`backend`]), and the config validated again ([`config_check`]).
//!
//! `POST /admin/diagnose` (or `GET /admin/diagnose?run=1`) runs the checks now. A plain `GET`
//! answers the last report if it is younger than [`FRESH_FOR`], else runs them: reloading the
//! page does not hammer the backends. One run at a time per server; a request that waited
//! for a run that started after it arrived takes that run's report. Probes run concurrently,
//! at most [`MAX_PROBES`] at once, each bounded by `upstream_connect_timeout` plus
//! `health_timeout`.

pub mod backend;
pub mod config_check;
pub mod probe;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};

use crate::server::Shared;
use crate::upstream::health::Target;

/// How long a plain `GET` answers the last report rather than probing again.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// Probes running at once.
pub const MAX_PROBES: usize = 16;

/// The last report, and the lock that makes runs one at a time (in [`Shared`]).
#[derive(Debug, Default)]
pub struct Runs {
    last: Mutex<Option<Report>>,
}

#[derive(Debug)]
struct Report {
    started: Instant,
    doc: Arc<Value>,
}

/// Answers `method /admin/diagnose?query`.
pub async fn handle(shared: &Shared, method: &Method, query: Option<&str>) -> (StatusCode, Value) {
    let arrived = Instant::now();
    let forced = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "run" || kv == "run=1" || kv == "run=true")
    });
    let run_now = match *method {
        Method::POST => true,
        Method::GET | Method::HEAD => forced,
        _ => {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error": "use GET /admin/diagnose (the last report, or a new one) or POST /admin/diagnose (run the checks now)"}),
            )
        }
    };
    let mut last = shared.diagnose.last.lock().await;
    if let Some(r) = last.as_ref() {
        let reusable = if run_now {
            r.started >= arrived
        } else {
            r.started.elapsed() < FRESH_FOR
        };
        if reusable {
            let mut doc = (*r.doc).clone();
            doc["cached"] = json!(!run_now);
            return (StatusCode::OK, doc);
        }
    }
    let started = Instant::now();
    let doc = Arc::new(run(shared).await);
    *last = Some(Report {
        started,
        doc: Arc::clone(&doc),
    });
    let mut doc = (*doc).clone();
    doc["cached"] = json!(false);
    (StatusCode::OK, doc)
}

/// Runs every check and builds the report.
pub async fn run(shared: &Shared) -> Value {
    let started = Instant::now();
    let generated_unix_ms = crate::upstream::errlog::unix_ms();
    let membership = shared.directory.snapshot();
    let server = &membership.routing.config.server;
    let timeouts = probe::Timeouts {
        connect: server.upstream_connect_timeout,
        http: server.health_timeout,
    };
    let backends: Vec<_> = membership.backends().cloned().collect();
    let limit = Arc::new(Semaphore::new(MAX_PROBES));
    let mut probes = tokio::task::JoinSet::new();
    for (i, b) in backends.iter().enumerate() {
        let b = Arc::clone(b);
        let limit = Arc::clone(&limit);
        probes.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let target = Target {
                name: b.config.name.clone(),
                addr: b.addr,
                address: b.config.address.clone(),
                models: b.config.models.clone(),
                tls: b.tls.clone(),
            };
            let report = probe::run(
                &target,
                b.config.health.as_ref(),
                b.config.protocol,
                timeouts,
            )
            .await;
            (i, report)
        });
    }
    let mut results: Vec<Value> = vec![Value::Null; backends.len()];
    while let Some(done) = probes.join_next().await {
        if let Ok((i, report)) = done {
            results[i] = report;
        }
    }
    let now_ms = shared.clock.now_ms();
    let entries: Vec<Value> = backends
        .iter()
        .zip(results)
        .map(|(b, probe)| {
            let mut entry = backend::report(shared, b, membership.routes_of(b), now_ms);
            entry["probe"] = probe;
            entry
        })
        .collect();
    json!({
        "generated_unix_ms": generated_unix_ms,
        "duration_ms": started.elapsed().as_millis() as u64,
        "timeouts_ms": {
            "connect": timeouts.connect.as_millis() as u64,
            "http": timeouts.http.as_millis() as u64,
        },
        "config": config_check::report(shared),
        "backends": entries,
    })
}
