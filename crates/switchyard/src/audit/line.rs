//! What one audit line says, and its JSON text (pure: no clock, no I/O).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// One proxied (or refused) request, filled in as the request goes and sent when it ends.
#[derive(Debug, Default, Clone)]
pub struct RequestLine {
    /// When the request arrived.
    pub time: Option<SystemTime>,
    /// The client's IP address.
    pub client: String,
    /// The short id of the request's bearer token (see [`super::key_id`]), never the token.
    pub key_id: Option<String>,
    /// The request method.
    pub method: String,
    /// The `Host` (or the target's authority).
    pub host: Option<String>,
    /// The path, without the query (which may carry secrets).
    pub path: String,
    /// The model the request named, when the proxy read it.
    pub model: Option<String>,
    /// The route's name.
    pub route: Option<String>,
    /// The backend's name.
    pub backend: Option<String>,
    /// The status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From the request's arrival to the response's end.
    pub duration: Duration,
    /// From the request's arrival to the first response body byte, for streamed responses.
    pub ttft: Option<Duration>,
    /// Why the proxy refused or failed the request (its `x-switchyard-error` kind, or
    /// `budget:NAME` for a token budget).
    pub denied: Option<std::borrow::Cow<'static, str>>,
}

/// A control-plane action: admin API changes, refused admin requests.
#[derive(Debug, Clone)]
pub struct ControlLine {
    /// When it happened.
    pub time: SystemTime,
    /// What happened: `backend_registered`, `backend_removed`, `admin_auth_failed`, ...
    pub action: &'static str,
    /// Who asked, when known.
    pub client: Option<String>,
    /// The particulars (never a secret).
    pub detail: Value,
}

/// Milliseconds, with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// A request line as it is written: borrowed fields, serialised in this order.
#[derive(serde::Serialize)]
struct RequestJson<'a> {
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    client: &'a str,
    key_id: Option<&'a str>,
    method: &'a str,
    host: Option<&'a str>,
    path: &'a str,
    model: Option<&'a str>,
    route: Option<&'a str>,
    backend: Option<&'a str>,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    denied: Option<&'a str>,
}

/// The request line's JSON text (no trailing newline). Written straight from the line's
/// fields, without building a JSON map first (this runs once per request on the writer).
pub fn format_request(l: &RequestLine) -> String {
    let j = RequestJson {
        time: rfc3339(l.time.unwrap_or(UNIX_EPOCH)),
        kind: "request",
        client: &l.client,
        key_id: l.key_id.as_deref(),
        method: &l.method,
        host: l.host.as_deref(),
        path: &l.path,
        model: l.model.as_deref(),
        route: l.route.as_deref(),
        backend: l.backend.as_deref(),
        status: l.status,
        bytes: l.bytes,
        duration_ms: ms(l.duration),
        ttft_ms: l.ttft.map(ms),
        denied: l.denied.as_deref(),
    };
    serde_json::to_string(&j).unwrap_or_default()
}

/// The control line's JSON text (no trailing newline).
pub fn format_control(l: &ControlLine) -> String {
    json!({
        "time": rfc3339(l.time),
        "type": "control",
        "action": l.action,
        "client": l.client,
        "detail": l.detail,
    })
    .to_string()
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-26T12:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn request_lines_are_one_json_object() {
        let l = RequestLine {
            client: "127.0.0.1".into(),
            method: "POST".into(),
            path: "/v1/chat\n".into(),
            status: 200,
            bytes: 12,
            duration: Duration::from_micros(1500),
            ..Default::default()
        };
        let text = format_request(&l);
        assert!(!text.contains('\n'));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["path"], "/v1/chat\n");
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["ttft_ms"], Value::Null);
        assert_eq!(v["type"], "request");
    }
}
