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
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::sync::Mutex;
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
/// watchdog). Only the connection's reactor thread touches it, but an upgraded connection's
/// socket (WebSocket) must be `Send` for hyper, so its state is atomics and uncontended locks
/// rather than cells: relaxed loads and stores, the same instructions on x86.
pub struct ConnCtx {
    /// The client's IP, ready to append to `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// The instant the times below count from.
    base: Instant,
    in_flight: AtomicU32,
    /// When bytes of a not yet complete request head were first seen ([`NEVER`]: none).
    head_started: AtomicU64,
    idle_since: AtomicU64,
    scanner: Mutex<HeadScanner>,
    ambiguous: AtomicBool,
    header_timeout: Duration,
    keepalive_timeout: Duration,
    /// What the watchdog sleeps until, and how to wake it when a deadline moves earlier.
    dog_deadline: AtomicU64,
    dog_kicked: AtomicBool,
    dog_waker: Mutex<Option<Waker>>,
    /// HTTP/2: reads are frames, not request heads (hyper's HTTP/2 state machine checks them).
    http2: AtomicBool,
    /// Where ACME HTTP-01 challenges are answered from on this connection (a plain-HTTP
    /// connection of a `[listener]` with `acme_challenge_dir`).
    pub acme_dir: Option<Arc<std::path::Path>>,
    /// The scheme the client used (`https` over TLS), for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// Whether an HTTP/1.1 request may upgrade the connection to HTTP/2 (`Upgrade: h2c`).
    pub h2c_upgrade: bool,
    /// An upgrade to h2c agreed to, taken up once hyper has sent the 101.
    h2c_pending: Mutex<Option<PendingH2c>>,
}

/// An agreed h2c upgrade: the connection to take over, and the first request as the
/// HEADERS frame of stream 1 (see [`super::h2c_upgrade`]).
pub struct PendingH2c {
    /// Resolves to the connection once hyper has sent the 101.
    pub on_upgrade: hyper::upgrade::OnUpgrade,
    /// The upgraded request, to be served on stream 1.
    pub frame: bytes::Bytes,
}

/// A time stamp that is not set.
const NEVER: u64 = u64::MAX;

impl ConnCtx {
    /// State for a connection from `peer` accepted now, with the client timeouts in force.
    pub fn new(peer: SocketAddr, header_timeout: Duration, keepalive_timeout: Duration) -> Self {
        let base = Instant::now();
        ConnCtx {
            client_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            base,
            in_flight: AtomicU32::new(0),
            head_started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            scanner: Mutex::new(HeadScanner::default()),
            ambiguous: AtomicBool::new(false),
            header_timeout,
            keepalive_timeout,
            dog_deadline: AtomicU64::new(header_timeout.as_nanos() as u64),
            dog_kicked: AtomicBool::new(false),
            dog_waker: Mutex::new(None),
            http2: AtomicBool::new(false),
            acme_dir: None,
            scheme: "http",
            h2c_upgrade: false,
            h2c_pending: Mutex::new(None),
        }
    }

    fn stamp(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.base).as_nanos() as u64).min(NEVER - 1)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.base + Duration::from_nanos(stamp)
    }

    fn head_started(&self) -> Option<Instant> {
        let s = self.head_started.load(Relaxed);
        (s != NEVER).then(|| self.instant(s))
    }

    fn dog_deadline(&self) -> Instant {
        self.instant(self.dog_deadline.load(Relaxed))
    }

    /// A request head has been parsed and handed to the proxy.
    pub fn begin_request(&self) {
        self.in_flight
            .store(self.in_flight.load(Relaxed) + 1, Relaxed);
        self.head_started.store(NEVER, Relaxed);
    }

    /// The response has been sent (or abandoned): the connection may go idle.
    pub fn end_request(&self, now: Instant) {
        let n = self.in_flight.load(Relaxed).saturating_sub(1);
        self.in_flight.store(n, Relaxed);
        if n == 0 {
            self.idle_since.store(self.stamp(now), Relaxed);
            lock(&self.scanner).arm();
            self.kick_if_earlier(now + self.keepalive_timeout);
        }
    }

    /// Wakes the watchdog if `deadline` comes before the one it sleeps until. In the usual
    /// configuration (keep-alive longer than the header timeout) this is rare: at most once per
    /// watchdog period, not once per request.
    fn kick_if_earlier(&self, deadline: Instant) {
        if deadline < self.dog_deadline() {
            self.dog_deadline.store(self.stamp(deadline), Relaxed);
            self.dog_kicked.store(true, Relaxed);
            if let Some(w) = lock(&self.dog_waker).take() {
                w.wake();
            }
        }
    }

    /// Keeps an agreed h2c upgrade for [`serve_http`] to take up after the 101.
    pub fn set_h2c_upgrade(&self, pending: PendingH2c) {
        *lock(&self.h2c_pending) = Some(pending);
    }

    /// Whether the head just parsed carried both Content-Length and Transfer-Encoding.
    pub fn take_ambiguous_framing(&self) -> bool {
        self.ambiguous.swap(false, Relaxed)
    }

    fn on_read(&self, bytes: &[u8]) {
        if self.http2.load(Relaxed) {
            return;
        }
        if self.in_flight.load(Relaxed) == 0 && self.head_started.load(Relaxed) == NEVER {
            let now = coarse_now();
            self.head_started.store(self.stamp(now), Relaxed);
            self.kick_if_earlier(now + self.header_timeout);
        }
        let mut scanner = lock(&self.scanner);
        if scanner.is_armed() && scanner.feed(bytes) == Some(Verdict::Ambiguous) {
            self.ambiguous.store(true, Relaxed);
        }
    }
}

/// Locks a mutex only this connection's thread takes (never contended, never poisoned in
/// practice; a poisoned one is used as it is).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client socket (or the TLS stream over it), counting bytes and showing each read to the
/// [`ConnCtx`].
struct Tracked<S> {
    stream: S,
    ctx: Arc<ConnCtx>,
    stats: Arc<ThreadStats>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
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
    if ctx.in_flight.load(Relaxed) > 0 {
        // An exchange in progress: its own timeouts apply; look again later.
        return Ok(now + header.min(keepalive));
    }
    if let Some(started) = ctx.head_started() {
        let deadline = started + header;
        return if now >= deadline {
            Err(Expired::HeaderTimeout)
        } else {
            Ok(deadline)
        };
    }
    let deadline = ctx.instant(ctx.idle_since.load(Relaxed)) + keepalive;
    if now >= deadline {
        Err(Expired::Idle)
    } else {
        Ok(deadline)
    }
}

async fn watchdog(ctx: Arc<ConnCtx>) -> Expired {
    let sleep = tokio::time::sleep_until(ctx.dog_deadline().into());
    tokio::pin!(sleep);
    loop {
        std::future::poll_fn(|cx| {
            if ctx.dog_kicked.swap(false, Relaxed) {
                return Poll::Ready(());
            }
            let mut slot = lock(&ctx.dog_waker);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
            sleep.as_mut().poll(cx)
        })
        .await;
        match next_check(&ctx, Instant::now()) {
            Err(expired) => return expired,
            Ok(deadline) => {
                ctx.dog_deadline.store(ctx.stamp(deadline), Relaxed);
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
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let stats = Arc::clone(&worker.stats);
    let cfg = &worker.shared.config.server;
    let peer = if cfg.proxy_protocol.is_on() {
        // `trusted_proxies` as reloaded.
        let routing = worker.shared.routing();
        let gate = super::proxy_protocol::gate::Gate {
            mode: cfg.proxy_protocol,
            timeout: cfg.proxy_protocol_timeout,
            trusted: &routing.config.server.trusted_proxies,
        };
        match Box::pin(gate.admit(&mut stream, peer, &stats.proxy)).await {
            Ok(client) => client,
            Err(_) => {
                stats.conns_closed.bump(1);
                return;
            }
        }
    } else {
        peer
    };
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
    let how = Http {
        http2,
        tls: false,
        acme_dir: None,
        h2c_upgrade: true,
    };
    serve_http(worker, stream, peer, how, shutdown).await;
    stats.conns_closed.bump(1);
}

/// How to serve a connection whose protocol is decided.
#[derive(Debug, Clone, Default)]
pub struct Http {
    /// HTTP/2, else HTTP/1.1.
    pub http2: bool,
    /// Over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// Answer ACME HTTP-01 challenges from this directory.
    pub acme_dir: Option<Arc<std::path::Path>>,
    /// Let HTTP/1.1 requests upgrade to HTTP/2 (`Upgrade: h2c`; cleartext only).
    pub h2c_upgrade: bool,
}

/// Serves HTTP on a connection whose protocol is decided: a client socket, or a TLS stream
/// over one.
pub async fn serve_http<S>(
    worker: Rc<Worker>,
    stream: S,
    peer: SocketAddr,
    how: Http,
    shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stats = Arc::clone(&worker.stats);
    let cfg = &worker.shared.config.server;
    let mut ctx = ConnCtx::new(
        peer,
        cfg.client_header_timeout,
        cfg.client_keepalive_timeout,
    );
    ctx.acme_dir = how.acme_dir;
    ctx.h2c_upgrade = how.h2c_upgrade && !how.tls && !how.http2;
    if how.tls {
        ctx.scheme = "https";
    }
    let http2 = how.http2;
    let ctx = Arc::new(ctx);
    ctx.http2.store(http2, Relaxed);
    let io = TokioIo::new(Tracked {
        stream,
        ctx: Arc::clone(&ctx),
        stats: Arc::clone(&stats),
    });
    let (w, c) = (Rc::clone(&worker), Arc::clone(&ctx));
    let service = hyper::service::service_fn(move |req| {
        let (w, c) = (Rc::clone(&w), Arc::clone(&c));
        async move { Ok::<_, Infallible>(w.handle(c, req).await) }
    });
    if http2 {
        let conn = worker.http2.serve_connection(io, service);
        drive(conn, &ctx, &stats, shutdown).await;
    } else {
        // With upgrades: a WebSocket handshake hands the connection to its tunnel, an h2c
        // upgrade to HTTP/2 below.
        let conn = worker.http1.serve_connection(io, service).with_upgrades();
        drive(conn, &ctx, &stats, shutdown.clone()).await;
        let pending = lock(&ctx.h2c_pending).take();
        if let Some(p) = pending {
            serve_upgraded_h2c(&worker, p, &ctx, &stats, shutdown).await;
        }
    }
}

/// Serves HTTP/2 on a connection upgraded from HTTP/1.1, the upgrading request on stream 1.
async fn serve_upgraded_h2c(
    worker: &Rc<Worker>,
    pending: PendingH2c,
    ctx: &Arc<ConnCtx>,
    stats: &Arc<ThreadStats>,
    shutdown: watch::Receiver<bool>,
) {
    let wait = worker.shared.config.server.client_header_timeout;
    let Ok(Ok(upgraded)) = tokio::time::timeout(wait, pending.on_upgrade).await else {
        return;
    };
    ctx.http2.store(true, Relaxed);
    let io = super::h2c_upgrade::Spliced::new(TokioIo::new(upgraded), pending.frame);
    let (w, c) = (Rc::clone(worker), Arc::clone(ctx));
    let service = hyper::service::service_fn(move |req| {
        let (w, c) = (Rc::clone(&w), Arc::clone(&c));
        async move { Ok::<_, Infallible>(w.handle(c, req).await) }
    });
    let conn = worker.http2.serve_connection(TokioIo::new(io), service);
    drive(conn, ctx, stats, shutdown).await;
}

/// A hyper connection that can be asked to finish gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
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
    ctx: &Arc<ConnCtx>,
    stats: &Arc<ThreadStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::pin!(conn);
    let dog = watchdog(Arc::clone(ctx));
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
