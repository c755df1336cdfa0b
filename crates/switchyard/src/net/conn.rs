//! Serving one client connection: hyper's HTTP/1.1 state machine over a socket wrapper that
//! counts bytes and watches request heads, plus a watchdog for the two client timeouts.
//!
//! hyper has a single header-read timer that also bounds the idle time between requests, so
//! switchyard keeps its own, per connection, to give them separate limits as nginx does:
//! - `client_header_timeout`: from the first byte of a request head (or from accept) to the
//!   end of that head. A slowloris client that trickles a head is cut off here.
//! - `client_keepalive_timeout`: how long a connection may sit idle between exchanges.
//!
//! The watchdog sleeps until the next deadline and re-reads the connection's state, so a busy
//! connection costs one timer wake-up per timeout period, not one per read.

use crate::observe::stats::Bump;
use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::detect::Protocol;
use crate::clock::coarse_now;
use crate::l7::framing::{HeadScanner, Verdict};
use crate::l7::proxy::Worker;
use crate::observe::{ErrorKind, ThreadStats};

/// What one client connection's parts share (the socket wrapper, the request handler, the
/// watchdog). Single-threaded: plain cells.
pub struct ConnCtx {
    /// The client's IP, ready to append to `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    in_flight: Cell<u32>,
    /// When bytes of a not yet complete request head were first seen.
    head_started: Cell<Option<Instant>>,
    idle_since: Cell<Instant>,
    scanner: RefCell<HeadScanner>,
    ambiguous: Cell<bool>,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    /// What the watchdog sleeps until, and how to wake it when a deadline moves earlier.
    dog_deadline: Cell<Instant>,
    dog_kicked: Cell<bool>,
    dog_waker: RefCell<Option<Waker>>,
    /// HTTP/2: reads are frames, not request heads (hyper's HTTP/2 state machine checks them).
    http2: Cell<bool>,
}

impl ConnCtx {
    /// State for a connection from `peer` accepted now, with the client timeouts in force.
    pub fn new(peer: SocketAddr, header_timeout: Duration, keepalive_timeout: Duration) -> Self {
        let now = Instant::now();
        ConnCtx {
            client_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            in_flight: Cell::new(0),
            head_started: Cell::new(Some(now)),
            idle_since: Cell::new(now),
            scanner: RefCell::new(HeadScanner::default()),
            ambiguous: Cell::new(false),
            header_timeout,
            keepalive_timeout,
            dog_deadline: Cell::new(now + header_timeout),
            dog_kicked: Cell::new(false),
            dog_waker: RefCell::new(None),
            http2: Cell::new(false),
        }
    }

    /// A request head has been parsed and handed to the proxy.
    pub fn begin_request(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.head_started.set(None);
    }

    /// The response has been sent (or abandoned): the connection may go idle.
    pub fn end_request(&self, now: Instant) {
        let n = self.in_flight.get().saturating_sub(1);
        self.in_flight.set(n);
        if n == 0 {
            self.idle_since.set(now);
            self.scanner.borrow_mut().arm();
            self.kick_if_earlier(now + self.keepalive_timeout);
        }
    }

    /// Wakes the watchdog if `deadline` comes before the one it sleeps until. In the usual
    /// configuration (keep-alive longer than the header timeout) this is rare: at most once per
    /// watchdog period, not once per request.
    fn kick_if_earlier(&self, deadline: Instant) {
        if deadline < self.dog_deadline.get() {
            self.dog_deadline.set(deadline);
            self.dog_kicked.set(true);
            if let Some(w) = self.dog_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Whether the head just parsed carried both Content-Length and Transfer-Encoding.
    pub fn take_ambiguous_framing(&self) -> bool {
        self.ambiguous.replace(false)
    }

    fn on_read(&self, bytes: &[u8]) {
        if self.http2.get() {
            return;
        }
        if self.in_flight.get() == 0 && self.head_started.get().is_none() {
            let now = coarse_now();
            self.head_started.set(Some(now));
            self.kick_if_earlier(now + self.header_timeout);
        }
        let mut scanner = self.scanner.borrow_mut();
        if scanner.is_armed() && scanner.feed(bytes) == Some(Verdict::Ambiguous) {
            self.ambiguous.set(true);
        }
    }
}

/// The client socket, counting bytes and showing each read to the [`ConnCtx`].
struct Tracked {
    stream: TcpStream,
    ctx: Rc<ConnCtx>,
    stats: Arc<ThreadStats>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                this.stats.bytes_in.bump(new.len() as u64);
                this.ctx.on_read(new);
            }
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.stats.bytes_out.bump(n as u64);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.stats.bytes_out.bump(n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    HeaderTimeout,
    Idle,
}

/// What the watchdog should do at `now`: close the connection, or look again at a deadline.
fn next_check(ctx: &ConnCtx, now: Instant) -> Result<Instant, Expired> {
    let (header, keepalive) = (ctx.header_timeout, ctx.keepalive_timeout);
    if ctx.in_flight.get() > 0 {
        // An exchange in progress: its own timeouts apply; look again later.
        return Ok(now + header.min(keepalive));
    }
    if let Some(started) = ctx.head_started.get() {
        let deadline = started + header;
        return if now >= deadline {
            Err(Expired::HeaderTimeout)
        } else {
            Ok(deadline)
        };
    }
    let deadline = ctx.idle_since.get() + keepalive;
    if now >= deadline {
        Err(Expired::Idle)
    } else {
        Ok(deadline)
    }
}

async fn watchdog(ctx: Rc<ConnCtx>) -> Expired {
    let sleep = tokio::time::sleep_until(ctx.dog_deadline.get().into());
    tokio::pin!(sleep);
    loop {
        std::future::poll_fn(|cx| {
            if ctx.dog_kicked.replace(false) {
                return Poll::Ready(());
            }
            let mut slot = ctx.dog_waker.borrow_mut();
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
            sleep.as_mut().poll(cx)
        })
        .await;
        match next_check(&ctx, Instant::now()) {
            Err(expired) => return expired,
            Ok(deadline) => {
                ctx.dog_deadline.set(deadline);
                sleep.as_mut().reset(deadline.into());
            }
        }
    }
}

/// Serves a client connection until the client leaves, a timeout closes it, or shutdown
/// drains it (the exchanges in progress finish, then the connection closes). Its first bytes
/// decide the protocol ([`detect`](super::detect)): HTTP/1.1, or HTTP/2 with prior knowledge;
/// anything else is closed and counted.
pub async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let stats = Arc::clone(&worker.stats);
    let cfg = &worker.shared.config.server;
    let protocol = match super::detect::detect(&stream, cfg.client_header_timeout).await {
        Ok(p) => p,
        Err(why) => {
            if why == super::detect::Undetected::Timeout {
                stats.error(ErrorKind::ClientHeaderTimeout);
            }
            stats.conns_closed.bump(1);
            return;
        }
    };
    let http2 = match protocol {
        Protocol::Http1 => false,
        Protocol::H2 => true,
        Protocol::Tls | Protocol::Unknown => {
            stats.error(ErrorKind::UnknownProtocol);
            stats.conns_closed.bump(1);
            return;
        }
    };
    let ctx = Rc::new(ConnCtx::new(
        peer,
        cfg.client_header_timeout,
        cfg.client_keepalive_timeout,
    ));
    ctx.http2.set(http2);
    let io = TokioIo::new(Tracked {
        stream,
        ctx: Rc::clone(&ctx),
        stats: Arc::clone(&stats),
    });
    let (w, c) = (Rc::clone(&worker), Rc::clone(&ctx));
    let service = hyper::service::service_fn(move |req| {
        let (w, c) = (Rc::clone(&w), Rc::clone(&c));
        async move { Ok::<_, Infallible>(w.handle(c, req).await) }
    });
    if http2 {
        let conn = worker.http2.serve_connection(io, service);
        drive(conn, &ctx, &stats, shutdown).await;
    } else {
        let conn = worker.http1.serve_connection(io, service);
        drive(conn, &ctx, &stats, shutdown).await;
    }
    stats.conns_closed.bump(1);
}

/// A hyper connection that can be asked to finish gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Drives `conn` until it ends, the watchdog expires, or shutdown drains it.
async fn drive<C: Graceful>(
    conn: C,
    ctx: &Rc<ConnCtx>,
    stats: &Arc<ThreadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::pin!(conn);
    let dog = watchdog(Rc::clone(ctx));
    tokio::pin!(dog);
    let mut draining = *shutdown.borrow();
    if draining {
        conn.as_mut().graceful();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    let kind = if e.is_parse_too_large() {
                        Some(ErrorKind::HeaderTooLarge)
                    } else if e.is_parse() {
                        Some(ErrorKind::BadRequest)
                    } else if e.is_user() {
                        None // a body error already counted where it happened
                    } else {
                        Some(ErrorKind::ClientError)
                    };
                    if let Some(k) = kind {
                        stats.error(k);
                    }
                }
                break;
            }
            expired = &mut dog => {
                if expired == Expired::HeaderTimeout {
                    stats.error(ErrorKind::ClientHeaderTimeout);
                }
                break;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful();
            }
        }
    }
}
