//! `[listener NAME]` ports at run time: what each accepts (a sans-io decision table over the
//! detected protocol), its TLS state and counters, its accept loop, and serving one
//! connection: TLS handshake then HTTP by ALPN, h2c, HTTP/1.1, a raw TCP tunnel to the
//! fallback group, or a clean close.
//!
//! Detection only peeks ([`detect`](super::detect)), so whatever serves the connection next
//! (rustls, hyper or the tunnel) reads the first bytes itself: none are lost or replayed by
//! hand.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchyard_config::{Config, ListenerConfig, Protocols};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::certs::{self, CertError, ReloadStats};
use super::conn::Http;
use super::detect::{self, Protocol, Undetected};
use super::ports::L4Port;
use super::proxy_protocol::gate::{Gate, ProxyStats};
use super::tls::{self, HandshakeError, Resolver};
use crate::l4::tcp::Listener as Tunnels;
use crate::l7::proxy::Worker;
use crate::observe::stats::Bump;

/// What to do with a connection, given what its first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Serve HTTP/1.1 (WebSocket and `Upgrade: h2c` included).
    Http1,
    /// Serve HTTP/2 with prior knowledge.
    H2c,
    /// Run a TLS handshake, then HTTP by ALPN.
    Tls,
    /// Tunnel the bytes to the fallback group.
    Tunnel,
    /// Close it.
    Close,
}

/// The decision table: a protocol the listener accepts is served; anything else (a protocol
/// it does not accept, or none) goes to the fallback if there is one, else is closed.
pub fn decide(protocols: &Protocols, has_fallback: bool, detected: Protocol) -> Action {
    match detected {
        Protocol::Http1 if protocols.http1 => Action::Http1,
        Protocol::H2 if protocols.h2c => Action::H2c,
        Protocol::Tls if protocols.tls => Action::Tls,
        _ if has_fallback => Action::Tunnel,
        _ => Action::Close,
    }
}

/// One listener's counters on one reactor thread (one writer each).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed.
    pub closed: AtomicU64,
    /// Connections served as plain HTTP/1.1.
    pub http1: AtomicU64,
    /// Connections served as h2c.
    pub h2c: AtomicU64,
    /// TLS handshakes completed.
    pub handshakes_ok: AtomicU64,
    /// TLS handshakes that failed (bad or refused ClientHello, client gone).
    pub handshakes_failed: AtomicU64,
    /// TLS handshakes cut off by `tls_handshake_timeout`.
    pub handshake_timeouts: AtomicU64,
    /// TLS connections whose client picked `h2` by ALPN.
    pub alpn_h2: AtomicU64,
    /// Connections tunnelled to the fallback group.
    pub tunneled: AtomicU64,
    /// Connections closed because they spoke no accepted protocol (and no fallback took them).
    pub refused: AtomicU64,
    /// Connections closed because their first bytes did not decide within `sniff_timeout`.
    pub sniff_timeouts: AtomicU64,
    /// PROXY protocol headers (`proxy_protocol`).
    pub proxy: ProxyStats,
}

/// Picks one counter of a [`ListenerStats`].
type Counter = fn(&ListenerStats) -> &AtomicU64;

/// Every counter with its name in `/stats`.
const COUNTERS: &[(&str, Counter)] = &[
    ("connections", |s| &s.connections),
    ("closed", |s| &s.closed),
    ("http1", |s| &s.http1),
    ("h2c", |s| &s.h2c),
    ("handshakes_ok", |s| &s.handshakes_ok),
    ("handshakes_failed", |s| &s.handshakes_failed),
    ("handshake_timeouts", |s| &s.handshake_timeouts),
    ("alpn_h2", |s| &s.alpn_h2),
    ("tunneled", |s| &s.tunneled),
    ("refused", |s| &s.refused),
    ("sniff_timeouts", |s| &s.sniff_timeouts),
];

/// A TLS listener's handshake side.
pub struct TlsState {
    /// Runs handshakes with the listener's configuration.
    pub acceptor: TlsAcceptor,
    /// The certificates in force.
    pub resolver: Arc<Resolver>,
    /// `tls_handshake_timeout`.
    pub handshake_timeout: Duration,
    /// How reloads went.
    pub reloads: Arc<ReloadStats>,
}

/// One `[listener NAME]` as every thread shares it.
pub struct ListenerState {
    /// Its section.
    pub config: ListenerConfig,
    /// The bound addresses (with the real port when the config said 0).
    pub addrs: Vec<SocketAddr>,
    /// The `[l4 NAME]` of its `fallback = tcp:GROUP`.
    pub fallback: Option<Arc<L4Port>>,
    /// The sniff timeout in effect.
    pub sniff_timeout: Duration,
    /// Its TLS side, if it accepts TLS.
    pub tls: Option<TlsState>,
    /// `acme_challenge_dir`.
    pub acme_dir: Option<Arc<Path>>,
    /// The PROXY protocol timeout in effect.
    pub proxy_protocol_timeout: Duration,
    /// Per reactor thread; carried over by name when the section changes.
    pub stats: Arc<[ListenerStats]>,
    /// Turns true when it stops accepting (replaced or removed by a reload).
    pub(super) closed: watch::Sender<bool>,
}

impl std::fmt::Debug for ListenerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerState")
            .field("name", &self.config.name)
            .field("addrs", &self.addrs)
            .field("protocols", &self.config.protocols)
            .finish()
    }
}

impl ListenerState {
    /// The sum of counter `f` over threads.
    pub fn total(&self, f: Counter) -> u64 {
        self.stats.iter().map(|s| f(s).load(Relaxed)).sum()
    }
}

/// Builds `[listener NAME]` `l`'s state (of `config`), loading its certificates (a missing or
/// broken file is an error naming the listener, key and path), with `fallback` its fallback
/// group's port and `stats` the counters of the listener it replaces, if any. No address yet.
pub fn build_one(
    config: &Config,
    l: &ListenerConfig,
    fallback: Option<Arc<L4Port>>,
    stats: Option<Arc<[ListenerStats]>>,
    threads: usize,
) -> Result<ListenerState, CertError> {
    let provider = tls::provider();
    let tls = if l.protocols.tls {
        let resolver = Arc::new(Resolver::new(certs::load_set(l, &provider)?));
        let server = tls::server_config(Arc::clone(&resolver)).map_err(|e| CertError {
            listener: l.name.clone(),
            key: "protocols".to_string(),
            path: Default::default(),
            reason: format!("cannot set up TLS: {e}"),
        })?;
        Some(TlsState {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            handshake_timeout: l.tls_handshake_timeout,
            reloads: Arc::default(),
        })
    } else {
        None
    };
    Ok(ListenerState {
        config: l.clone(),
        addrs: Vec::new(),
        fallback,
        sniff_timeout: l.effective_sniff_timeout(&config.server),
        tls,
        acme_dir: l.acme_challenge_dir.as_deref().map(Arc::from),
        proxy_protocol_timeout: l.effective_proxy_protocol_timeout(&config.server),
        stats: stats.unwrap_or_else(|| (0..threads).map(|_| ListenerStats::default()).collect()),
        closed: super::ports::open_flag(),
    })
}

/// The listeners' part of `/stats`.
pub fn report(states: &[Arc<ListenerState>]) -> Value {
    let out: Vec<Value> = states
        .iter()
        .map(|s| {
            let l = &s.config;
            let mut v = json!({
                "name": l.name,
                "listen": s.addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "protocols": l.protocols.to_string(),
                "fallback": l.fallback.as_ref().map(ToString::to_string),
            });
            for (name, f) in COUNTERS {
                v[*name] = json!(s.total(*f));
            }
            v["active"] = json!(s
                .total(|s| &s.connections)
                .saturating_sub(s.total(|s| &s.closed)));
            if l.proxy_protocol.is_on() {
                v["proxy_protocol"] =
                    ProxyStats::report(l.proxy_protocol, s.stats.iter().map(|t| &t.proxy));
            }
            if let Some(t) = &s.tls {
                v["certificate_reloads"] = json!(t.reloads.reloads.load(Relaxed));
                v["certificate_reload_errors"] = json!(t.reloads.errors.load(Relaxed));
            }
            v
        })
        .collect();
    Value::Array(out)
}

/// Accepts connections on one listener socket of one reactor thread until shutdown.
pub async fn accept_loop(
    socket: TcpListener,
    worker: Rc<Worker>,
    state: Arc<ListenerState>,
    thread: usize,
    tunnels: Option<Rc<Tunnels>>,
    active: Rc<Cell<usize>>,
    shutdown: watch::Receiver<bool>,
) {
    let shared = Arc::clone(&worker.shared);
    let spawn = |stream, peer, permit| {
        worker.stats.conns_accepted.bump(1);
        active.set(active.get() + 1);
        let (worker, state, tunnels, active, rx) = (
            Rc::clone(&worker),
            Arc::clone(&state),
            tunnels.clone(),
            Rc::clone(&active),
            shutdown.clone(),
        );
        tokio::task::spawn_local(async move {
            let _permit = permit;
            let stats = &state.stats[thread];
            stats.connections.bump(1);
            serve(&worker, &state, stats, tunnels.as_deref(), stream, peer, rx).await;
            stats.closed.bump(1);
            worker.stats.conns_closed.bump(1);
            active.set(active.get() - 1);
        });
    };
    let mut rx = shutdown.clone();
    let closed = state.closed.subscribe();
    super::accept::accept_until_shutdown(
        &socket,
        &shared,
        &mut rx,
        Some(closed),
        "listener",
        spawn,
    )
    .await;
}

/// Serves one connection of a listener to its end.
async fn serve(
    worker: &Rc<Worker>,
    state: &ListenerState,
    stats: &ListenerStats,
    tunnels: Option<&Tunnels>,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    let peer = if state.config.proxy_protocol.is_on() {
        // `trusted_proxies` as reloaded.
        let routing = worker.shared.routing();
        let gate = Gate {
            mode: state.config.proxy_protocol,
            timeout: state.proxy_protocol_timeout,
            trusted: &routing.config.server.trusted_proxies,
        };
        match Box::pin(gate.admit(&mut stream, peer, &stats.proxy)).await {
            Ok(client) => client,
            Err(_) => return, // closed, counted
        }
    } else {
        peer
    };
    // The client's address: the socket peer's, or the one its trusted proxy announced.
    // ACLs name listeners; one a reload removed, still taking its queued connections, has
    // none.
    let routing = worker.shared.routing();
    if !routing.acls.allow_listener(&state.config.name, peer.ip()) {
        // Closed before a byte is read.
        worker.stats.error(crate::observe::ErrorKind::AclDenied);
        return;
    }
    let detected = match detect::detect(&stream, state.sniff_timeout).await {
        Ok(p) => p,
        Err(Undetected::Timeout) => {
            stats.sniff_timeouts.bump(1);
            return;
        }
        Err(Undetected::Closed) => return,
    };
    let worker = Rc::clone(worker);
    match decide(&state.config.protocols, tunnels.is_some(), detected) {
        Action::Http1 => {
            stats.http1.bump(1);
            let how = Http {
                acme_dir: state.acme_dir.clone(),
                h2c_upgrade: state.config.protocols.h2c,
                ..Http::default()
            };
            super::conn::serve_http(worker, stream, peer, how, shutdown).await;
        }
        Action::H2c => {
            stats.h2c.bump(1);
            let how = Http {
                http2: true,
                ..Http::default()
            };
            super::conn::serve_http(worker, stream, peer, how, shutdown).await;
        }
        Action::Tls => {
            let Some(t) = &state.tls else {
                stats.refused.bump(1);
                return;
            };
            match tls::accept(&t.acceptor, stream, t.handshake_timeout).await {
                Ok(tls_stream) => {
                    stats.handshakes_ok.bump(1);
                    let h2 = tls::negotiated_h2(&tls_stream);
                    if h2 {
                        stats.alpn_h2.bump(1);
                    }
                    let how = Http {
                        http2: h2,
                        tls: true,
                        acme_dir: None,
                        h2c_upgrade: false,
                    };
                    super::conn::serve_http(worker, tls_stream, peer, how, shutdown).await;
                }
                Err(HandshakeError::Timeout) => stats.handshake_timeouts.bump(1),
                Err(HandshakeError::Failed(e)) => {
                    stats.handshakes_failed.bump(1);
                    tracing::debug!(%peer, error = %e, "tls: handshake failed");
                }
            }
        }
        Action::Tunnel => match tunnels {
            Some(t) => {
                stats.tunneled.bump(1);
                t.serve_fallback(stream, peer).await;
            }
            None => stats.refused.bump(1),
        },
        Action::Close => stats.refused.bump(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_protocols_are_served_and_the_rest_falls_back_or_closes() {
        let all = Protocols {
            http1: true,
            h2c: true,
            tls: true,
        };
        assert_eq!(decide(&all, false, Protocol::Http1), Action::Http1);
        assert_eq!(decide(&all, false, Protocol::H2), Action::H2c);
        assert_eq!(decide(&all, false, Protocol::Tls), Action::Tls);
        assert_eq!(decide(&all, false, Protocol::Unknown), Action::Close);
        assert_eq!(decide(&all, true, Protocol::Unknown), Action::Tunnel);
        let tls_only = Protocols {
            http1: false,
            h2c: false,
            tls: true,
        };
        assert_eq!(decide(&tls_only, false, Protocol::Http1), Action::Close);
        assert_eq!(decide(&tls_only, false, Protocol::H2), Action::Close);
        assert_eq!(decide(&tls_only, true, Protocol::Http1), Action::Tunnel);
        let plain = Protocols::default();
        assert_eq!(decide(&plain, false, Protocol::Tls), Action::Close);
        assert_eq!(decide(&plain, true, Protocol::Tls), Action::Tunnel);
    }
}
