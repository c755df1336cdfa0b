//! What one audit line says, and its JSON text (pure: no clock, no I/O).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Uri};
use serde_json::{json, Value};

use super::json;
use crate::upstream::directory::Backend;

/// One proxied (or refused) request, filled in as the request goes and written when it ends.
/// It copies none of the request's text: the target and `Host` share the request's buffer,
/// the backend is its handle, and the client and route are read from the exchange at the end.
#[derive(Debug, Clone)]
pub struct RequestLine {
    /// When the request arrived.
    pub time: SystemTime,
    /// The short id of the request's bearer token (see [`super::key_id`]), never the token.
    pub key_id: Option<[u8; 8]>,
    /// The request method.
    pub method: Method,
    /// The request target: its authority (if any) and path are logged, never its query
    /// (which may carry secrets).
    pub uri: Uri,
    /// The `Host` field, logged when the target has no authority.
    pub host: Option<HeaderValue>,
    /// The model the request named, when the proxy read it.
    pub model: Option<String>,
    /// The backend that answered.
    pub backend: Option<Arc<Backend>>,
    /// The status sent to the client.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes: u64,
    /// From the request's arrival to the first response body byte, for streamed responses.
    pub ttft: Option<Duration>,
    /// Why the proxy refused or failed the request (its `x-switchyard-error` kind, or
    /// `budget:NAME` for a token budget).
    pub denied: Option<std::borrow::Cow<'static, str>>,
}

impl Default for RequestLine {
    fn default() -> Self {
        RequestLine {
            time: UNIX_EPOCH,
            key_id: None,
            method: Method::GET,
            uri: Uri::from_static("/"),
            host: None,
            model: None,
            backend: None,
            status: 0,
            bytes: 0,
            ttft: None,
            denied: None,
        }
    }
}

/// What the exchange knows when it ends: who asked, the route, how long it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending<'a> {
    /// The client's IP address.
    pub client: &'a [u8],
    /// The route's name.
    pub route: Option<&'a str>,
    /// From the request's arrival to the response's end.
    pub duration: Duration,
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

/// Appends the request line's JSON text and a newline to `out`, its fields in this order:
/// `time`, `type`, `client`, `key_id`, `method`, `host`, `path`, `model`, `route`, `backend`,
/// `status`, `bytes`, `duration_ms`, `ttft_ms`, `denied`. A field with no value (`key_id`,
/// `host`, `model`, `route`, `backend`, `ttft_ms`, `denied`) is left out rather than written
/// as `null`: the line is a quarter shorter for a plain request, and every byte of it is
/// copied to the disk. Written straight into the buffer, allocating nothing else (this runs
/// once per logged request, on the request's thread); `times` holds the text of the second
/// last written on this thread.
pub fn write_request(
    out: &mut Vec<u8>,
    times: &mut json::TimeText,
    l: &RequestLine,
    end: Ending<'_>,
) {
    let host = l
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| l.host.as_ref().and_then(|h| h.to_str().ok()));
    out.extend_from_slice(b"{\"time\":");
    times.write(out, l.time);
    out.extend_from_slice(b",\"type\":\"request\",\"client\":");
    json::plain_string(out, end.client);
    json::opt_field(out, b"key_id", l.key_id.as_ref().map(|k| &k[..]));
    out.extend_from_slice(b",\"method\":");
    json::plain_string(out, l.method.as_str().as_bytes());
    json::opt_field(out, b"host", host.map(str::as_bytes));
    out.extend_from_slice(b",\"path\":");
    json::string(out, l.uri.path().as_bytes());
    json::opt_field(out, b"model", l.model.as_deref().map(str::as_bytes));
    json::opt_field(out, b"route", end.route.map(str::as_bytes));
    json::opt_field(
        out,
        b"backend",
        l.backend.as_ref().map(|b| b.name().as_bytes()),
    );
    out.extend_from_slice(b",\"status\":");
    json::uint(out, u64::from(l.status));
    out.extend_from_slice(b",\"bytes\":");
    json::uint(out, l.bytes);
    out.extend_from_slice(b",\"duration_ms\":");
    json::ms(out, end.duration);
    if let Some(t) = l.ttft {
        out.extend_from_slice(b",\"ttft_ms\":");
        json::ms(out, t);
    }
    json::opt_field(out, b"denied", l.denied.as_deref().map(str::as_bytes));
    out.extend_from_slice(b"}\n");
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
    let mut out = Vec::with_capacity(26);
    json::time(&mut out, t);
    String::from_utf8_lossy(&out[1..out.len() - 1]).into_owned()
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

    fn written(l: &RequestLine, end: Ending<'_>) -> String {
        let mut out = b"before\n".to_vec();
        write_request(&mut out, &mut json::TimeText::default(), l, end);
        let text = String::from_utf8(out).unwrap();
        let line = text.strip_prefix("before\n").unwrap();
        let line = line
            .strip_suffix('\n')
            .expect("one line, ended by a newline");
        assert!(!line.contains('\n'));
        line.to_string()
    }

    #[test]
    fn request_lines_are_one_json_object() {
        let l = RequestLine {
            method: Method::POST,
            uri: "/v1/chat%0A?key=secret".parse().unwrap(),
            host: Some(HeaderValue::from_static("api.local")),
            status: 200,
            bytes: 12,
            ..Default::default()
        };
        let end = Ending {
            client: b"127.0.0.1",
            route: None,
            duration: Duration::from_micros(1500),
        };
        let text = written(&l, end);
        assert!(!text.contains("secret"));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["type"], "request");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["host"], "api.local");
        assert_eq!(v["path"], "/v1/chat%0A");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 12);
        assert_eq!(v["duration_ms"], 1.5);
        for absent in ["key_id", "model", "route", "backend", "ttft_ms", "denied"] {
            assert!(v.get(absent).is_none(), "{absent} is left out: {text}");
        }
    }

    #[test]
    fn request_lines_match_serde_json_field_for_field() {
        let l = RequestLine {
            time: UNIX_EPOCH + Duration::from_millis(1_764_158_400_123),
            key_id: Some(*b"0a1b2c3d"),
            uri: Uri::from_static("http://api.local:8080/p?q"),
            model: Some("llama \"3\"\t\\".into()),
            status: 429,
            bytes: 0,
            ttft: Some(Duration::from_micros(120)),
            denied: Some("rate_limited".into()),
            ..Default::default()
        };
        let end = Ending {
            client: b"::1",
            route: Some("chat"),
            duration: Duration::from_micros(12_000),
        };
        let expected = serde_json::json!({
            "time": "2025-11-26T12:00:00.123Z",
            "type": "request",
            "client": "::1",
            "key_id": "0a1b2c3d",
            "method": "GET",
            "host": "api.local:8080",
            "path": "/p",
            "model": "llama \"3\"\t\\",
            "route": "chat",
            "status": 429,
            "bytes": 0,
            "duration_ms": 12.0,
            "ttft_ms": 0.12,
            "denied": "rate_limited",
        });
        let text = written(&l, end);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, expected);
        assert!(text.contains("\"duration_ms\":12.0,"), "{text}");
        let keys: Vec<&str> = text
            .split(",\"")
            .map(|f| f.trim_start_matches("{\"").split('"').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "time",
                "type",
                "client",
                "key_id",
                "method",
                "host",
                "path",
                "model",
                "route",
                "status",
                "bytes",
                "duration_ms",
                "ttft_ms",
                "denied"
            ]
        );
    }
}
