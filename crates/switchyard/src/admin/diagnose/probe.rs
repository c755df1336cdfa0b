//! The live probe of one backend for `/admin/diagnose`: its address looked up again (when it
//! is a name) while a TCP connection (and TLS, with `tls = true`) is opened and timed, then
//! side by side the HTTP request its health check makes (or `GET /health`) and
//! `GET /v1/models`. Every step has its own timeout, so a probe ends within the connect
//! timeout plus the HTTP timeout.

use std::io;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_config::{BackendProtocol, HealthCheck};
use tokio::net::TcpStream;

use crate::upstream::health::probe::{self as check, ProbeError};
use crate::upstream::health::Target;

/// The most model ids a probe reports.
const SHOWN_MODELS: usize = 100;

/// How long each step may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// The TCP (and TLS) connect, and the name lookup: `upstream_connect_timeout`.
    pub connect: Duration,
    /// Each HTTP request: `health_timeout`.
    pub http: Duration,
}

/// Why a connect failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// Nothing listens there.
    Refused,
    /// No answer within the connect timeout.
    Timeout,
    /// No route to the host or network.
    Unreachable,
    /// The connection was reset during the (TLS) handshake.
    Reset,
    /// The TLS handshake failed.
    Tls,
    /// Anything else the operating system said.
    Other,
}

impl ConnectCause {
    fn of(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectCause::Refused,
            io::ErrorKind::TimedOut => ConnectCause::Timeout,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                ConnectCause::Unreachable
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ConnectCause::Reset
            }
            _ => ConnectCause::Other,
        }
    }

    /// The name in the report.
    pub fn name(self) -> &'static str {
        match self {
            ConnectCause::Refused => "refused",
            ConnectCause::Timeout => "timeout",
            ConnectCause::Unreachable => "unreachable",
            ConnectCause::Reset => "reset",
            ConnectCause::Tls => "tls",
            ConnectCause::Other => "other",
        }
    }
}

/// Probes `target` now; `check` is its configured health check, `protocol` what the proxy
/// speaks to it.
pub async fn run(
    target: &Target,
    check: Option<&HealthCheck>,
    protocol: BackendProtocol,
    t: Timeouts,
) -> Value {
    let started = Instant::now();
    let (resolve, connect) = tokio::join!(resolve(target, t.connect), connect(target, t.connect));
    let mut out = json!({ "resolve": resolve, "connect": connect.report });
    if !connect.ok {
        out["http"] = json!({ "skipped": "no connection" });
        out["models"] = json!({ "skipped": "no connection" });
    } else if protocol == BackendProtocol::H2c {
        let why = "h2c backend: the probe speaks HTTP/1.1, connect only";
        out["http"] = json!({ "skipped": why });
        out["models"] = json!({ "skipped": why });
    } else {
        let (http, models) = tokio::join!(http(target, check, t.http), models(target, t.http));
        out["http"] = http;
        out["models"] = models;
    }
    out["duration_ms"] = json!(ms(started.elapsed()));
    out
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The configured name looked up again (`null` for an IP address).
async fn resolve(target: &Target, timeout: Duration) -> Value {
    let a = &target.address;
    if a.ip().is_some() {
        return Value::Null;
    }
    let lookup = tokio::net::lookup_host((a.host.as_str(), a.port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<String> = addrs.take(8).map(|a| a.to_string()).collect();
            json!({ "ok": !addrs.is_empty(), "addresses": addrs, "in_use": target.addr.to_string() })
        }
        Ok(Err(e)) => json!({ "ok": false, "cause": "dns", "error": e.to_string() }),
        Err(_) => {
            json!({ "ok": false, "cause": "timeout", "error": format!("no answer within {timeout:?}") })
        }
    }
}

struct Connected {
    ok: bool,
    report: Value,
}

/// A TCP connect (and TLS handshake) to the address in use, closed again.
async fn connect(target: &Target, timeout: Duration) -> Connected {
    let started = Instant::now();
    let failed = |cause: ConnectCause, error: String| Connected {
        ok: false,
        report: json!({
            "ok": false,
            "cause": cause.name(),
            "error": error,
            "ms": ms(started.elapsed()),
        }),
    };
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(target.addr)).await {
        Err(_) => {
            let why = format!("no connection within upstream_connect_timeout ({timeout:?})");
            return failed(ConnectCause::Timeout, why);
        }
        Ok(Err(e)) => return failed(ConnectCause::of(&e), e.to_string()),
        Ok(Ok(tcp)) => tcp,
    };
    let connect_ms = ms(started.elapsed());
    let Some(tls) = target.tls.as_deref() else {
        return Connected {
            ok: true,
            report: json!({ "ok": true, "ms": connect_ms, "tls": false }),
        };
    };
    let left = timeout.saturating_sub(started.elapsed());
    let tls_started = Instant::now();
    match tokio::time::timeout(left, crate::upstream::tls::UpStream::open(tcp, Some(tls))).await {
        Err(_) => failed(
            ConnectCause::Timeout,
            format!("TLS handshake not done within upstream_connect_timeout ({timeout:?})"),
        ),
        Ok(Err(e)) => {
            let cause = match ConnectCause::of(&e) {
                ConnectCause::Other => ConnectCause::Tls,
                c => c,
            };
            failed(cause, format!("TLS handshake: {e}"))
        }
        Ok(Ok(_)) => Connected {
            ok: true,
            report: json!({
                "ok": true,
                "ms": connect_ms,
                "tls": true,
                "tls_ms": ms(tls_started.elapsed()),
            }),
        },
    }
}

/// The request the backend's `http` health check makes, or `GET /health` (any 2xx passes).
async fn http(target: &Target, check: Option<&HealthCheck>, timeout: Duration) -> Value {
    let (method, path, expected) = match check {
        Some(HealthCheck::Http {
            method,
            path,
            status,
            ..
        }) => (method.as_str(), path.as_str(), Some(*status)),
        _ => ("GET", "/health", None),
    };
    let started = Instant::now();
    let request = format!("{method} {path}");
    let answer = tokio::time::timeout(timeout, check::exchange(target, method, path, None, 0));
    match answer.await {
        Ok(Ok(resp)) => {
            let ok = match expected {
                Some(s) => resp.status == s,
                None => (200..300).contains(&resp.status),
            };
            json!({
                "request": request,
                "ok": ok,
                "status": resp.status,
                "expected": expected.map_or_else(|| json!("2xx"), |s| json!(s)),
                "ms": ms(started.elapsed()),
            })
        }
        Ok(Err(e)) => failure(request, &e, started),
        Err(_) => failure(request, &ProbeError::Timeout(timeout), started),
    }
}

/// `GET /v1/models`, its model ids.
async fn models(target: &Target, timeout: Duration) -> Value {
    let started = Instant::now();
    let request = "GET /v1/models".to_string();
    let answer = check::exchange(target, "GET", "/v1/models", None, check::MAX_MODELS_BODY);
    let resp = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => return failure(request, &e, started),
        Err(_) => return failure(request, &ProbeError::Timeout(timeout), started),
    };
    let elapsed = ms(started.elapsed());
    let parsed = if resp.status != 200 {
        Err(format!("status {}", resp.status))
    } else if resp.truncated {
        Err(format!(
            "the answer is larger than {} bytes",
            check::MAX_MODELS_BODY
        ))
    } else {
        check::model_ids(&resp.body)
    };
    match parsed {
        Ok(ids) => json!({
            "request": request,
            "ok": true,
            "status": resp.status,
            "ms": elapsed,
            "count": ids.len(),
            "ids": ids.iter().take(SHOWN_MODELS).collect::<Vec<_>>(),
            "declared_missing": missing(target, &ids),
        }),
        Err(error) => json!({
            "request": request,
            "ok": false,
            "status": resp.status,
            "ms": elapsed,
            "cause": "not_a_model_list",
            "error": error,
        }),
    }
}

/// The models the backend declares that the engine does not list.
fn missing(target: &Target, served: &[String]) -> Vec<String> {
    target
        .models
        .iter()
        .filter(|m| check::served_as(m, served).is_none())
        .map(ToString::to_string)
        .collect()
}

fn failure(request: String, e: &ProbeError, started: Instant) -> Value {
    let cause = match e {
        ProbeError::Connect(e) => ConnectCause::of(e).name(),
        ProbeError::Timeout(_) => "timeout",
        ProbeError::Http { .. } | ProbeError::Body { .. } => "http",
        _ => "other",
    };
    json!({
        "request": request,
        "ok": false,
        "cause": cause,
        "error": e.to_string(),
        "ms": ms(started.elapsed()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_causes_are_typed() {
        let e = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(ConnectCause::of(&e).name(), "refused");
        let e = io::Error::from(io::ErrorKind::HostUnreachable);
        assert_eq!(ConnectCause::of(&e), ConnectCause::Unreachable);
        assert_eq!(ms(Duration::from_micros(1500)), 1.5);
    }
}
