//! The `[listener NAME]` and `[l4 NAME]` ports in force, and how a reload replaces them.
//!
//! [`Ports`] is one generation: every extra L7 listener ([`ListenerState`]) and every L4
//! listener ([`L4Port`]), each shared by `Arc` with the accept loops and connections that use
//! it. A reload goes in two steps:
//!
//! 1. [`PortTable::prepare`]: for each added or changed section, load its certificates and
//!    bind its sockets (one SO_REUSEPORT socket per reactor thread and address). Any failure
//!    rejects the whole reload, naming the section and address; nothing has changed, and
//!    dropping the [`Plan`] closes what it bound. The TCP sockets do not listen yet, so a
//!    plan that is dropped (a dry run, a reload refused later) has taken no connection even
//!    where it shares an address with sockets in force.
//! 2. [`Plan::listen`], once the reload is certain: the kernel queues connections on the new
//!    sockets from then on.
//! 3. [`PortTable::commit`]: hand the new sockets to the reactor threads, publish the
//!    generation, then close the replaced and removed ports: each accept loop takes the
//!    connections already queued on its sockets (closing a listening socket would reset
//!    them), then drops the sockets. Connections already accepted run to their end (or to the
//!    shutdown's drain) on the state they started with.
//!
//! A section that is unchanged keeps its `Arc`, sockets and accept loops untouched. An
//! `[l4 NAME]` counts as changed when one of its backends' `[backend NAME]` sections changed
//! (its group holds the backends it resolved), and a `[listener NAME]` when the
//! `[l4 NAME]` its `fallback` names was replaced. A changed section whose address stays the
//! same is bound again beside the old sockets (every switchyard socket has SO_REUSEPORT): for
//! the moment both sets are open the kernel spreads new connections over both, and those the
//! old set takes are served with the old settings. Counters carry over by name.
//!
//! UDP has no connections to keep: closing a replaced UDP listener's socket ends its sessions;
//! a client's next datagram opens a session on the new one. A UDP socket has no "bound but
//! not listening" state: once bound with SO_REUSEPORT beside the sockets in force it takes
//! its share of their datagrams, which a plan that is then dropped would lose. So a changed
//! `[l4 NAME]` UDP port on the address of a UDP port in force is bound only in step 2 (a bind
//! failure there still refuses the reload, before anything changed); a dry run does not bind
//! it at all (the address is held by this process with SO_REUSEPORT, so the bind would only
//! fail for a reason the running port would also have).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use switchyard_config::{Config, Fallback, L4Config, L4Protocol};
use tokio::sync::{mpsc, watch};

use super::certs::{CertError, Watched};
use super::listener;
use super::listeners::{self, ListenerState};
use crate::l4::sessions::SessionSlots;
use crate::observe::stats::{L4Stats, L4Totals};

/// One `[l4 NAME]` listener as every thread shares it.
#[derive(Debug)]
pub struct L4Port {
    /// Its section.
    pub config: L4Config,
    /// The bound address (with the real port when the config said 0).
    pub addr: SocketAddr,
    /// `connect_timeout` in effect.
    pub connect_timeout: Duration,
    /// The PROXY protocol timeout in effect.
    pub proxy_protocol_timeout: Duration,
    /// Its UDP sessions open over every thread (unused for TCP).
    pub sessions: Arc<SessionSlots>,
    /// Per reactor thread (one writer each); carried over by name when the section changes.
    pub stats: Arc<[L4Stats]>,
    closed: watch::Sender<bool>,
}

impl L4Port {
    /// The counters summed over threads.
    pub fn totals(&self) -> L4Totals {
        L4Totals::of(&self.stats)
    }

    /// Turns true when the port stops accepting (replaced or removed by a reload).
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }
}

/// A `closed` flag for a new port.
pub fn open_flag() -> watch::Sender<bool> {
    watch::channel(false).0
}

/// The ports of one generation.
#[derive(Debug, Default)]
pub struct Ports {
    /// The `[listener NAME]` sections, in config order.
    pub listeners: Vec<Arc<ListenerState>>,
    /// The `[l4 NAME]` sections, in config order.
    pub l4: Vec<Arc<L4Port>>,
}

impl Ports {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&Arc<ListenerState>> {
        self.listeners.iter().find(|l| l.config.name == name)
    }

    /// The L4 listener named `name`.
    pub fn l4(&self, name: &str) -> Option<&Arc<L4Port>> {
        self.l4.iter().find(|l| l.config.name == name)
    }
}

/// A bound socket for one reactor thread, with the port it serves.
#[derive(Debug)]
pub enum Socket {
    /// A `[listener NAME]` socket.
    Listener(Arc<ListenerState>, std::net::TcpListener),
    /// A `protocol = tcp` `[l4 NAME]` socket.
    Tcp(Arc<L4Port>, std::net::TcpListener),
    /// A `protocol = udp` `[l4 NAME]` socket.
    Udp(Arc<L4Port>, std::net::UdpSocket),
}

/// Why ports cannot be set up.
#[derive(Debug)]
pub enum PortError {
    /// A socket could not be bound.
    Bind {
        /// The section, `[listener NAME]` or `[l4 NAME]`.
        section: String,
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The address is `[server] listen`'s, which keeps its running value until a restart.
    Taken {
        /// The section.
        section: String,
        /// The address.
        addr: SocketAddr,
    },
    /// A certificate or key cannot be used.
    Tls(CertError),
}

impl std::fmt::Display for PortError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortError::Bind {
                section,
                addr,
                source,
            } => write!(f, "{section} listen: cannot bind {addr}: {source}"),
            PortError::Taken { section, addr } => write!(
                f,
                "{section} listen: {addr} is [server] listen's address in force \
                 (a change to [server] listen needs a restart)"
            ),
            PortError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PortError {}

impl PortError {
    /// The section it is about (`listener NAME`, as written between the brackets).
    pub fn section(&self) -> String {
        match self {
            PortError::Bind { section, .. } | PortError::Taken { section, .. } => {
                section.trim_matches(['[', ']']).to_string()
            }
            PortError::Tls(e) => format!("listener {}", e.listener),
        }
    }
}

/// The ports in force and the reactor threads that run them (a field of `Shared`).
#[derive(Debug)]
pub struct PortTable {
    current: RwLock<Arc<Ports>>,
    reactors: Vec<mpsc::UnboundedSender<Socket>>,
    /// What the certificate reload thread watches: the TLS listeners in force.
    pub watched: Arc<Mutex<Vec<Watched>>>,
}

/// What [`PortTable::prepare`] built: the next generation, the sockets for each reactor
/// thread, and the ports it replaces.
#[derive(Debug)]
pub struct Plan {
    next: Ports,
    sockets: Vec<Vec<(For, socket2::Socket)>>,
    /// UDP ports to bind in [`Plan::listen`] (see the module documentation).
    deferred_udp: Vec<Arc<L4Port>>,
    retired: Ports,
}

/// A [`Plan`] whose sockets are all bound and listening: what [`PortTable::commit`] takes.
#[derive(Debug)]
pub struct Listening(Plan);

/// What a socket of a [`Plan`] is for.
#[derive(Debug)]
enum For {
    Listener(Arc<ListenerState>),
    Tcp(Arc<L4Port>),
    Udp(Arc<L4Port>),
}

impl For {
    fn section(&self) -> String {
        match self {
            For::Listener(l) => format!("[listener {}]", l.config.name),
            For::Tcp(p) | For::Udp(p) => format!("[l4 {}]", p.config.name),
        }
    }

    /// The reactor's message for `socket`.
    fn socket(self, socket: socket2::Socket) -> Socket {
        match self {
            For::Listener(l) => Socket::Listener(l, socket.into()),
            For::Tcp(p) => Socket::Tcp(p, socket.into()),
            For::Udp(p) => Socket::Udp(p, socket.into()),
        }
    }
}

impl Plan {
    /// Binds the deferred UDP ports and starts listening on the plan's TCP sockets (see the
    /// module documentation).
    pub fn listen(mut self) -> Result<Listening, PortError> {
        let threads = self.sockets.len();
        for port in std::mem::take(&mut self.deferred_udp) {
            let bound = listener::bind_udp_reuseport(port.addr, threads).map_err(|source| {
                PortError::Bind {
                    section: format!("[l4 {}]", port.config.name),
                    addr: port.addr,
                    source,
                }
            })?;
            for (thread, s) in bound.into_iter().enumerate() {
                self.sockets[thread].push((For::Udp(Arc::clone(&port)), s.into()));
            }
        }
        for (what, s) in self.sockets.iter().flatten() {
            if matches!(what, For::Udp(_)) {
                continue;
            }
            listener::listen(s).map_err(|source| PortError::Bind {
                section: what.section(),
                addr: s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
                source,
            })?;
        }
        Ok(Listening(self))
    }
}

impl PortTable {
    /// No ports yet; `reactors` take the sockets of each thread.
    pub fn new(reactors: Vec<mpsc::UnboundedSender<Socket>>) -> Self {
        PortTable {
            current: RwLock::default(),
            reactors,
            watched: Arc::default(),
        }
    }

    /// The ports in force.
    pub fn current(&self) -> Arc<Ports> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Builds and binds the ports `config` has that differ from those in force (`running` is
    /// the config in force, for its backends), refusing any address in `taken` (the bound
    /// `[server] listen` addresses). See the module documentation.
    pub fn prepare(
        &self,
        running: &Config,
        config: &Config,
        taken: &[SocketAddr],
    ) -> Result<Plan, PortError> {
        let threads = self.reactors.len();
        let current = self.current();
        let mut sockets: Vec<Vec<(For, socket2::Socket)>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut next = Ports::default();
        let mut deferred_udp = Vec::new();
        for l in &config.l4 {
            let old = current.l4(&l.name);
            let backends_same = l.backends.iter().all(|b| {
                running.backends.iter().find(|x| &x.name == b)
                    == config.backends.iter().find(|x| &x.name == b)
            });
            if let Some(old) = old.filter(|o| o.config == *l && backends_same) {
                next.l4.push(Arc::clone(old));
                continue;
            }
            let defer = l.protocol == L4Protocol::Udp
                && current
                    .l4
                    .iter()
                    .any(|p| p.config.protocol == L4Protocol::Udp && p.addr == l.listen);
            let (port, bound) = bind_l4(l, config, old, threads, taken, defer)?;
            if defer {
                deferred_udp.push(Arc::clone(&port));
            }
            for (thread, s) in bound.into_iter().enumerate() {
                sockets[thread].push(match s {
                    L4Bound::Tcp(s) => (For::Tcp(Arc::clone(&port)), s),
                    L4Bound::Udp(s) => (For::Udp(Arc::clone(&port)), s.into()),
                });
            }
            next.l4.push(port);
        }
        for l in &config.listeners {
            let fallback = l
                .fallback
                .as_ref()
                .and_then(|Fallback::Tcp(group)| next.l4(group).cloned());
            let old = current.listener(&l.name);
            let same_fallback = |o: &ListenerState| match (&o.fallback, &fallback) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            if let Some(old) = old.filter(|o| o.config == *l && same_fallback(o)) {
                next.listeners.push(Arc::clone(old));
                continue;
            }
            let stats = old.map(|o| Arc::clone(&o.stats));
            let mut state = listeners::build_one(config, l, fallback, stats, threads)
                .map_err(PortError::Tls)?;
            let mut bound = Vec::new();
            for addr in &l.listen {
                let section = format!("[listener {}]", l.name);
                check_taken(&section, *addr, taken)?;
                let s = listener::bind_reuseport_unlistened(*addr, threads).map_err(|source| {
                    PortError::Bind {
                        section,
                        addr: *addr,
                        source,
                    }
                })?;
                state.addrs.push(local(&s[0], *addr));
                bound.push(s);
            }
            let state = Arc::new(state);
            for per_addr in bound {
                for (thread, s) in per_addr.into_iter().enumerate() {
                    sockets[thread].push((For::Listener(Arc::clone(&state)), s));
                }
            }
            next.listeners.push(state);
        }
        let kept =
            |a: &[Arc<ListenerState>], x: &Arc<ListenerState>| a.iter().any(|y| Arc::ptr_eq(x, y));
        let retired = Ports {
            listeners: (current.listeners.iter())
                .filter(|x| !kept(&next.listeners, x))
                .cloned()
                .collect(),
            l4: (current.l4.iter())
                .filter(|x| !next.l4.iter().any(|y| Arc::ptr_eq(x, y)))
                .cloned()
                .collect(),
        };
        Ok(Plan {
            next,
            sockets,
            deferred_udp,
            retired,
        })
    }

    /// Puts `plan` in force: new sockets to the reactor threads, then the old ports closed.
    /// Returns the names of the ports closed.
    pub fn commit(&self, plan: Listening) -> Vec<String> {
        let Plan {
            next,
            sockets,
            retired,
            ..
        } = plan.0;
        for (tx, sockets) in self.reactors.iter().zip(sockets) {
            for (what, s) in sockets {
                // A reactor that is gone is shutting down: the socket closes with the message.
                let _ = tx.send(what.socket(s));
            }
        }
        {
            // Watchers of listeners kept keep their file stamps.
            let mut old = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            let mut out = Vec::new();
            for s in &next.listeners {
                let Some(tls) = &s.tls else { continue };
                match old
                    .iter()
                    .position(|w| Arc::ptr_eq(w.resolver(), &tls.resolver))
                {
                    Some(i) => out.push(old.swap_remove(i)),
                    None => out.push(Watched::new(
                        s.config.clone(),
                        Arc::clone(&tls.resolver),
                        Arc::clone(&tls.reloads),
                    )),
                }
            }
            *old = out;
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        let mut closed = Vec::new();
        for l in &retired.listeners {
            l.closed.send_replace(true);
            closed.push(format!("[listener {}]", l.config.name));
        }
        for l in &retired.l4 {
            l.closed.send_replace(true);
            closed.push(format!("[l4 {}]", l.config.name));
        }
        closed
    }
}

/// The bound address of `s` (`configured` if it cannot be read).
fn local(s: &socket2::Socket, configured: SocketAddr) -> SocketAddr {
    (s.local_addr().ok())
        .and_then(|a| a.as_socket())
        .unwrap_or(configured)
}

fn check_taken(section: &str, addr: SocketAddr, taken: &[SocketAddr]) -> Result<(), PortError> {
    if addr.port() != 0 && taken.contains(&addr) {
        return Err(PortError::Taken {
            section: section.to_string(),
            addr,
        });
    }
    Ok(())
}

enum L4Bound {
    Tcp(socket2::Socket),
    Udp(std::net::UdpSocket),
}

/// Binds an `[l4 NAME]` section's sockets (none for a UDP port with `defer`: bound by
/// [`Plan::listen`]); its counters are `old`'s, if it replaces one.
fn bind_l4(
    l: &L4Config,
    config: &Config,
    old: Option<&Arc<L4Port>>,
    threads: usize,
    taken: &[SocketAddr],
    defer: bool,
) -> Result<(Arc<L4Port>, Vec<L4Bound>), PortError> {
    let section = format!("[l4 {}]", l.name);
    if l.protocol == L4Protocol::Tcp {
        check_taken(&section, l.listen, taken)?;
    }
    let bind_error = |source| PortError::Bind {
        section: section.clone(),
        addr: l.listen,
        source,
    };
    let (addr, bound) = match l.protocol {
        L4Protocol::Tcp => {
            let s = listener::bind_reuseport_unlistened(l.listen, threads).map_err(bind_error)?;
            let addr = local(&s[0], l.listen);
            (addr, s.into_iter().map(L4Bound::Tcp).collect::<Vec<_>>())
        }
        L4Protocol::Udp if defer => (l.listen, Vec::new()),
        L4Protocol::Udp => {
            let s = listener::bind_udp_reuseport(l.listen, threads).map_err(bind_error)?;
            let addr = s[0].local_addr().unwrap_or(l.listen);
            (addr, s.into_iter().map(L4Bound::Udp).collect())
        }
    };
    let port = L4Port {
        config: l.clone(),
        addr,
        connect_timeout: l.effective_connect_timeout(&config.server),
        proxy_protocol_timeout: l.effective_proxy_protocol_timeout(&config.server),
        sessions: Arc::default(),
        stats: old.map_or_else(
            || (0..threads).map(|_| L4Stats::default()).collect(),
            |o| Arc::clone(&o.stats),
        ),
        closed: open_flag(),
    };
    Ok((Arc::new(port), bound))
}
