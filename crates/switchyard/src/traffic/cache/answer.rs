//! The two ends of a cached exchange, without I/O: the head and body of an answer from the
//! cache, and the capture of a backend's body on its way to the client, bounded, for storing.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::Cached;

/// The `x-cache` response header.
pub const X_CACHE: header::HeaderName = header::HeaderName::from_static("x-cache");

/// The head of an answer from the cache: the stored status and headers, with `Age` (seconds
/// since it was stored, RFC 9111 section 5.1) and `x-cache: HIT`.
pub fn hit_head(cached: &Cached, now_ms: u64) -> (StatusCode, HeaderMap) {
    let mut headers = cached.headers.clone();
    let age = Duration::from_millis(now_ms.saturating_sub(cached.stored_ms)).as_secs();
    headers.insert(header::AGE, HeaderValue::from(age));
    headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
    (cached.status, headers)
}

/// Marks a response that went to the backend: `x-cache: MISS`, or `BYPASS` when the request
/// asked not to be answered from the cache.
pub fn mark_miss(headers: &mut HeaderMap, bypass: bool) {
    let v = if bypass { "BYPASS" } else { "MISS" };
    headers.insert(X_CACHE, HeaderValue::from_static(v));
}

/// A backend body copied as it passes, up to a bound: when the body has ended within it, the
/// whole body is there to store; past it, the copy is dropped and nothing is stored.
#[derive(Debug)]
pub struct Capture {
    buf: Option<BytesMut>,
    max: usize,
}

impl Capture {
    /// A capture of at most `max` bytes; `expected` (the `Content-Length`, if any) sizes the
    /// buffer, and one above `max` gives up at once.
    pub fn new(max: usize, expected: Option<u64>) -> Self {
        let buf = match expected {
            Some(n) if n > max as u64 => None,
            Some(n) => Some(BytesMut::with_capacity(n as usize)),
            None => Some(BytesMut::new()),
        };
        Capture { buf, max }
    }

    /// Copies `chunk`; answers whether the capture is still going.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        if let Some(buf) = &mut self.buf {
            if buf.len() + chunk.len() > self.max {
                self.buf = None;
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        self.buf.is_some()
    }

    /// The whole body, once it has ended (None if it outgrew the bound).
    pub fn finish(self) -> Option<Bytes> {
        self.buf.map(BytesMut::freeze)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_says_so_and_how_old_it_is() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::AGE, HeaderValue::from_static("999"));
        let cached = Cached {
            status: StatusCode::NOT_FOUND,
            headers,
            body: Bytes::new(),
            stored_ms: 10_000,
            host: "h".into(),
            path: "/".into(),
        };
        let (status, h) = hit_head(&cached, 72_500);
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(h[header::AGE], "62");
        assert_eq!(h[&X_CACHE], "HIT");
        assert_eq!(h[header::CONTENT_TYPE], "text/plain");
        let mut m = HeaderMap::new();
        mark_miss(&mut m, false);
        assert_eq!(m[&X_CACHE], "MISS");
        mark_miss(&mut m, true);
        assert_eq!(m[&X_CACHE], "BYPASS");
    }

    #[test]
    fn captures_stop_at_their_bound() {
        let mut c = Capture::new(10, None);
        assert!(c.push(b"hello "));
        assert!(c.push(b"you!"));
        assert_eq!(c.finish().as_deref(), Some(&b"hello you!"[..]));
        let mut c = Capture::new(10, None);
        assert!(c.push(b"hello "));
        assert!(!c.push(b"world"));
        assert!(!c.push(b""), "gone for good");
        assert_eq!(c.finish(), None);
        let mut c = Capture::new(10, Some(11));
        assert!(!c.push(b"x"), "a declared length above the bound");
    }
}
