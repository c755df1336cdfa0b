//! The service-discovery API on the admin listener:
//!
//! - `GET /admin/backends`: every backend, static and registered, with its health, figures and
//!   source;
//! - `POST /admin/backends`: register (or update) a backend, a JSON object with `address`
//!   (required), `id`, `models`, `weight`, `metrics`, `health`, `ttl` and `routes`;
//! - `PUT /admin/backends/{id}/heartbeat`: extend a registration by its TTL;
//! - `DELETE /admin/backends/{id}`: remove a registration.
//!
//! A registered backend whose TTL lapses without a heartbeat is removed (the admin thread
//! checks every [`EXPIRY_TICK`]). Registered backends join their routes' groups at once;
//! requests already running keep the backends they started with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Map, Value};
use switchyard_config::{value, Address, BackendConfig, HealthCheck, MetricsEndpoint, ModelId};

use crate::observe::report::backend_json;
use crate::server::Shared;
use crate::upstream::directory::{Registered, Registration};

/// How often lapsed registrations are looked for.
pub const EXPIRY_TICK: Duration = Duration::from_millis(250);
/// The TTL of a registration that gives none.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The longest TTL accepted.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// The largest registration body read.
pub const MAX_BODY: usize = 64 * 1024;
/// The longest id accepted.
pub const MAX_ID: usize = 64;

/// A response: status and JSON body.
pub type Reply = (http::StatusCode, Value);

fn error(status: http::StatusCode, message: impl Into<String>) -> Reply {
    (status, json!({ "error": message.into() }))
}

/// `GET /admin/backends`.
pub fn list(shared: &Shared) -> Reply {
    let now = shared.clock.now_ms();
    let m = shared.directory.snapshot();
    let backends: Vec<Value> = m
        .backends()
        .map(|b| backend_json(shared, &m, b, now))
        .collect();
    (
        http::StatusCode::OK,
        json!({
            "registered_max": shared.directory.max_registered(),
            "registered": m.backends().filter(|b| b.is_registered()).count(),
            "backends": backends,
        }),
    )
}

/// `POST /admin/backends` with `body`.
pub async fn register(shared: &Shared, body: &[u8]) -> Reply {
    let reg = match parse(shared, body).await {
        Ok(r) => r,
        Err(msg) => return error(http::StatusCode::BAD_REQUEST, msg),
    };
    let now = shared.clock.now_ms();
    match shared.directory.register(reg, now) {
        Ok((b, outcome)) => {
            tracing::info!(
                backend = %b.name(),
                address = %b.config.address,
                models = ?b.config.models.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "backend {}",
                if outcome == Registered::Created { "registered" } else { "registration updated" }
            );
            let status = match outcome {
                Registered::Created => http::StatusCode::CREATED,
                Registered::Updated => http::StatusCode::OK,
            };
            (
                status,
                backend_json(shared, &shared.directory.snapshot(), &b, now),
            )
        }
        Err(e) => error(http::StatusCode::CONFLICT, e.to_string()),
    }
}

/// `PUT /admin/backends/{id}/heartbeat`.
pub fn heartbeat(shared: &Shared, id: &str) -> Reply {
    let now = shared.clock.now_ms();
    match shared.directory.heartbeat(id, now) {
        Some(until) => (
            http::StatusCode::OK,
            json!({ "id": id, "expires_in_ms": until.saturating_sub(now) }),
        ),
        None => not_registered(id),
    }
}

/// `DELETE /admin/backends/{id}`.
pub fn remove(shared: &Shared, id: &str) -> Reply {
    if shared.directory.remove(id) {
        tracing::info!(backend = %id, "backend removed through the admin API");
        (http::StatusCode::OK, json!({ "removed": id }))
    } else {
        not_registered(id)
    }
}

fn not_registered(id: &str) -> Reply {
    error(
        http::StatusCode::NOT_FOUND,
        format!("no registered backend {id:?} (static backends change with the config)"),
    )
}

/// Removes lapsed registrations, forever (run on the admin thread).
pub async fn expiry_loop(shared: &Shared) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for name in shared.directory.expire(shared.clock.now_ms()) {
            tracing::warn!(backend = %name, "registered backend removed: its TTL lapsed without a heartbeat");
            shared
                .audit
                .control("backend_expired", None, json!({ "backend": name }));
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Validates a registration body; the error names the field.
async fn parse(shared: &Shared, body: &[u8]) -> Result<Registration, String> {
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let obj = doc
        .as_object()
        .ok_or("body must be a JSON object with at least \"address\"")?;
    const FIELDS: &[&str] = &[
        "id", "address", "models", "weight", "metrics", "health", "ttl", "routes", "protocol",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {k:?}; fields are {}",
            FIELDS.join(", ")
        ));
    }
    let id = match obj.get("id") {
        None | Some(Value::Null) => {
            format!("registered-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
        }
        Some(Value::String(s)) if valid_id(s) => s.clone(),
        Some(_) => {
            return Err(format!(
                "\"id\" must be 1..={MAX_ID} characters of A-Z a-z 0-9 . _ -"
            ))
        }
    };
    let address: Address = string(obj, "address")?
        .ok_or("\"address\" (host:port) is required")?
        .parse()
        .map_err(|e| format!("\"address\": {e}"))?;
    let addr = resolve(&address).await?;
    let weight = match obj.get("weight") {
        None | Some(Value::Null) => 1,
        Some(v) => v
            .as_u64()
            .filter(|w| (1..=10_000).contains(w))
            .ok_or("\"weight\" must be an integer in 1..=10000")? as u32,
    };
    let models = match obj.get("models") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| {
                m.as_str()
                    .ok_or_else(|| "\"models\" must be a list of strings".to_string())?
                    .parse::<ModelId>()
                    .map_err(|e| format!("\"models\": {e}"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"models\" must be a list of strings".into()),
    };
    let metrics = string(obj, "metrics")?
        .map(|m| m.parse::<MetricsEndpoint>())
        .transpose()
        .map_err(|e| format!("\"metrics\": {e}"))?;
    let health = string(obj, "health")?
        .map(|h| h.parse::<HealthCheck>())
        .transpose()
        .map_err(|e| format!("\"health\": {e}"))?;
    let protocol = string(obj, "protocol")?
        .map(|p| p.parse::<switchyard_config::BackendProtocol>())
        .transpose()
        .map_err(|e| format!("\"protocol\": {e}"))?
        .unwrap_or_default();
    let ttl = match obj.get("ttl") {
        None | Some(Value::Null) => DEFAULT_TTL,
        Some(Value::Number(n)) => Duration::from_secs(
            n.as_u64()
                .ok_or("\"ttl\" must be a whole number of seconds or a duration such as \"30s\"")?,
        ),
        Some(Value::String(s)) => value::parse_duration(s).map_err(|e| format!("\"ttl\": {e}"))?,
        Some(_) => return Err("\"ttl\" must be seconds or a duration such as \"30s\"".into()),
    };
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err("\"ttl\" must be between 1s and 24h".into());
    }
    let routing = shared.routing();
    let routes = &routing.config.routes;
    let open: Vec<String> = routes
        .iter()
        .filter(|r| r.discovery)
        .map(|r| r.name.clone())
        .collect();
    let open_names = || {
        let names: Vec<&str> = open.iter().map(String::as_str).collect();
        if names.is_empty() {
            "no route has `discovery = true`".to_string()
        } else {
            format!("routes with `discovery = true`: {}", names.join(", "))
        }
    };
    let routes = match obj.get("routes") {
        None | Some(Value::Null) => open.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| {
                let name = r.as_str().unwrap_or_default();
                open.iter().find(|n| *n == name).cloned().ok_or_else(|| {
                    format!(
                        "\"routes\": {r} is not open to registration; {}",
                        open_names()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("\"routes\" must be a list of route names".into()),
    };
    if routes.is_empty() {
        return Err(format!(
            "\"routes\": the backend would join no route; {}",
            open_names()
        ));
    }
    Ok(Registration {
        config: BackendConfig {
            name: id.clone(),
            address,
            weight,
            metrics,
            models,
            health,
            protocol,
            tls: None,
        },
        id,
        addr,
        ttl,
        routes,
    })
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key:?} must be a string")),
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn resolve(address: &Address) -> Result<SocketAddr, String> {
    let lookup = tokio::net::lookup_host((address.host.as_str(), address.port));
    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
        Ok(Ok(mut addrs)) => addrs
            .next()
            .ok_or_else(|| format!("\"address\": {address} resolves to nothing")),
        Ok(Err(e)) => Err(format!("\"address\": {address} does not resolve: {e}")),
        Err(_) => Err(format!("\"address\": resolving {address} timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_id;

    #[test]
    fn ids() {
        assert!(valid_id("gpu-7.node_a"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
