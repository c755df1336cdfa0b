//! HTTP/2 by Upgrade from HTTP/1.1 (`Upgrade: h2c`, RFC 7540 section 3.2).
//!
//! A client may open a plain HTTP/1.1 connection and ask, on its first request, to switch to
//! HTTP/2; the server answers 101, and from then on speaks HTTP/2, sending the response to
//! that first request on stream 1. hyper's HTTP/2 server has no way to be handed a stream it
//! did not read, so the request is given to it the way a client would send it: after the
//! client's connection preface and first SETTINGS frame, [`Spliced`] inserts a HEADERS frame
//! for stream 1 carrying the upgraded request (its fields HPACK-encoded as literals, which
//! need no compression state). hyper then serves it like any other stream, and the client,
//! which never sends on stream 1 itself, receives its response there.
//!
//! The trade-off: a request is upgraded only when this is exact, that is when it has no body
//! (a body would have to be replayed as DATA frames under flow control) and its header block
//! fits one frame of the default maximum size. Any other `Upgrade: h2c` request is answered
//! over HTTP/1.1, which RFC 9113 (which deprecates the mechanism) and RFC 9110 allow: the
//! server may ignore an upgrade. Over TLS the upgrade is not offered (ALPN decides there).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest HEADERS frame payload inserted: HTTP/2's default `SETTINGS_MAX_FRAME_SIZE`,
/// which the server accepts before any settings of its own have been acknowledged.
const MAX_FRAME: usize = 16_384;
/// The client connection preface (RFC 9113 section 3.4).
const PREFACE_LEN: usize = 24;

/// Whether `parts` asks to upgrade to h2c and can be: HTTP/1.1, `Connection: Upgrade,
/// HTTP2-Settings`, `Upgrade: h2c`, exactly one `HTTP2-Settings`, and no body.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    req.version() == Version::HTTP_11
        && h.contains_key(header::UPGRADE)
        && has_token(h, &header::CONNECTION, "upgrade")
        && has_token(h, &header::CONNECTION, "http2-settings")
        && has_token(h, &header::UPGRADE, "h2c")
        && h.get_all("http2-settings").iter().count() == 1
        && !h.contains_key(header::TRANSFER_ENCODING)
        && h.get(header::CONTENT_LENGTH).is_none_or(|v| v == "0")
}

fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The HEADERS frame (stream 1, END_STREAM and END_HEADERS) that carries the upgraded
/// request, or `None` when its header block does not fit one frame.
pub fn stream_one<B>(req: &Request<B>) -> Option<Bytes> {
    let mut block = BytesMut::with_capacity(512);
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    literal(&mut block, b":method", req.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":path", path.as_bytes());
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| req.headers().get(header::HOST).map(HeaderValue::as_bytes));
    if let Some(a) = authority {
        literal(&mut block, b":authority", a);
    }
    for (name, value) in req.headers() {
        if skipped(name) {
            continue;
        }
        literal(&mut block, name.as_str().as_bytes(), value.as_bytes());
    }
    if block.len() > MAX_FRAME {
        return None;
    }
    let mut frame = BytesMut::with_capacity(9 + block.len());
    let len = block.len() as u32;
    frame.put_slice(&len.to_be_bytes()[1..]);
    frame.put_u8(0x1); // HEADERS
    frame.put_u8(0x1 | 0x4); // END_STREAM | END_HEADERS
    frame.put_u32(1); // stream 1
    frame.put_slice(&block);
    Some(frame.freeze())
}

/// Fields that describe the HTTP/1.1 connection or the upgrade, which HTTP/2 forbids or
/// carries otherwise (`Host` became `:authority`).
fn skipped(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "upgrade"
            | "http2-settings"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "host"
    )
}

/// An HPACK "literal header field without indexing, new name" (RFC 7541 section 6.2.2).
fn literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    integer(out, name.len());
    out.put_slice(name);
    integer(out, value.len());
    out.put_slice(value);
}

/// An HPACK integer with a 7-bit prefix and the Huffman bit clear (RFC 7541 section 5.1).
fn integer(out: &mut BytesMut, mut n: usize) {
    if n < 127 {
        out.put_u8(n as u8);
        return;
    }
    out.put_u8(127);
    n -= 127;
    while n >= 128 {
        out.put_u8((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.put_u8(n as u8);
}

/// Where [`Spliced`] is in the client's first bytes.
#[derive(Debug)]
enum State {
    /// Reading the 24-byte preface; this many bytes are left.
    Preface(usize),
    /// Reading the first frame's 9-byte header; this much of it is in.
    FrameHead([u8; 9], usize),
    /// Reading the first frame's payload; this many bytes are left.
    FrameBody(usize),
    /// Handing out the inserted frame; this much of it is out.
    Insert(usize),
    /// Everything else passes as it is.
    Pass,
}

/// The client's side of an upgraded connection, with the frame for stream 1 inserted after
/// the preface and the client's first frame (its SETTINGS). Writes pass through.
pub struct Spliced<T> {
    inner: T,
    frame: Bytes,
    state: State,
}

impl<T> Spliced<T> {
    /// `inner` with `frame` (from [`stream_one`]) to insert.
    pub fn new(inner: T, frame: Bytes) -> Self {
        Spliced {
            inner,
            frame,
            state: State::Preface(PREFACE_LEN),
        }
    }
}

impl<T: AsyncRead + Unpin> Spliced<T> {
    /// Reads at most `limit` bytes from the client into `buf`; the bytes read.
    fn read_some(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        let room = buf.remaining().min(limit);
        // `take` lends the unfilled part of `buf`; initialising it first (a few dozen bytes,
        // once per connection) lets `advance` count what the read put there.
        buf.initialize_unfilled_to(room);
        let mut part = buf.take(room);
        match Pin::new(&mut self.inner).poll_read(cx, &mut part) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = part.filled().len();
                buf.advance(n);
                Poll::Ready(Ok(n))
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Spliced<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Pass => Pin::new(&mut this.inner).poll_read(cx, buf),
            State::Insert(out) => {
                let n = (this.frame.len() - out).min(buf.remaining());
                buf.put_slice(&this.frame[out..out + n]);
                this.state = if out + n == this.frame.len() {
                    State::Pass
                } else {
                    State::Insert(out + n)
                };
                Poll::Ready(Ok(()))
            }
            State::Preface(left) => {
                let n = std::task::ready!(this.read_some(cx, buf, left))?;
                if n == 0 {
                    return Poll::Ready(Ok(())); // the client closed
                }
                this.state = if n == left {
                    State::FrameHead([0; 9], 0)
                } else {
                    State::Preface(left - n)
                };
                Poll::Ready(Ok(()))
            }
            State::FrameHead(mut head, have) => {
                let start = buf.filled().len();
                let n = std::task::ready!(this.read_some(cx, buf, 9 - have))?;
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                head[have..have + n].copy_from_slice(&buf.filled()[start..start + n]);
                this.state = if have + n < 9 {
                    State::FrameHead(head, have + n)
                } else {
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    if len == 0 {
                        State::Insert(0)
                    } else {
                        State::FrameBody(len)
                    }
                };
                Poll::Ready(Ok(()))
            }
            State::FrameBody(left) => {
                let n = std::task::ready!(this.read_some(cx, buf, left))?;
                if n == 0 {
                    return Poll::Ready(Ok(()));
                }
                this.state = if n == left {
                    State::Insert(0)
                } else {
                    State::FrameBody(left - n)
                };
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Spliced<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn parts(req: http::request::Builder) -> Request<()> {
        req.body(()).unwrap()
    }

    fn upgrade_request() -> http::request::Builder {
        http::Request::builder()
            .uri("/v1/models?x=1")
            .header("host", "api.test")
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAAQAoAAAAAIAAAAA")
            .header("x-kept", "yes")
    }

    #[test]
    fn only_bodyless_http11_upgrades_qualify() {
        assert!(wants_upgrade(&parts(upgrade_request())));
        assert!(wants_upgrade(&parts(
            upgrade_request().header("content-length", "0")
        )));
        assert!(!wants_upgrade(&parts(
            upgrade_request().header("content-length", "5")
        )));
        assert!(!wants_upgrade(&parts(
            upgrade_request().header("transfer-encoding", "chunked")
        )));
        assert!(!wants_upgrade(&parts(
            upgrade_request().version(Version::HTTP_10)
        )));
        let no_settings = http::Request::builder()
            .header("connection", "Upgrade")
            .header("upgrade", "h2c");
        assert!(!wants_upgrade(&parts(no_settings)));
        let websocket = http::Request::builder()
            .header("connection", "Upgrade, HTTP2-Settings")
            .header("upgrade", "websocket")
            .header("http2-settings", "");
        assert!(!wants_upgrade(&parts(websocket)));
    }

    /// Decodes the literal-only header blocks [`stream_one`] writes.
    fn decode(mut block: &[u8]) -> Vec<(String, String)> {
        fn int(b: &mut &[u8]) -> usize {
            let first = (b[0] & 0x7f) as usize;
            *b = &b[1..];
            if first < 127 {
                return first;
            }
            let (mut n, mut shift) = (127, 0);
            loop {
                let byte = b[0];
                *b = &b[1..];
                n += ((byte & 0x7f) as usize) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    return n;
                }
            }
        }
        let mut out = Vec::new();
        while !block.is_empty() {
            assert_eq!(block[0], 0);
            block = &block[1..];
            let n = int(&mut block);
            let name = String::from_utf8(block[..n].to_vec()).unwrap();
            block = &block[n..];
            let n = int(&mut block);
            let value = String::from_utf8(block[..n].to_vec()).unwrap();
            block = &block[n..];
            out.push((name, value));
        }
        out
    }

    #[test]
    fn the_request_becomes_a_headers_frame_on_stream_one() {
        let frame = stream_one(&parts(upgrade_request())).unwrap();
        let len = u32::from_be_bytes([0, frame[0], frame[1], frame[2]]) as usize;
        assert_eq!(len, frame.len() - 9);
        assert_eq!(frame[3], 1, "HEADERS");
        assert_eq!(frame[4], 5, "END_STREAM | END_HEADERS");
        assert_eq!(&frame[5..9], &[0, 0, 0, 1]);
        let fields = decode(&frame[9..]);
        let want = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/v1/models?x=1"),
            (":authority", "api.test"),
            ("x-kept", "yes"),
        ];
        let got: Vec<(&str, &str)> = fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn long_values_use_multi_byte_lengths_and_oversized_blocks_are_refused() {
        let long = "v".repeat(300);
        let frame = stream_one(&parts(upgrade_request().header("x-long", long.as_str()))).unwrap();
        let fields = decode(&frame[9..]);
        assert_eq!(fields.last().unwrap(), &("x-long".to_string(), long));
        let huge = "v".repeat(MAX_FRAME);
        assert!(stream_one(&parts(upgrade_request().header("x-huge", huge.as_str()))).is_none());
    }

    #[tokio::test]
    async fn the_frame_goes_after_the_preface_and_first_frame_however_bytes_arrive() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        let settings = [0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        let later = [0, 0, 0, 4, 1, 0, 0, 0, 0]; // a SETTINGS ack
        let inserted = Bytes::from_static(b"INSERTED");
        let mut client = Vec::new();
        client.extend_from_slice(preface);
        client.extend_from_slice(&settings);
        client.extend_from_slice(&later);
        let mut want = Vec::new();
        want.extend_from_slice(preface);
        want.extend_from_slice(&settings);
        want.extend_from_slice(&inserted);
        want.extend_from_slice(&later);
        for chunk in [1, 2, 5, 9, 24, 100] {
            let mut mock = tokio_test_reader(&client, chunk);
            let mut spliced = Spliced::new(&mut mock, inserted.clone());
            let mut got = Vec::new();
            spliced.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, want, "chunks of {chunk}");
        }
    }

    /// A reader handing out `data` at most `chunk` bytes per read.
    fn tokio_test_reader(data: &[u8], chunk: usize) -> ChunkedReader {
        ChunkedReader {
            data: data.to_vec(),
            pos: 0,
            chunk,
        }
    }

    struct ChunkedReader {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
    }

    impl AsyncRead for ChunkedReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = (self.data.len() - self.pos)
                .min(self.chunk)
                .min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }
}
