//! gRPC at the proxy: recognising a call, its deadline (`grpc-timeout`), and answering a call
//! the proxy cannot complete the way a gRPC client understands — HTTP 200 with `grpc-status`
//! and `grpc-message` (a "trailers-only" response), never a bare 502 that the client would
//! report as a protocol error.
//!
//! Status codes follow the gRPC specification's meanings: a backend that cannot be reached is
//! `UNAVAILABLE` (14, which clients may retry), a deadline that passes is `DEADLINE_EXCEEDED`
//! (4), a path no route serves is `UNIMPLEMENTED` (12).

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::error::ProxyError;

/// `grpc-status`.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub static GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The gRPC status codes the proxy generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// The client cancelled (went away).
    Cancelled = 1,
    /// The deadline passed before the backend answered.
    DeadlineExceeded = 4,
    /// The requested model is not served.
    NotFound = 5,
    /// An access control list denied the call.
    PermissionDenied = 7,
    /// Too many open streams of some kind (a limit).
    ResourceExhausted = 8,
    /// No route serves the method's path.
    Unimplemented = 12,
    /// The request was malformed.
    Internal = 13,
    /// No backend could be reached, or the exchange with it failed.
    Unavailable = 14,
}

impl Code {
    /// The decimal value sent in `grpc-status`.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from(self as u8 as u16)
    }
}

/// The gRPC status a proxy error is reported with.
pub fn code_of(e: &ProxyError) -> Code {
    match e {
        ProxyError::NoRoute => Code::Unimplemented,
        ProxyError::ResponseTimeout { .. } => Code::DeadlineExceeded,
        ProxyError::BadRequest(_) | ProxyError::Rewrite { .. } | ProxyError::Plugin(_) => {
            Code::Internal
        }
        ProxyError::ClientAborted => Code::Cancelled,
        ProxyError::UnknownModel { .. } => Code::NotFound,
        ProxyError::AclDenied(_) => Code::PermissionDenied,
        ProxyError::TooManyWebSockets { .. }
        | ProxyError::RateLimited(_)
        | ProxyError::BudgetExceeded(_) => Code::ResourceExhausted,
        ProxyError::NoHealthyBackend { .. }
        | ProxyError::Connect { .. }
        | ProxyError::ConnectTimeout { .. }
        | ProxyError::Upstream { .. } => Code::Unavailable,
    }
}

/// Whether a request is a gRPC call (`Content-Type: application/grpc`, or a subtype such as
/// `application/grpc+proto`).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The call's deadline from `grpc-timeout` (`1*8DIGIT` then `H`, `M`, `S`, `m`, `u` or `n`);
/// `None` when absent or malformed (a malformed value is ignored, as gRPC servers do).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_timeout(headers.get(&GRPC_TIMEOUT)?.as_bytes())
}

fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `left` as a `grpc-timeout` value, in milliseconds (rounded up, at least 1), or in whole
/// seconds (rounded up) when that would not fit in 8 digits.
pub fn encode_timeout(left: Duration) -> HeaderValue {
    let ms = left.as_nanos().div_ceil(1_000_000).max(1);
    let text = if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        format!("{}S", secs.min(99_999_999))
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("1m"))
}

/// `message` percent-encoded for `grpc-message`: bytes outside printable ASCII, and `%`, as
/// `%XX` (the gRPC specification's encoding).
pub fn encode_message(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("proxy error"))
}

/// Sets the fields of a trailers-only gRPC error response (or of trailers) on `headers`.
pub fn set_status(headers: &mut HeaderMap, code: Code, message: &str) {
    headers.insert(&GRPC_STATUS, code.header_value());
    headers.insert(&GRPC_MESSAGE, encode_message(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_in_every_unit() {
        let cases: &[(&[u8], Duration)] = &[
            (b"1H", Duration::from_secs(3600)),
            (b"2M", Duration::from_secs(120)),
            (b"3S", Duration::from_secs(3)),
            (b"250m", Duration::from_millis(250)),
            (b"7u", Duration::from_micros(7)),
            (b"99999999n", Duration::from_nanos(99_999_999)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timeout(text), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn malformed_timeouts_are_ignored() {
        for bad in [
            &b""[..],
            b"m",
            b"10",
            b"10x",
            b"123456789m",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn encoded_timeouts_round_trip_to_at_least_the_time_left() {
        for ms in [0u64, 1, 999, 5_000, 99_999_999] {
            let d = Duration::from_millis(ms) + Duration::from_micros(1);
            let back = parse_timeout(encode_timeout(d).as_bytes()).unwrap();
            assert!(back >= d, "{d:?} -> {back:?}");
        }
        let long = Duration::from_secs(200_000);
        assert_eq!(
            parse_timeout(encode_timeout(long).as_bytes()),
            Some(Duration::from_secs(200_000))
        );
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(
            encode_message("no backend: 100% down"),
            "no backend: 100%25 down"
        );
        assert_eq!(encode_message("línea\n"), "l%C3%ADnea%0A");
    }

    #[test]
    fn grpc_content_types_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(is_grpc(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(!is_grpc(&h));
    }
}
