//! One HTTP/1.1 connection to a backend, driven by the task serving the client.
//!
//! A request is written and its response head read directly on the socket by the request's
//! own task; the response body is then read by [`crate::l7::body::ProxyBody`] as hyper pulls it
//! towards the client. Nothing runs between exchanges: an idle pooled connection is a socket
//! and a buffer, and [`UpstreamConn::is_reusable`] checks, without a system call in the usual
//! case, that the backend has not closed it meanwhile.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock::{coarse_now, Deadlines};

use crate::l7::body::RequestBody;

use super::codec::{self, CodecError, RequestFraming, ResponseHead};
use super::tls::{UpStream, UpstreamTls};

/// First read size; doubled after every read that fills it, up to [`MAX_READ`].
const MIN_READ: usize = 8 * 1024;
/// Largest single read into a connection's buffer (bounds its memory while streaming).
const MAX_READ: usize = 256 * 1024;

/// Why an exchange with a backend failed after the connection was open.
#[derive(Debug)]
pub enum UpstreamError {
    /// Reading or writing the socket failed.
    Io(io::Error),
    /// The backend closed the connection before the response was complete.
    Closed,
    /// The backend's bytes are not valid HTTP/1.1.
    Codec(CodecError),
    /// Reading the client's request body failed (the client went away mid-upload).
    ClientBody(hyper::Error),
    /// No response head within `upstream_response_timeout` of the request's last byte.
    Timeout(Duration),
    /// The HTTP/2 exchange failed (the stream was reset, the connection closed, ...).
    H2(hyper::Error),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Io(e) => write!(f, "{e}"),
            UpstreamError::Closed => {
                write!(f, "connection closed before the response was complete")
            }
            UpstreamError::Codec(e) => write!(f, "{e}"),
            UpstreamError::ClientBody(e) => write!(f, "reading the client's request body: {e}"),
            UpstreamError::Timeout(after) => write!(f, "no response head within {after:?}"),
            UpstreamError::H2(e) => write!(f, "HTTP/2: {e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl UpstreamError {
    /// Its kind, as `/admin/diagnose` lists a backend's last errors.
    pub fn cause(&self) -> super::errlog::Cause {
        use super::errlog::Cause;
        match self {
            UpstreamError::Io(e) => Cause::of_exchange(e),
            UpstreamError::Closed => Cause::Closed,
            UpstreamError::Codec(_) => Cause::BadResponse,
            UpstreamError::ClientBody(_) => Cause::Io,
            UpstreamError::Timeout(_) => Cause::ResponseTimeout,
            UpstreamError::H2(_) => Cause::Http2,
        }
    }
}

impl From<CodecError> for UpstreamError {
    fn from(e: CodecError) -> Self {
        UpstreamError::Codec(e)
    }
}

/// How far an exchange got before it failed, which decides whether it may be sent again.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: UpstreamError,
    /// Whether any of the client's request body was read (then it cannot be sent again).
    pub body_touched: bool,
    /// Whether the whole request head reached the socket.
    pub head_sent: bool,
    /// Whether any byte of a response arrived.
    pub response_started: bool,
}

impl Failure {
    /// Whether the request may be sent again on a fresh connection: nothing of the body was
    /// consumed, no response began, and either the request never fully left or its method is
    /// idempotent (the backend closed a reused connection just as the request went out).
    pub fn may_resend(&self, method: &Method) -> bool {
        !self.body_touched && !self.response_started && (!self.head_sent || method.is_idempotent())
    }
}

/// A connection to a backend: the socket, what has been read but not yet consumed, and a
/// buffer for request heads.
#[derive(Debug)]
pub struct UpstreamConn {
    pub(crate) stream: UpStream,
    pub(crate) buf: BytesMut,
    head: Vec<u8>,
    next_read: usize,
    /// False once an exchange was cut short (the request body was not sent whole).
    pub(crate) intact: bool,
}

impl UpstreamConn {
    /// Opens a connection to `addr` within `timeout`. `Ok(Err(..))` is a failed connect,
    /// `Err(())` a timeout. Boxed: the connection moves between the pool, the request and
    /// the response body many times per request, and a pointer is cheaper to move.
    /// With `tls`, the TLS handshake is part of the connect and of its timeout.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&UpstreamTls>,
    ) -> Result<io::Result<Box<Self>>, ()> {
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            UpStream::open(tcp, tls).await
        };
        match tokio::time::timeout(timeout, open).await {
            Err(_) => Err(()),
            Ok(Err(e)) => Ok(Err(e)),
            Ok(Ok(stream)) => Ok(Ok(Box::new(UpstreamConn {
                stream,
                buf: BytesMut::new(),
                head: Vec::with_capacity(512),
                next_read: MIN_READ,
                intact: true,
            }))),
        }
    }

    /// Lets go of the read buffer while the connection sits idle in the pool (it holds no
    /// bytes then), so an idle connection costs its socket and little else; the next exchange
    /// allocates a fresh buffer.
    pub fn shed_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.next_read = MIN_READ;
        }
    }

    /// Whether an idle connection can take a request: the backend has sent nothing and has
    /// not closed it. Usually answered from the reactor's readiness cache, without a read.
    pub fn is_reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match &mut self.stream {
            UpStream::Plain(tcp) => match tcp.try_read_buf(&mut self.buf) {
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                Ok(_) => false, // closed (0) or unsolicited bytes
            },
            UpStream::Tls(tls) => {
                // One read that must not wait: TLS records that carry no data (session
                // tickets, say) are consumed; data or a close means the connection is spent.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut byte = [0u8; 1];
                let mut buf = tokio::io::ReadBuf::new(&mut byte);
                Pin::new(tls.as_mut())
                    .poll_read(&mut cx, &mut buf)
                    .is_pending()
            }
        }
    }

    /// Sends the request (head from `parts`, body streamed from `body`), then reads the
    /// response head, which must begin within `response_timeout` of the body's last byte.
    pub async fn exchange(
        &mut self,
        parts: &Parts,
        body: &mut RequestBody,
        response_timeout: Duration,
        deadlines: &Deadlines,
    ) -> Result<ResponseHead, Failure> {
        let mut f = Failure {
            error: UpstreamError::Closed,
            body_touched: false,
            head_sent: false,
            response_started: false,
        };
        let framing = if body.is_end_stream() {
            RequestFraming::Empty
        } else if parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            RequestFraming::Length
        } else {
            RequestFraming::Chunked
        };
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        codec::encode_head(
            &parts.method,
            target,
            &parts.headers,
            framing,
            &mut self.head,
        );
        if let Err(e) = write_all(&mut self.stream, &self.head).await {
            f.error = UpstreamError::Io(e);
            return Err(f);
        }
        f.head_sent = true;
        if framing != RequestFraming::Empty {
            f.body_touched = true;
            let prefix = body.prefix.clone();
            let chunked = framing == RequestFraming::Chunked;
            if let Err(e) = self.send_body(prefix, body.rest.as_mut(), chunked).await {
                // A backend that answers early and closes makes the upload fail; its answer
                // may already be here, and it is what the client should see.
                if let UpstreamError::Io(_) = e {
                    self.intact = false;
                    let early = deadlines.run(
                        coarse_now() + response_timeout,
                        self.read_head(&parts.method),
                    );
                    if let Some(Ok(head)) = early.await {
                        return Ok(head);
                    }
                }
                f.error = e;
                f.response_started = !self.buf.is_empty();
                return Err(f);
            }
        }
        // The timeout counts from the request's last byte: for a request without a body that
        // is the coarse clock's now (at most one tick old), which needs no clock read.
        let sent = if framing == RequestFraming::Empty {
            coarse_now()
        } else {
            std::time::Instant::now()
        };
        let method = &parts.method;
        match deadlines
            .run(sent + response_timeout, self.read_head(method))
            .await
        {
            Some(Ok(head)) => Ok(head),
            Some(Err((e, started))) => {
                f.error = e;
                f.response_started = started;
                Err(f)
            }
            None => {
                f.error = UpstreamError::Timeout(response_timeout);
                f.response_started = true; // unknown: never resend after a timeout
                Err(f)
            }
        }
    }

    /// Streams the request body. If the backend starts answering before the body is complete
    /// (an early 413, say), the upload stops and the response is read; the connection is then
    /// not reused, since the request was cut short.
    async fn send_body(
        &mut self,
        mut prefix: Option<bytes::Bytes>,
        mut body: Option<&mut Incoming>,
        chunked: bool,
    ) -> Result<(), UpstreamError> {
        // The early-response watch looks at the TCP socket, which over TLS also carries
        // records that are not a response (session tickets): it is for cleartext only.
        let (read, mut write) = match &mut self.stream {
            UpStream::Plain(tcp) => {
                let (r, w) = tcp.split();
                (Some(r), Writer::Plain(w))
            }
            UpStream::Tls(tls) => (None, Writer::Tls(tls.as_mut())),
        };
        loop {
            if let Some(data) = prefix.take() {
                write_data(&mut write, &data, chunked).await?;
                continue;
            }
            let frame = tokio::select! {
                biased;
                _ = async {
                    match &read {
                        Some(r) => r.readable().await,
                        None => std::future::pending().await,
                    }
                } => {
                    // An early response: stop sending; the caller reads it. The backend
                    // saw a partial request, so the connection is not reused.
                    self.intact = false;
                    return Ok(());
                }
                frame = async {
                    match body.as_mut() {
                        Some(b) => b.frame().await,
                        None => None,
                    }
                } => frame,
            };
            let data = match frame {
                None => break,
                Some(Err(e)) => return Err(UpstreamError::ClientBody(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(d) => d,
                    Err(_) => continue, // request trailers are not forwarded
                },
            };
            write_data(&mut write, &data, chunked).await?;
        }
        if chunked {
            write_all(&mut write, b"0\r\n\r\n")
                .await
                .map_err(UpstreamError::Io)?;
        }
        Ok(())
    }

    /// Reads until a whole response head is buffered. The error says whether any response
    /// byte had arrived.
    async fn read_head(&mut self, method: &Method) -> Result<ResponseHead, (UpstreamError, bool)> {
        loop {
            let started = !self.buf.is_empty();
            match codec::parse_head(&mut self.buf, method) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err((e.into(), true)),
            }
            self.buf.reserve(MIN_READ);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err((UpstreamError::Closed, started)),
                Ok(_) => {}
                Err(e) => return Err((UpstreamError::Io(e), started)),
            }
        }
    }

    /// Polls one read into the buffer for the response body: `Ok(0)` when the backend closed
    /// the connection. Read sizes adapt: a read that fills its space doubles the next one.
    pub fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let want = self.next_read;
        if self.buf.capacity() - self.buf.len() < want / 2 {
            self.buf.reserve(want);
        }
        let space = self.buf.capacity() - self.buf.len();
        let fut = self.stream.read_buf(&mut self.buf);
        tokio::pin!(fut);
        let r = fut.poll(cx);
        if let Poll::Ready(Ok(n)) = r {
            if n >= space && self.next_read < MAX_READ {
                self.next_read *= 2;
            }
        }
        r
    }
}

/// The writing side of a connection while the request body is sent.
enum Writer<'a> {
    Plain(tokio::net::tcp::WriteHalf<'a>),
    Tls(&'a mut tokio_rustls::client::TlsStream<TcpStream>),
}

impl AsyncWrite for Writer<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Tls(w) => Pin::new(&mut **w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Tls(w) => Pin::new(&mut **w).poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_flush(cx),
            Writer::Tls(w) => Pin::new(&mut **w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Tls(w) => Pin::new(&mut **w).poll_shutdown(cx),
        }
    }
}

/// Writes one piece of request body, as a chunk when `chunked`.
async fn write_data<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    chunked: bool,
) -> Result<(), UpstreamError> {
    if data.is_empty() {
        return Ok(());
    }
    let size_line = format!("{:x}\r\n", data.len());
    let mut slices: [IoSlice<'_>; 3] = if chunked {
        [
            IoSlice::new(size_line.as_bytes()),
            IoSlice::new(data),
            IoSlice::new(b"\r\n"),
        ]
    } else {
        [IoSlice::new(data), IoSlice::new(&[]), IoSlice::new(&[])]
    };
    write_all_vectored(w, &mut slices)
        .await
        .map_err(UpstreamError::Io)?;
    w.flush().await.map_err(UpstreamError::Io)
}

/// Writes `bytes` and flushes them (a no-op on TCP; TLS holds records until flushed).
async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n =
            std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write_vectored(cx, slices)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}
