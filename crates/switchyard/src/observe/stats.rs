//! Counters for `/stats`: written per thread on the hot path, merged on read.
//!
//! Each reactor thread owns one [`ThreadStats`] and is its only writer, so every update is an
//! uncontended relaxed atomic add (no lock, no cache line shared between reactors). The admin
//! thread sums the per-thread values when `/stats` is read.

use crate::net::proxy_protocol::gate::ProxyStats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::histogram::{Histogram, Snapshot};
use super::pairs::{Pair, PairTable, CLASSES};

/// Adds to a counter that only one thread ever writes: a plain load and store, without the
/// locked read-modify-write of `fetch_add`. Every counter of a [`ThreadStats`] (and its
/// histograms) is written only by the reactor thread that owns it, so no update is lost, and a
/// reader on another thread sees either the old or the new value, never a torn one.
pub trait Bump {
    /// Adds `n`.
    fn bump(&self, n: u64);
}

impl Bump for AtomicU64 {
    #[inline]
    fn bump(&self, n: u64) {
        self.store(self.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Why a request or connection failed; each kind is counted in `/stats` under its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No `[route]` matched the request's host and path (404).
    NoRoute,
    /// The route's backends were all down or excluded (503).
    NoHealthyBackend,
    /// Connecting to a backend failed: refused, unreachable, reset (502).
    ConnectFailed,
    /// Connecting to a backend took longer than `upstream_connect_timeout` (502 after retry).
    ConnectTimeout,
    /// The backend sent no response headers within `upstream_response_timeout` (504).
    UpstreamTimeout,
    /// The backend closed or reset the connection, or sent an invalid response (502).
    UpstreamError,
    /// The client's request was rejected before routing: ambiguous framing, invalid headers (400).
    BadRequest,
    /// The client's request head exceeded `max_header_bytes` or `max_headers` (431).
    HeaderTooLarge,
    /// The client did not send a whole request head within `client_header_timeout`.
    ClientHeaderTimeout,
    /// The client's connection failed mid-exchange (reset, closed early, invalid bytes).
    ClientError,
    /// The request names a model that no backend of its route serves (404).
    UnknownModel,
    /// A connection's first bytes were no protocol served on its listener (closed).
    UnknownProtocol,
    /// A WebSocket upgrade found its route at `max_websockets` (503).
    WebSocketLimit,
    /// A `[limit NAME]` refused the request (429).
    RateLimited,
    /// An `[acl NAME]` denied the request (403) or the L4 connection (closed).
    AclDenied,
    /// A `[budget NAME]` had too few tokens left for the request (429).
    BudgetExceeded,
    /// A route's rewrite rules made a request target that is not a path (500).
    RewriteFailed,
    /// A plugin's callback failed or panicked (500).
    PluginFailed,
}

impl ErrorKind {
    /// Every kind, in the order of [`ErrorKind::index`].
    pub const ALL: [ErrorKind; 18] = [
        ErrorKind::NoRoute,
        ErrorKind::NoHealthyBackend,
        ErrorKind::ConnectFailed,
        ErrorKind::ConnectTimeout,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamError,
        ErrorKind::BadRequest,
        ErrorKind::HeaderTooLarge,
        ErrorKind::ClientHeaderTimeout,
        ErrorKind::ClientError,
        ErrorKind::UnknownModel,
        ErrorKind::UnknownProtocol,
        ErrorKind::WebSocketLimit,
        ErrorKind::RateLimited,
        ErrorKind::AclDenied,
        ErrorKind::BudgetExceeded,
        ErrorKind::RewriteFailed,
        ErrorKind::PluginFailed,
    ];

    /// The name used in `/stats`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoHealthyBackend => "no_healthy_backend",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamError => "upstream_error",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::HeaderTooLarge => "header_too_large",
            ErrorKind::ClientHeaderTimeout => "client_header_timeout",
            ErrorKind::ClientError => "client_error",
            ErrorKind::UnknownModel => "unknown_model",
            ErrorKind::UnknownProtocol => "unknown_protocol",
            ErrorKind::WebSocketLimit => "websocket_limit",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::AclDenied => "acl_denied",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::RewriteFailed => "rewrite_failed",
            ErrorKind::PluginFailed => "plugin_failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Response status classes: index 1..=5 for 1xx..5xx, 0 for anything else.
fn class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => c as usize,
        _ => 0,
    }
}

/// Counters of one route on one thread.
#[derive(Debug, Default)]
pub struct RouteStats {
    /// Requests matched to this route.
    pub requests: AtomicU64,
    /// Requests that ended in a proxy-generated error.
    pub errors: AtomicU64,
    status: [AtomicU64; 6],
    /// Whole-request duration, accept of the head to the end of the response body.
    pub latency: Histogram,
    /// Entries in this thread's prefix index for the route (`prefix_cache` only).
    pub prefix_index_entries: AtomicU64,
    /// WebSocket tunnels closed for a client frame over `websocket_max_frame` (1009).
    pub websocket_frames_too_large: AtomicU64,
    /// WebSocket tunnels closed for a client frame breaking RFC 6455 (1002).
    pub websocket_protocol_errors: AtomicU64,
}

/// Counters of one backend on one thread.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// Requests sent to this backend.
    pub requests: AtomicU64,
    /// Requests to it that failed (connect, timeout, reset).
    pub errors: AtomicU64,
    /// New upstream connections opened.
    pub conns_opened: AtomicU64,
    /// Requests that reused a pooled connection.
    pub conns_reused: AtomicU64,
    /// Time from sending the request to receiving the response headers.
    pub latency: Histogram,
    /// Bytes received from this backend by L4 (`[l4 NAME]`) tunnels.
    pub l4_bytes_in: AtomicU64,
    /// Bytes sent to this backend by L4 (`[l4 NAME]`) tunnels.
    pub l4_bytes_out: AtomicU64,
    /// Datagrams received from this backend by UDP sessions.
    pub udp_datagrams_in: AtomicU64,
    /// Datagrams sent to this backend by UDP sessions.
    pub udp_datagrams_out: AtomicU64,
    /// Payload bytes received from this backend by UDP sessions.
    pub udp_bytes_in: AtomicU64,
    /// Payload bytes sent to this backend by UDP sessions.
    pub udp_bytes_out: AtomicU64,
}

impl RouteStats {
    /// Sets every counter to zero: its slot has a new route. Only the thread owning these
    /// counters calls it (see [`Bump`]).
    pub fn reset(&self) {
        for c in [&self.requests, &self.errors, &self.prefix_index_entries]
            .into_iter()
            .chain(self.status.iter())
        {
            c.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.latency.reset();
    }
}

impl BackendStats {
    /// Sets every counter to zero: its slot has a new backend. Only the thread owning these
    /// counters calls it (see [`Bump`]).
    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.errors,
            &self.conns_opened,
            &self.conns_reused,
            &self.l4_bytes_in,
            &self.l4_bytes_out,
            &self.udp_datagrams_in,
            &self.udp_datagrams_out,
            &self.udp_bytes_in,
            &self.udp_bytes_out,
        ] {
            c.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.latency.reset();
    }
}

/// Counters of one `[l4 NAME]` listener on one thread.
#[derive(Debug, Default)]
pub struct L4Stats {
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Client connections closed (active = connections - closed).
    pub closed: AtomicU64,
    /// Backend connection attempts that failed or timed out.
    pub connect_failures: AtomicU64,
    /// Client connections closed because no backend could be connected to.
    pub no_backend: AtomicU64,
    /// Tunnels closed by `idle_timeout`.
    pub idle_timeouts: AtomicU64,
    /// UDP sessions opened.
    pub sessions: AtomicU64,
    /// UDP sessions ended, for any reason (open = sessions - sessions_closed).
    pub sessions_closed: AtomicU64,
    /// UDP sessions ended by `idle_timeout`.
    pub sessions_expired: AtomicU64,
    /// Datagrams from new UDP clients dropped because `max_sessions` were open.
    pub sessions_rejected: AtomicU64,
    /// Datagrams dropped: too long, a socket buffer full, or a send that failed.
    pub datagrams_dropped: AtomicU64,
    /// PROXY protocol headers (`proxy_protocol`, TCP).
    pub proxy: ProxyStats,
}

/// Merged counters of one `[l4 NAME]` listener.
#[derive(Debug, Default, Clone)]
pub struct L4Totals {
    /// Client connections accepted.
    pub connections: u64,
    /// Client connections closed.
    pub closed: u64,
    /// Backend connection attempts that failed or timed out.
    pub connect_failures: u64,
    /// Client connections closed because no backend could be connected to.
    pub no_backend: u64,
    /// Tunnels closed by `idle_timeout`.
    pub idle_timeouts: u64,
    /// UDP sessions opened.
    pub sessions: u64,
    /// UDP sessions ended.
    pub sessions_closed: u64,
    /// UDP sessions ended by `idle_timeout`.
    pub sessions_expired: u64,
    /// Datagrams from new UDP clients dropped because `max_sessions` were open.
    pub sessions_rejected: u64,
    /// Datagrams dropped: too long, a socket buffer full, or a send that failed.
    pub datagrams_dropped: u64,
}

impl L4Totals {
    /// The sum of one listener's per-thread counters.
    pub fn of(threads: &[L4Stats]) -> Self {
        let mut t = L4Totals::default();
        for l in threads {
            t.connections += l.connections.load(Relaxed);
            t.closed += l.closed.load(Relaxed);
            t.connect_failures += l.connect_failures.load(Relaxed);
            t.no_backend += l.no_backend.load(Relaxed);
            t.idle_timeouts += l.idle_timeouts.load(Relaxed);
            t.sessions += l.sessions.load(Relaxed);
            t.sessions_closed += l.sessions_closed.load(Relaxed);
            t.sessions_expired += l.sessions_expired.load(Relaxed);
            t.sessions_rejected += l.sessions_rejected.load(Relaxed);
            t.datagrams_dropped += l.datagrams_dropped.load(Relaxed);
        }
        t
    }
}

/// Everything one reactor thread counts.
#[derive(Debug)]
pub struct ThreadStats {
    /// Client connections accepted.
    pub conns_accepted: AtomicU64,
    /// Client connections closed (active = accepted - closed).
    pub conns_closed: AtomicU64,
    /// Requests received.
    pub requests: AtomicU64,
    /// Bytes read from clients (heads and bodies).
    pub bytes_in: AtomicU64,
    /// Bytes written to clients (heads and bodies).
    pub bytes_out: AtomicU64,
    /// Requests tried again on another backend.
    pub retries: AtomicU64,
    status: [AtomicU64; 6],
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Per route, in configuration order.
    pub routes: Box<[RouteStats]>,
    /// Per backend, in configuration order.
    pub backends: Box<[BackendStats]>,
    /// PROXY protocol headers on `[server] listen` (`proxy_protocol`).
    pub proxy: ProxyStats,
    /// Responses by route, backend and status class.
    pub pairs: PairTable,
}

impl ThreadStats {
    /// Counters for a configuration with `routes` routes and `backends` backends.
    pub fn new(routes: usize, backends: usize) -> Self {
        ThreadStats {
            conns_accepted: AtomicU64::new(0),
            conns_closed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            status: Default::default(),
            errors: Default::default(),
            routes: (0..routes).map(|_| RouteStats::default()).collect(),
            backends: (0..backends).map(|_| BackendStats::default()).collect(),
            proxy: ProxyStats::default(),
            pairs: PairTable::default(),
        }
    }

    /// Counts a response status sent to a client, overall, for `route` (its counter slot),
    /// and for the pair of `route` and `backend` (the backend's slot; `None` when the proxy
    /// answered without one).
    pub fn response(&self, route: Option<usize>, backend: Option<usize>, status: u16) {
        let class = class(status);
        self.status[class].bump(1);
        if let Some(r) = route.and_then(|r| self.routes.get(r)) {
            r.status[class].bump(1);
        }
        self.pairs.count(route, backend, class);
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].bump(1);
    }
}

/// Plain sums over all threads, as shown by `/stats`.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Connections accepted.
    pub conns_accepted: u64,
    /// Connections closed.
    pub conns_closed: u64,
    /// Requests.
    pub requests: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// Retries on another backend.
    pub retries: u64,
    /// Responses by class, index 1..=5 = 1xx..5xx.
    pub status: [u64; 6],
    /// Errors by [`ErrorKind`] order.
    pub errors: [u64; ErrorKind::ALL.len()],
}

/// Merged counters of one route or backend.
#[derive(Debug, Default, Clone)]
pub struct ItemTotals {
    /// Requests.
    pub requests: u64,
    /// Errors.
    pub errors: u64,
    /// Responses by class (routes only).
    pub status: [u64; 6],
    /// New upstream connections (backends only).
    pub conns_opened: u64,
    /// Pooled connection reuses (backends only).
    pub conns_reused: u64,
    /// Merged latency histogram.
    pub latency: Snapshot,
    /// Prefix-index entries over all threads (routes only).
    pub prefix_index_entries: u64,
    /// WebSocket tunnels closed for a frame over the limit (routes only).
    pub websocket_frames_too_large: u64,
    /// WebSocket tunnels closed for a protocol error (routes only).
    pub websocket_protocol_errors: u64,
    /// Bytes received from the backend by L4 tunnels (backends only).
    pub l4_bytes_in: u64,
    /// Bytes sent to the backend by L4 tunnels (backends only).
    pub l4_bytes_out: u64,
    /// Datagrams received from the backend by UDP sessions (backends only).
    pub udp_datagrams_in: u64,
    /// Datagrams sent to the backend by UDP sessions (backends only).
    pub udp_datagrams_out: u64,
    /// Payload bytes received from the backend by UDP sessions (backends only).
    pub udp_bytes_in: u64,
    /// Payload bytes sent to the backend by UDP sessions (backends only).
    pub udp_bytes_out: u64,
}

/// The per-thread counters of a running server.
#[derive(Debug, Clone)]
pub struct Stats {
    threads: Vec<Arc<ThreadStats>>,
}

impl Stats {
    /// Counters for `threads` reactor threads.
    pub fn new(threads: usize, routes: usize, backends: usize) -> Self {
        Stats {
            threads: (0..threads)
                .map(|_| Arc::new(ThreadStats::new(routes, backends)))
                .collect(),
        }
    }

    /// Every reactor thread's counters.
    pub fn threads(&self) -> impl Iterator<Item = &ThreadStats> {
        self.threads.iter().map(|t| &**t)
    }

    /// The counters owned by reactor thread `i`.
    pub fn thread(&self, i: usize) -> Arc<ThreadStats> {
        Arc::clone(&self.threads[i])
    }

    /// Sums of the global counters.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in &self.threads {
            t.conns_accepted += s.conns_accepted.load(Relaxed);
            t.conns_closed += s.conns_closed.load(Relaxed);
            t.requests += s.requests.load(Relaxed);
            t.bytes_in += s.bytes_in.load(Relaxed);
            t.bytes_out += s.bytes_out.load(Relaxed);
            t.retries += s.retries.load(Relaxed);
            for (a, b) in t.status.iter_mut().zip(s.status.iter()) {
                *a += b.load(Relaxed);
            }
            for (a, b) in t.errors.iter_mut().zip(s.errors.iter()) {
                *a += b.load(Relaxed);
            }
        }
        t
    }

    /// Merged counters of route `i`.
    pub fn route(&self, i: usize) -> ItemTotals {
        let mut t = ItemTotals::default();
        for s in &self.threads {
            let r = &s.routes[i];
            t.requests += r.requests.load(Relaxed);
            t.errors += r.errors.load(Relaxed);
            for (a, b) in t.status.iter_mut().zip(r.status.iter()) {
                *a += b.load(Relaxed);
            }
            t.websocket_frames_too_large += r.websocket_frames_too_large.load(Relaxed);
            t.websocket_protocol_errors += r.websocket_protocol_errors.load(Relaxed);
            r.latency.merge_into(&mut t.latency);
            // The index is shared by the threads: each reports the same figure.
            t.prefix_index_entries = t
                .prefix_index_entries
                .max(r.prefix_index_entries.load(Relaxed));
        }
        t
    }

    /// Responses by (route slot, backend slot) pair and status class over all threads, and
    /// those of pairs that found no room in a thread's table (see [`super::pairs`]).
    pub fn pairs(
        &self,
    ) -> (
        std::collections::BTreeMap<Pair, [u64; CLASSES]>,
        [u64; CLASSES],
    ) {
        let mut all = std::collections::BTreeMap::new();
        let mut overflow = [0; CLASSES];
        for s in &self.threads {
            s.pairs.merge_into(&mut all, &mut overflow);
        }
        (all, overflow)
    }

    /// Merged counters of backend `i`.
    pub fn backend(&self, i: usize) -> ItemTotals {
        let mut t = ItemTotals::default();
        for s in &self.threads {
            let b = &s.backends[i];
            t.requests += b.requests.load(Relaxed);
            t.errors += b.errors.load(Relaxed);
            t.conns_opened += b.conns_opened.load(Relaxed);
            t.conns_reused += b.conns_reused.load(Relaxed);
            t.l4_bytes_in += b.l4_bytes_in.load(Relaxed);
            t.l4_bytes_out += b.l4_bytes_out.load(Relaxed);
            t.udp_datagrams_in += b.udp_datagrams_in.load(Relaxed);
            t.udp_datagrams_out += b.udp_datagrams_out.load(Relaxed);
            t.udp_bytes_in += b.udp_bytes_in.load(Relaxed);
            t.udp_bytes_out += b.udp_bytes_out.load(Relaxed);
            b.latency.merge_into(&mut t.latency);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_across_threads() {
        let stats = Stats::new(2, 1, 1);
        let a = stats.thread(0);
        let b = stats.thread(1);
        a.requests.fetch_add(2, Relaxed);
        b.requests.fetch_add(3, Relaxed);
        a.response(Some(0), Some(0), 200);
        b.response(Some(0), Some(0), 503);
        b.response(None, None, 404);
        a.error(ErrorKind::ConnectFailed);
        b.error(ErrorKind::ConnectFailed);
        a.backends[0].latency.record(100);
        b.backends[0].latency.record(100);
        let t = stats.totals();
        assert_eq!(t.requests, 5);
        assert_eq!(t.status[2], 1);
        assert_eq!(t.status[4], 1);
        assert_eq!(t.status[5], 1);
        assert_eq!(t.errors[ErrorKind::ConnectFailed as usize], 2);
        let r = stats.route(0);
        assert_eq!(r.status[5], 1);
        assert_eq!(stats.backend(0).latency.count(), 2);
        let (pairs, overflow) = stats.pairs();
        let routed = Pair {
            route: Some(0),
            backend: Some(0),
        };
        assert_eq!(pairs[&routed], [0, 0, 1, 0, 0, 1]);
        let unrouted = Pair {
            route: None,
            backend: None,
        };
        assert_eq!(pairs[&unrouted], [0, 0, 0, 0, 1, 0]);
        assert_eq!(overflow, [0; CLASSES]);
    }
}
