//! HTTP/1.1 to backends, sans-io: request heads out, response heads and bodies in.
//!
//! The proxy speaks to backends with its own small HTTP/1.1 client rather than hyper's, so that
//! a request is written, and its response read, by the task that serves the client: no second
//! task per upstream connection, no channel between the two, no copy of the request head. This
//! module is the byte-level part: it takes no sockets, so every rule (RFC 9112 section 6.3
//! message framing, chunked decoding, limits) is unit- and property-tested on plain buffers.
//!
//! Limits: a response head of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] fields; a chunk-size
//! line of at most [`MAX_CHUNK_LINE`] bytes; trailers of at most [`MAX_HEAD_BYTES`] (they are
//! read and dropped). Anything past them is an error, never a panic or unbounded buffering.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head accepted from a backend.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields accepted in a backend's response head.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (size plus extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

/// A backend sent bytes that are not a valid HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The response head could not be parsed (`httparse`'s reason).
    InvalidHead(&'static str),
    /// The response head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`]
    /// fields.
    HeadTooLarge,
    /// `Content-Length` is not a number, or several disagree.
    InvalidContentLength,
    /// A chunk-size line is malformed or too long, or a chunk is not followed by CRLF.
    InvalidChunk,
    /// Trailers exceed [`MAX_HEAD_BYTES`].
    TrailersTooLarge,
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::InvalidHead(why) => write!(f, "invalid response head: {why}"),
            CodecError::HeadTooLarge => write!(
                f,
                "response head larger than {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields"
            ),
            CodecError::InvalidContentLength => write!(f, "invalid Content-Length in response"),
            CodecError::InvalidChunk => write!(f, "invalid chunked encoding in response body"),
            CodecError::TrailersTooLarge => {
                write!(f, "response trailers larger than {MAX_HEAD_BYTES} bytes")
            }
        }
    }
}

impl std::error::Error for CodecError {}

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// The client's `Content-Length` is kept; the body's bytes go as they are.
    Length,
    /// A body of unknown length: chunked encoding (a `Transfer-Encoding` header is added).
    Chunked,
}

/// Writes a request head for `method target` with `headers` into `out` (cleared first).
pub fn encode_head(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if framing == RequestFraming::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked encoding.
    Chunked,
    /// Everything until the backend closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version the backend answered with.
    pub version: Version,
    /// Header fields as sent, less the hop-by-hop ones (`Connection` and what it names,
    /// `Keep-Alive`, `Transfer-Encoding`, ...), which describe the backend connection only.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Parses a response head at the start of `buf`. On success the head's bytes are removed from
/// `buf` (the body's first bytes stay). `Ok(None)`: more bytes are needed. Interim 1xx
/// responses (other than 101) are consumed and skipped.
pub fn parse_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, CodecError> {
    loop {
        // Uninitialised slots: zeroing 128 of them would cost more than parsing a small head.
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > MAX_HEAD_BYTES {
                    Err(CodecError::HeadTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(CodecError::HeadTooLarge),
            Err(e) => return Err(CodecError::InvalidHead(head_error(e))),
        };
        if len > MAX_HEAD_BYTES {
            return Err(CodecError::HeadTooLarge);
        }
        let code = resp.code.unwrap_or(0);
        let status =
            StatusCode::from_u16(code).map_err(|_| CodecError::InvalidHead("status code"))?;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            let _ = buf.split_to(len);
            continue;
        }
        let version = if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Remember where each field sits so the values can share the head's bytes instead of
        // being copied one by one.
        let base = buf.as_ptr() as usize;
        let count = resp.headers.len();
        let mut small = [(0u32, 0u32, 0u32, 0u32); 32];
        let mut large = Vec::new();
        let ranges: &mut [(u32, u32, u32, u32)] = if count <= small.len() {
            &mut small[..count]
        } else {
            large.resize(count, (0, 0, 0, 0));
            &mut large
        };
        for (slot, h) in ranges.iter_mut().zip(resp.headers.iter()) {
            // Offsets fit in u32: the head is at most MAX_HEAD_BYTES long.
            let n = (h.name.as_ptr() as usize - base) as u32;
            let v = (h.value.as_ptr() as usize - base) as u32;
            *slot = (n, n + h.name.len() as u32, v, v + h.value.len() as u32);
        }
        let head: Bytes = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut has_te = false;
        let mut close = version == Version::HTTP_10;
        // Connection listing headers other than close / keep-alive (rare): removed at the end.
        let mut connection_extra = false;
        for &mut (n0, n1, v0, v1) in ranges {
            let (n0, n1, v0, v1) = (n0 as usize, n1 as usize, v0 as usize, v1 as usize);
            let name = HeaderName::from_bytes(&head[n0..n1])
                .map_err(|_| CodecError::InvalidHead("header name"))?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0..v1))
                .map_err(|_| CodecError::InvalidHead("header value"))?;
            if name == header::CONTENT_LENGTH {
                let n = parse_content_length(value.as_bytes())?;
                if content_length.is_some_and(|m| m != n) {
                    return Err(CodecError::InvalidContentLength);
                }
                content_length = Some(n);
            } else if name == header::TRANSFER_ENCODING {
                has_te = true;
                chunked = last_token_is_chunked(value.as_bytes());
            } else if name == header::CONNECTION {
                let v = value.as_bytes();
                if has_token(v, b"close") {
                    close = true;
                } else if version == Version::HTTP_10 && has_token(v, b"keep-alive") {
                    close = false;
                }
                connection_extra |= v.split(|b| *b == b',').any(|t| {
                    let t = t.trim_ascii();
                    !t.is_empty()
                        && !t.eq_ignore_ascii_case(b"close")
                        && !t.eq_ignore_ascii_case(b"keep-alive")
                });
                // Kept only while the headers it names are looked up, below.
                if connection_extra {
                    headers.append(name, value);
                }
                continue;
            }
            // Hop-by-hop fields describe the backend connection: not kept for the client.
            if crate::l7::headers::hop_by_hop(&name).is_some() {
                continue;
            }
            headers.append(name, value);
        }
        if connection_extra {
            for named in crate::l7::headers::connection_named(&headers)
                .into_iter()
                .flatten()
            {
                headers.remove(named);
            }
            headers.remove(header::CONNECTION);
        }
        if has_te {
            // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3); the length
            // must not reach the client next to a body of another framing.
            headers.remove(header::CONTENT_LENGTH);
        }
        let framing = if request_method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational()
        {
            BodyFraming::Empty
        } else if has_te {
            if chunked {
                BodyFraming::Chunked
            } else {
                BodyFraming::UntilClose
            }
        } else {
            match content_length {
                Some(0) => BodyFraming::Empty,
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::UntilClose,
            }
        };
        let keep_alive = !close
            && framing != BodyFraming::UntilClose
            && status != StatusCode::SWITCHING_PROTOCOLS;
        return Ok(Some(ResponseHead {
            status,
            version,
            headers,
            framing,
            keep_alive,
        }));
    }
}

fn head_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status line",
        httparse::Error::Token => "token",
        httparse::Error::Version => "version",
        _ => "syntax",
    }
}

fn parse_content_length(v: &[u8]) -> Result<u64, CodecError> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(CodecError::InvalidContentLength);
    }
    v.iter()
        .try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(CodecError::InvalidContentLength)
}

fn last_token_is_chunked(v: &[u8]) -> bool {
    v.rsplit(|b| *b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Decodes a response body from the connection's read buffer.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Bytes left of the current chunk's data.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines after the last chunk; the count is bytes consumed so far.
    Trailers(usize),
    /// Until the connection closes.
    UntilClose,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body delimited by `framing`.
    pub fn new(framing: BodyFraming) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::UntilClose => State::UntilClose,
        };
        BodyDecoder { state }
    }

    /// Whether the whole body has been decoded (what follows in the buffer, if anything,
    /// belongs to the connection, not this response).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends only when the connection closes.
    pub fn until_close(&self) -> bool {
        self.state == State::UntilClose
    }

    /// Bytes of body still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body data available in `buf` (removed from it), `Ok(None)` when more
    /// bytes are needed or the body is done (see [`BodyDecoder::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, CodecError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                State::Length(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (buf.len() as u64).min(n) as usize;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::ChunkSize => {
                    let Some(eol) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(CodecError::InvalidChunk)
                        } else {
                            Ok(None)
                        };
                    };
                    if eol > MAX_CHUNK_LINE {
                        return Err(CodecError::InvalidChunk);
                    }
                    let size = parse_chunk_size(&buf[..eol])?;
                    let _ = buf.split_to(eol + 1);
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(n) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = (buf.len() as u64).min(n) as usize;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left)
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r' && *b != b'\n') {
                            return Err(CodecError::InvalidChunk);
                        }
                        if buf.first() == Some(&b'\n') {
                            let _ = buf.split_to(1);
                            self.state = State::ChunkSize;
                            continue;
                        }
                        return Ok(None);
                    }
                    match &buf[..2] {
                        b"\r\n" => {
                            let _ = buf.split_to(2);
                        }
                        [b'\n', _] => {
                            let _ = buf.split_to(1);
                        }
                        _ => return Err(CodecError::InvalidChunk),
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let Some(eol) = memchr::memchr(b'\n', buf) else {
                        return if seen + buf.len() > MAX_HEAD_BYTES {
                            Err(CodecError::TrailersTooLarge)
                        } else {
                            Ok(None)
                        };
                    };
                    let line_empty = eol == 0 || (eol == 1 && buf[0] == b'\r');
                    let _ = buf.split_to(eol + 1);
                    if line_empty {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let seen = seen + eol + 1;
                    if seen > MAX_HEAD_BYTES {
                        return Err(CodecError::TrailersTooLarge);
                    }
                    self.state = State::Trailers(seen);
                }
            }
        }
    }
}

/// Parses `1a;ext=v\r` into 26.
fn parse_chunk_size(line: &[u8]) -> Result<u64, CodecError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits_end = line
        .iter()
        .position(|b| !b.is_ascii_hexdigit())
        .unwrap_or(line.len());
    let (digits, rest) = line.split_at(digits_end);
    let rest = rest.trim_ascii_start();
    if digits.is_empty() || digits.len() > 15 || !(rest.is_empty() || rest[0] == b';') {
        return Err(CodecError::InvalidChunk);
    }
    Ok(digits.iter().fold(0u64, |acc, d| {
        let v = (*d as char).to_digit(16).unwrap_or(0);
        (acc << 4) | u64::from(v)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(text: &str, method: &Method) -> Result<Option<ResponseHead>, CodecError> {
        let mut buf = BytesMut::from(text);
        parse_head(&mut buf, method)
    }

    #[test]
    fn encodes_a_request_head() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        let mut out = Vec::new();
        encode_head(
            &Method::POST,
            "/v1?x=1",
            &h,
            RequestFraming::Chunked,
            &mut out,
        );
        assert_eq!(
            out,
            b"POST /v1?x=1 HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn framing_rules() {
        let get = Method::GET;
        let f = |t: &str, m: &Method| head(t, m).unwrap().unwrap();
        let r = f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &get);
        assert_eq!((r.framing, r.keep_alive), (BodyFraming::Length(5), true));
        let r = f(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n",
            &get,
        );
        assert_eq!(r.framing, BodyFraming::Chunked);
        let r = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &get);
        assert_eq!((r.framing, r.keep_alive), (BodyFraming::UntilClose, false));
        let r = f("HTTP/1.1 200 OK\r\n\r\n", &get);
        assert_eq!((r.framing, r.keep_alive), (BodyFraming::UntilClose, false));
        let r = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            &Method::HEAD,
        );
        assert_eq!((r.framing, r.keep_alive), (BodyFraming::Empty, true));
        let r = f(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            &get,
        );
        assert_eq!(r.framing, BodyFraming::Empty);
        let r = f(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            &get,
        );
        assert!(!r.keep_alive);
        let r = f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &get);
        assert!(!r.keep_alive);
        let r = f(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            &get,
        );
        assert!(r.keep_alive);
    }

    #[test]
    fn hop_by_hop_fields_are_dropped() {
        let r = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
             Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\
             Server: s\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["server"]);
        assert_eq!((r.framing, r.keep_alive), (BodyFraming::Chunked, true));
        let r = head(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.headers.keys().collect::<Vec<_>>(), vec!["content-length"]);
        assert!(!r.keep_alive);
    }

    #[test]
    fn skips_interim_responses_and_keeps_the_body_start() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        );
        let r = parse_head(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn bad_heads() {
        let get = Method::GET;
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", &get)
            .unwrap()
            .is_none());
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", &get).unwrap_err(),
            CodecError::InvalidContentLength
        );
        assert_eq!(
            head(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &get
            )
            .unwrap_err(),
            CodecError::InvalidContentLength
        );
        assert!(matches!(
            head("HTTX/1.1 200 OK\r\n\r\n", &get),
            Err(CodecError::InvalidHead(_))
        ));
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(head(&big, &get).unwrap_err(), CodecError::HeadTooLarge);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        assert_eq!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &get).unwrap_err(),
            CodecError::HeadTooLarge
        );
    }

    fn decode_all(
        framing: BodyFraming,
        parts: &[&[u8]],
    ) -> Result<(Vec<u8>, bool, Vec<u8>), CodecError> {
        let mut d = BodyDecoder::new(framing);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            while let Some(b) = d.decode(&mut buf)? {
                out.extend_from_slice(&b);
            }
        }
        Ok((out, d.is_done(), buf.to_vec()))
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, done, rest) = decode_all(BodyFraming::Chunked, &[body]).unwrap();
        assert_eq!(out, b"hello world");
        assert!(done);
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn chunked_errors() {
        assert!(decode_all(BodyFraming::Chunked, &[b"zz\r\n"]).is_err());
        assert!(decode_all(BodyFraming::Chunked, &[b"2\r\nabXY"]).is_err());
        assert!(decode_all(BodyFraming::Chunked, &[&[b'1'; MAX_CHUNK_LINE + 2]]).is_err());
        assert!(decode_all(BodyFraming::Chunked, &[b"fffffffffffffffff\r\n"]).is_err());
    }

    #[test]
    fn length_body_leaves_what_follows() {
        let (out, done, rest) = decode_all(BodyFraming::Length(3), &[b"ab", b"cde"]).unwrap();
        assert_eq!(
            (out.as_slice(), done, rest.as_slice()),
            (&b"abc"[..], true, &b"de"[..])
        );
    }

    proptest! {
        #[test]
        fn chunked_roundtrip_split_anywhere(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..6),
            cuts in prop::collection::vec(0usize..2000, 0..5),
        ) {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for c in &chunks {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
                want.extend_from_slice(c);
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(wire.len())).collect();
            cuts.sort();
            let mut parts = Vec::new();
            let mut last = 0;
            for c in cuts {
                parts.push(&wire[last..c]);
                last = c;
            }
            parts.push(&wire[last..]);
            let (out, done, rest) = decode_all(BodyFraming::Chunked, &parts).unwrap();
            prop_assert_eq!(out, want);
            prop_assert!(done);
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_all(BodyFraming::Chunked, &[&data]);
            let mut buf = BytesMut::from(&data[..]);
            let _ = parse_head(&mut buf, &Method::GET);
        }
    }
}
