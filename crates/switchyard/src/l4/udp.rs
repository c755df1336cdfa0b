//! `protocol = udp`: relay datagrams between clients and backends, one session per client
//! address.
//!
//! Each reactor thread receives on its own SO_REUSEPORT socket per listener (the kernel sends
//! all of one client's datagrams to the same socket). The first datagram from a client address
//! opens a session: the balancer picks a backend (with `consistent_hash`, by the client's IP
//! address), and a new socket on an ephemeral port, connected to that backend, carries the
//! session's datagrams; the session holds the backend's in-flight count, as a TCP tunnel does.
//! A task per session relays the backend's replies to the client through the listener's
//! socket. Later datagrams from the client go to the same backend until the session has seen
//! nothing either way for `idle_timeout` (then it expires), or the backend refuses
//! (ICMP port unreachable: the session ends, and the client's next datagram opens another).
//!
//! Nothing waits on a send: a datagram that does not fit the socket buffer is dropped and
//! counted (as UDP would drop it anyway), so one slow client or backend never holds up
//! another. At most `max_sessions` sessions are open over all threads; datagrams of new
//! clients past that are dropped and counted. The session table itself is in [`super::sessions`].

use std::cell::{Cell, RefCell};
use std::io::{self, Read as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{SockAddr, SockRef};
use switchyard_balance::InFlight;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::group::{Group, SetupError};
use super::sessions::{Inserted, SessionSlots, SessionTable, Slot};
use crate::net::ports::L4Port;
use crate::observe::stats::{BackendStats, Bump, L4Stats, ThreadStats};
use crate::server::Shared;

/// The shortest and longest pause between two sweeps of expired sessions; in between, a
/// quarter of `idle_timeout`.
const SWEEP_BOUNDS: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// One `[l4 NAME]` `protocol = udp` listener as one reactor thread runs it.
pub struct Listener {
    shared: Arc<Shared>,
    /// The listener.
    port: Arc<L4Port>,
    thread: usize,
    stats: Arc<ThreadStats>,
    group: Group,
    idle_timeout: Duration,
    max_sessions: usize,
    max_datagram: usize,
    /// The listener's open sessions over every thread.
    slots: Arc<SessionSlots>,
    /// This thread's sessions.
    table: RefCell<SessionTable<Session>>,
    /// Where replies are received, shared by this thread's sessions (never held across an
    /// await); one byte longer than `max_datagram` to tell a datagram that is too long.
    reply_buf: RefCell<Vec<u8>>,
    /// The id of the next session.
    next_id: Cell<u64>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("udp::Listener")
            .field("name", &self.port.config.name)
            .field("sessions", &self.table.borrow().len())
            .finish()
    }
}

/// One client's session: the socket connected to its backend and the task relaying replies.
/// Dropping it stops the task, closes the socket and releases the in-flight count and the
/// session slot.
struct Session {
    id: u64,
    upstream: Rc<UdpSocket>,
    /// The backend's index in the group.
    backend: usize,
    relay: AbortHandle,
    _in_flight: InFlight,
    _slot: Slot,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl Listener {
    /// `port` on reactor thread `thread`.
    pub fn new(shared: Arc<Shared>, thread: usize, port: Arc<L4Port>) -> Result<Self, SetupError> {
        let config = &port.config;
        Ok(Listener {
            stats: shared.stats.thread(thread),
            group: Group::new(&shared, thread, config)?,
            idle_timeout: config.idle_timeout,
            max_sessions: config.max_sessions,
            max_datagram: config.max_datagram,
            slots: Arc::clone(&port.sessions),
            table: RefCell::new(SessionTable::new(config.max_sessions, config.idle_timeout)),
            reply_buf: RefCell::new(vec![0; config.max_datagram + 1]),
            next_id: Cell::new(0),
            thread,
            port,
            shared,
        })
    }

    fn counters(&self) -> &L4Stats {
        &self.port.stats[self.thread]
    }

    fn backend_stats(&self, backend: usize) -> &BackendStats {
        &self.stats.backends[self.group.backends[backend].slot]
    }

    /// Forwards one datagram from `peer` to its session's backend, opening the session first
    /// if it has none.
    fn from_client(self: &Rc<Self>, socket: &Rc<UdpSocket>, data: &[u8], peer: SocketAddr) {
        if data.len() > self.max_datagram {
            self.counters().datagrams_dropped.bump(1);
            return;
        }
        let now = Instant::now();
        let sent = self
            .table
            .borrow_mut()
            .touch(peer, now)
            .map(|s| (s.id, s.backend, SockRef::from(&*s.upstream).send(data)));
        let (id, backend, result) = match sent {
            Some(sent) => sent,
            None => match self.open(socket, peer, now) {
                Some(s) => (s.id, s.backend, SockRef::from(&*s.upstream).send(data)),
                None => return,
            },
        };
        match result {
            Ok(n) => {
                let stats = self.backend_stats(backend);
                stats.udp_datagrams_out.bump(1);
                stats.udp_bytes_out.bump(n as u64);
            }
            Err(e) => {
                self.counters().datagrams_dropped.bump(1);
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.fail(peer, id, backend, &e);
                }
            }
        }
    }

    /// Opens a session for `peer` (counted and in the table, its relay task started) and
    /// returns its id and backend; `None` if `max_sessions` are open or no backend could be
    /// reached (both counted).
    fn open(
        self: &Rc<Self>,
        socket: &Rc<UdpSocket>,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<Opened> {
        // `peer` has no live session: one still in the table has expired; end it first, so
        // its slot is free for the new one.
        let stale = self.table.borrow_mut().remove_if(peer, |_| true);
        if stale.is_some() {
            drop(stale);
            self.counters().sessions_closed.bump(1);
            self.counters().sessions_expired.bump(1);
        }
        let Some(slot) = self.slots.try_acquire(self.max_sessions) else {
            self.counters().sessions_rejected.bump(1);
            return None;
        };
        let key = self.group.key(peer);
        let now_ms = self.shared.clock.ms_at(now);
        let mut tried: Vec<usize> = Vec::with_capacity(self.group.len());
        while tried.len() < self.group.len() {
            let Some(i) = self.group.pick(now_ms, key, &tried) else {
                break;
            };
            tried.push(i);
            let backend = &self.group.backends[i];
            let upstream = match connect(backend.addr) {
                Ok(s) => Rc::new(s),
                Err(e) => {
                    tracing::debug!(backend = backend.name(), error = %e, "udp: no socket for a session");
                    self.backend_stats(i).errors.bump(1);
                    continue;
                }
            };
            let id = self.next_id.get();
            self.next_id.set(id + 1);
            let relay = tokio::task::spawn_local(Rc::clone(self).relay(
                Rc::clone(socket),
                Rc::clone(&upstream),
                peer,
                id,
                i,
            ))
            .abort_handle();
            let session = Session {
                id,
                upstream,
                backend: i,
                relay,
                _in_flight: backend.state.start_request(),
                _slot: slot,
            };
            let opened = Opened {
                id,
                backend: i,
                upstream: Rc::clone(&session.upstream),
            };
            let inserted = self.table.borrow_mut().insert(peer, session, now);
            match inserted {
                Inserted::New => {}
                // Neither is reached (the stale session was removed above, and the slots cap
                // the table first), but both are handled.
                Inserted::Replaced(old) => {
                    drop(old);
                    self.counters().sessions_closed.bump(1);
                    self.counters().sessions_expired.bump(1);
                }
                Inserted::Full(_) => {
                    self.counters().sessions_rejected.bump(1);
                    return None;
                }
            }
            self.counters().sessions.bump(1);
            self.backend_stats(i).conns_opened.bump(1);
            return Some(opened);
        }
        self.counters().no_backend.bump(1);
        None
    }

    /// Ends session `id` of `peer` after its backend socket failed with `e` (the backend
    /// refused, most likely: nothing listens on its port).
    fn fail(&self, peer: SocketAddr, id: u64, backend: usize, e: &io::Error) {
        tracing::debug!(
            %peer, backend = self.group.backends[backend].name(), error = %e,
            "udp: session ended by a backend error"
        );
        self.backend_stats(backend).errors.bump(1);
        let gone = self.table.borrow_mut().remove_if(peer, |s| s.id == id);
        // Dropped outside the table's borrow, and before it is counted as closed.
        let ended = gone.is_some();
        drop(gone);
        if ended {
            self.counters().sessions_closed.bump(1);
        }
    }

    /// Relays replies from `upstream` to `peer` through the listener's `socket` until the
    /// session is dropped or its socket fails.
    async fn relay(
        self: Rc<Self>,
        socket: Rc<UdpSocket>,
        upstream: Rc<UdpSocket>,
        peer: SocketAddr,
        id: u64,
        backend: usize,
    ) {
        let to = SockAddr::from(peer);
        // ERROR readiness too: an ICMP error alone does not make the socket readable.
        let interest = Interest::READABLE | Interest::ERROR;
        loop {
            let received = upstream
                .async_io(interest, || {
                    let mut buf = self.reply_buf.borrow_mut();
                    let n = (&*SockRef::from(&*upstream)).read(&mut buf)?;
                    if n > self.max_datagram {
                        return Ok(None);
                    }
                    Ok(Some(SockRef::from(&*socket).send_to(&buf[..n], &to)))
                })
                .await;
            match received {
                Ok(None) => self.counters().datagrams_dropped.bump(1),
                Ok(Some(Ok(n))) => {
                    let stats = self.backend_stats(backend);
                    stats.udp_datagrams_in.bump(1);
                    stats.udp_bytes_in.bump(n as u64);
                    let _ = self.table.borrow_mut().touch(peer, Instant::now());
                }
                // The client's side: its datagram is lost, the session goes on.
                Ok(Some(Err(_))) => self.counters().datagrams_dropped.bump(1),
                Err(e) => {
                    self.fail(peer, id, backend, &e);
                    return;
                }
            }
        }
    }

    /// Ends the sessions that have been idle for `idle_timeout`.
    fn expire(&self, now: Instant) {
        let gone = self.table.borrow_mut().expire(now);
        let n = gone.len() as u64;
        drop(gone);
        if n > 0 {
            // Closed first: whoever sees it expired sees it closed.
            self.counters().sessions_closed.bump(n);
            self.counters().sessions_expired.bump(n);
        }
    }

    /// Ends every session (shutdown).
    fn close_all(&self) {
        let gone = self.table.borrow_mut().drain();
        let n = gone.len() as u64;
        drop(gone);
        self.counters().sessions_closed.bump(n);
    }
}

/// What [`Listener::open`] returns about a new session.
struct Opened {
    id: u64,
    backend: usize,
    upstream: Rc<UdpSocket>,
}

/// A socket on an ephemeral port connected to `backend`.
fn connect(backend: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match backend {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(backend)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Datagrams received in a row, once the socket is readable, before the receive loop looks at
/// its timers again.
const RECEIVE_BATCH: usize = 64;

/// Receives datagrams on `socket` for `listener` and sweeps expired sessions until shutdown or
/// until a reload closes the listener, then ends every session.
pub async fn serve(socket: UdpSocket, listener: Rc<Listener>, mut shutdown: watch::Receiver<bool>) {
    if *shutdown.borrow() {
        return;
    }
    let socket = Rc::new(socket);
    let mut closed = listener.port.closed();
    let mut buf = vec![0u8; listener.max_datagram + 1];
    let (lo, hi) = SWEEP_BOUNDS;
    let mut sweep = tokio::time::interval((listener.idle_timeout / 4).clamp(lo, hi));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            _ = closed.wait_for(|v| *v) => break,
            _ = sweep.tick() => listener.expire(Instant::now()),
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, peer)) => {
                    listener.from_client(&socket, &buf[..n], peer);
                    // What else is queued is taken without going round the select again, a
                    // bounded batch so that the sweep and shutdown still get their turn.
                    for _ in 0..RECEIVE_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, peer)) => listener.from_client(&socket, &buf[..n], peer),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => {
                    // Out of memory, or an error queued by the kernel: back off, go on.
                    tracing::debug!(error = %e, "udp: receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    listener.close_all();
}
