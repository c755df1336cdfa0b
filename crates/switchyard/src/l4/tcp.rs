//! `protocol = tcp`: accept a client, connect to a backend, copy bytes both ways.
//!
//! A tunnel is two copy loops (client to backend, backend to client) in one task, each with
//! its own buffer: [`START_BUFFER_BYTES`], grown to [`BUFFER_BYTES`] the first time a read
//! fills it, so a tunnel holds at most that much per direction however fast one side sends and
//! however slowly the other reads, and an idle one little. When one side ends its stream
//! (EOF), the write half of the other side is shut down and the opposite direction goes on
//! until it ends too (half-close), so request/response protocols that signal "done" by
//! closing their write side work. An error on either side closes both; so does
//! `idle_timeout` with no bytes moving either way.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use switchyard_balance::InFlight;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::group::{Group, SetupError};
use crate::net::ports::L4Port;
use crate::observe::stats::{BackendStats, Bump, L4Stats, ThreadStats};
use crate::server::Shared;

/// Bytes buffered per direction of a tunnel.
pub const BUFFER_BYTES: usize = 64 * 1024;
/// What a direction's buffer starts at; it grows to [`BUFFER_BYTES`] once a read fills it
/// (a bulk transfer), so a quiet tunnel costs little.
pub const START_BUFFER_BYTES: usize = 8 * 1024;

/// One `[l4 NAME]` listener as one reactor thread runs it: its backend group (with the
/// thread's own balancer instance) and the thread's counters.
#[derive(Debug)]
pub struct Listener {
    shared: Arc<Shared>,
    /// The listener.
    port: Arc<L4Port>,
    thread: usize,
    stats: Arc<ThreadStats>,
    group: Group,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl Listener {
    /// `port` on reactor thread `thread`.
    pub fn new(shared: Arc<Shared>, thread: usize, port: Arc<L4Port>) -> Result<Self, SetupError> {
        Ok(Listener {
            stats: shared.stats.thread(thread),
            group: Group::new(&shared, thread, &port.config)?,
            connect_timeout: port.connect_timeout,
            idle_timeout: port.config.idle_timeout,
            thread,
            port,
            shared,
        })
    }

    fn counters(&self) -> &L4Stats {
        &self.port.stats[self.thread]
    }

    /// Serves one client connection to its end.
    async fn serve(&self, client: TcpStream, peer: SocketAddr) {
        // ACLs name L4 listeners; one a reload removed, still taking its queued connections,
        // has none.
        let routing = self.shared.routing();
        if !routing.acls.allow_l4(&self.port.config.name, peer.ip()) {
            // Closed before any backend is connected.
            self.stats.error(crate::observe::ErrorKind::AclDenied);
            drop(client);
            return;
        }
        let Some((upstream, i, _in_flight)) = self.connect(peer).await else {
            self.counters().no_backend.bump(1);
            tracing::debug!(%peer, listener = %self.port.config.name, "l4: no backend could be reached");
            return;
        };
        let stats = &self.stats.backends[self.group.backends[i].slot];
        match tunnel(client, upstream, stats, self.idle_timeout).await {
            End::Done => {}
            End::Idle => self.counters().idle_timeouts.bump(1),
            End::Error(e) => tracing::debug!(%peer, error = %e, "l4: tunnel ended with an error"),
        }
    }

    /// With `proxy_protocol` on, reads the PROXY header of a connection from `peer` (see
    /// [`gate`](crate::net::proxy_protocol::gate)): the stream and the client's address, or
    /// `None` if it was closed (counted).
    async fn proxy_header(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) -> Option<(TcpStream, SocketAddr)> {
        let config = &self.port.config;
        if !config.proxy_protocol.is_on() {
            return Some((stream, peer));
        }
        // `trusted_proxies` as reloaded.
        let routing = self.shared.routing();
        let gate = crate::net::proxy_protocol::gate::Gate {
            mode: config.proxy_protocol,
            timeout: self.port.proxy_protocol_timeout,
            trusted: &routing.config.server.trusted_proxies,
        };
        let client = Box::pin(gate.admit(&mut stream, peer, &self.counters().proxy))
            .await
            .ok()?;
        Some((stream, client))
    }

    /// Serves a client connection accepted elsewhere (a `[listener]` whose `fallback` names
    /// this group), counted as one of this group's.
    pub async fn serve_fallback(&self, client: TcpStream, peer: SocketAddr) {
        self.counters().connections.bump(1);
        self.serve(client, peer).await;
        self.counters().closed.bump(1);
    }

    /// Connects to a backend the balancer picks; after a failure, to each other backend once.
    /// Returns the stream, the backend's index in the group and its in-flight guard.
    async fn connect(&self, peer: SocketAddr) -> Option<(TcpStream, usize, InFlight)> {
        let key = self.group.key(peer);
        let mut tried: Vec<usize> = Vec::with_capacity(self.group.len());
        while tried.len() < self.group.len() {
            let now_ms = self.shared.clock.ms_at(crate::clock::coarse_now());
            let i = self.group.pick(now_ms, key, &tried)?;
            tried.push(i);
            let backend = &self.group.backends[i];
            let in_flight = backend.state.start_request();
            let stats = &self.stats.backends[backend.slot];
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(backend.addr)).await
            {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    stats.conns_opened.bump(1);
                    return Some((stream, i, in_flight));
                }
                Ok(Err(e)) => tracing::debug!(
                    backend = backend.name(), error = %e, "l4: connect failed"
                ),
                Err(_) => tracing::debug!(
                    backend = backend.name(),
                    timeout_ms = self.connect_timeout.as_millis() as u64,
                    "l4: connect timed out"
                ),
            }
            stats.errors.bump(1);
            self.counters().connect_failures.bump(1);
        }
        None
    }
}

/// How a tunnel ended.
enum End {
    /// Both directions reached EOF.
    Done,
    /// No bytes moved either way for `idle_timeout`.
    Idle,
    /// A read, write or shutdown failed on either side.
    Error(io::Error),
}

/// Copies `client` <-> `upstream` until both directions end, one fails, or nothing moves for
/// `idle`. Bytes are counted on the backend's `stats` as they are written.
async fn tunnel(
    client: TcpStream,
    upstream: TcpStream,
    stats: &BackendStats,
    idle: Duration,
) -> End {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let last = Cell::new(Instant::now());
    let to_backend = pipe(client_read, upstream_write, &last, |n| {
        stats.l4_bytes_out.bump(n)
    });
    let to_client = pipe(upstream_read, client_write, &last, |n| {
        stats.l4_bytes_in.bump(n)
    });
    tokio::select! {
        r = async { tokio::try_join!(to_backend, to_client) } => match r {
            Ok(_) => End::Done,
            Err(e) => End::Error(e),
        },
        () = idle_watch(&last, idle) => End::Idle,
    }
    // Dropping the halves closes both sockets.
}

/// One direction: read into a bounded buffer, write it all, repeat; on EOF shut down the
/// write side of `to` (half-close) and end.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    last: &Cell<Instant>,
    count: impl Fn(u64),
) -> io::Result<()> {
    let mut buf = vec![0u8; START_BUFFER_BYTES];
    loop {
        let n = from.read(&mut buf).await?;
        if n == buf.len() && buf.len() < BUFFER_BYTES {
            // A full read: more is waiting. Larger reads and writes halve the system calls.
            buf.resize(BUFFER_BYTES, 0);
        }
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        last.set(Instant::now());
        to.write_all(&buf[..n]).await?;
        last.set(Instant::now());
        count(n as u64);
    }
}

/// Resolves once `idle` has passed since `last` without `last` moving.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = last.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Accepts connections on `socket` for `listener` until shutdown; each runs in its own task
/// and is counted in `active` (which the reactor waits on to drain) while it is open.
pub async fn accept_loop(
    socket: TcpListener,
    listener: Rc<Listener>,
    active: Rc<Cell<usize>>,
    shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::clone(&listener.shared);
    let spawn = |stream, peer, permit| {
        listener.counters().connections.bump(1);
        active.set(active.get() + 1);
        let (listener, active) = (Rc::clone(&listener), Rc::clone(&active));
        tokio::task::spawn_local(async move {
            let _permit = permit;
            if let Some((stream, client)) = listener.proxy_header(stream, peer).await {
                listener.serve(stream, client).await;
            }
            listener.counters().closed.bump(1);
            active.set(active.get() - 1);
        });
    };
    let mut rx = shutdown.clone();
    let closed = listener.port.closed();
    crate::net::accept::accept_until_shutdown(&socket, &shared, &mut rx, Some(closed), "l4", spawn)
        .await;
}
