//! Starting and stopping a server: resolve backends, bind listeners, run one single-threaded
//! tokio runtime per reactor thread, drain on shutdown.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchyard_config::{Config, L4Protocol};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::l7::proxy::Worker;
use crate::net::{conn, listener};
use crate::observe::Stats;
use crate::upstream::directory::Directory;
use crate::upstream::tls::UpstreamTls;

pub use crate::routing::Group;

/// What every thread of a running server shares: the configuration it started with, the
/// directory (backends, and with each snapshot the [`crate::routing::Routing`] generation in
/// force: routes, limits, ACLs, budgets, per-request settings), and the lock-free backend
/// states and counters.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the server started with: what restart-only settings (`[server]
    /// listen`, threads, the admin plane...) come from. The config in force is the current routing's
    /// (see [`Shared::routing`]).
    pub config: Config,
    /// Every backend, static and registered, each route's members, and the routing.
    pub directory: Directory,
    /// Reload history and counters (see [`crate::reload`]).
    pub reloads: crate::reload::Reloads,
    /// Counters.
    pub stats: Stats,
    /// The monotonic clock balancers and health use.
    pub clock: Clock,
    /// Reactor threads running.
    pub threads: usize,
    /// The open-files limit in force.
    pub nofile_limit: u64,
    /// Per backend slot, how its metrics scrapes went.
    pub scrapes: Vec<crate::upstream::scrape::ScrapeStats>,
    /// Per backend slot, how its active health checks went.
    pub health: Vec<crate::upstream::health::HealthStats>,
    /// The bound `[server] listen` addresses.
    pub listen_addrs: Vec<SocketAddr>,
    /// The `[listener NAME]` and `[l4 NAME]` ports in force (replaced by reloads).
    pub ports: crate::net::ports::PortTable,
    /// Per backend slot, its last upstream errors (see [`crate::upstream::errlog`]).
    pub upstream_errors: Vec<crate::upstream::errlog::ErrorLog>,
    /// `/admin/diagnose`'s last report, and its one run at a time.
    pub diagnose: crate::admin::diagnose::Runs,
    /// The admin plane's token and failed attempts.
    pub admin_auth: crate::admin::auth::AdminAuth,
    /// The audit log.
    pub audit: crate::audit::Audit,
    /// The accept limiter, when any of its limits is set.
    pub accept_limit: Option<Arc<crate::net::accept_limit::AcceptLimiter>>,
    /// The history and alerts (sampled by the monitor thread, read by the admin thread).
    pub monitor: crate::observe::monitor::Monitor,
    /// The response cache (routes with `cache = on`).
    pub cache: crate::traffic::cache::ResponseCache,
    /// Mirrored requests out, and their counters.
    pub mirrors: crate::traffic::mirror::Mirrors,
}

impl Shared {
    /// The routing generation in force (routes, limits, ACLs, budgets and the applied
    /// config). Off the request path; reactor threads use their own snapshot.
    pub fn routing(&self) -> Arc<crate::routing::Routing> {
        Arc::clone(&self.directory.snapshot().routing)
    }
}

/// Why a server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A backend's address did not resolve to any socket address.
    Resolve {
        /// The backend's name.
        backend: String,
        /// The address as configured.
        address: String,
        /// The resolver's error, if it gave one.
        source: Option<std::io::Error>,
    },
    /// A listening socket could not be bound.
    Bind {
        /// What the socket was for (`listen`, `admin_listen`, `l4`).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A thread or runtime could not be created.
    Runtime(std::io::Error),
    /// A backend's `metrics` address does not resolve.
    Metrics(String),
    /// A backend's TLS settings cannot be used (its CA file, say).
    BackendTls {
        /// The backend's name.
        backend: String,
        /// What is wrong.
        source: crate::upstream::tls::TlsConfigError,
    },
    /// A listener's certificate or key file is missing or unusable.
    Tls(crate::net::certs::CertError),
    /// A `[listener NAME]` or `[l4 NAME]` socket could not be bound.
    Port(crate::net::ports::PortError),
    /// `admin_token_file` is missing, unreadable or empty.
    AdminToken(crate::admin::auth::TokenFileError),
    /// `admin_listen` is not a loopback address and no `admin_token_file` is configured.
    AdminUnprotected(SocketAddr),
    /// `audit_log` cannot be opened.
    Audit(crate::audit::AuditError),
    /// A `[plugin NAME]` could not be loaded.
    Plugin(crate::plugin::LoadError),
    /// The routing state could not be built.
    Routing(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Resolve {
                backend,
                address,
                source,
            } => {
                write!(
                    f,
                    "backend {backend:?}: address {address:?} does not resolve"
                )?;
                if let Some(e) = source {
                    write!(f, ": {e}")?;
                }
                Ok(())
            }
            StartError::Bind { what, addr, source } => {
                write!(f, "cannot bind {what} {addr}: {source}")
            }
            StartError::Runtime(e) => write!(f, "cannot start reactor threads: {e}"),
            StartError::Metrics(e) => write!(f, "{e}"),
            StartError::BackendTls { backend, source } => write!(f, "backend {backend}: {source}"),
            StartError::Tls(e) => write!(f, "{e}"),
            StartError::AdminToken(e) => write!(f, "{e}"),
            StartError::AdminUnprotected(addr) => write!(
                f,
                "[server] admin_listen {addr} is not a loopback address and no \
                 admin_token_file is set: the admin API (stats, backend registration) would be \
                 open to the network; set admin_token_file, or listen on 127.0.0.1 or [::1]"
            ),
            StartError::Audit(e) => write!(f, "{e}"),
            StartError::Plugin(e) => write!(f, "{e}"),
            StartError::Routing(e) => f.write_str(e),
            StartError::Port(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
pub struct ServerHandle {
    listen_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("listen_addrs", &self.listen_addrs)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl ServerHandle {
    /// The bound data-plane addresses (with the real port when the config said 0).
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.listen_addrs
    }

    /// The bound addresses of the `[l4 NAME]` listeners in force, in config order (with the
    /// real port when the config said 0).
    pub fn l4_addrs(&self) -> Vec<SocketAddr> {
        self.shared
            .ports
            .current()
            .l4
            .iter()
            .map(|p| p.addr)
            .collect()
    }

    /// The bound addresses of the `[listener NAME]` named `name` in force (with the real port
    /// when the config said 0); empty if there is no such listener.
    pub fn listener_addrs(&self, name: &str) -> Vec<SocketAddr> {
        self.shared
            .ports
            .current()
            .listener(name)
            .map_or_else(Vec::new, |l| l.addrs.clone())
    }

    /// The bound admin address, if the admin listener is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared state, for inspection (tests, the admin API).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts a graceful shutdown: stop accepting, let exchanges in progress finish (up to
    /// `drain_timeout`), then stop. Returns at once; [`ServerHandle::join`] waits.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits (blocking) for every thread to finish, then for the audit log to have every
    /// line written and synced (at most [`AUDIT_FLUSH_TIMEOUT`]).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
        if !self.shared.audit.flush(AUDIT_FLUSH_TIMEOUT) {
            tracing::warn!("audit: lines still queued at exit were not all written");
        }
    }
}

/// How long [`ServerHandle::join`] waits for the audit log's last lines to reach the disk.
pub const AUDIT_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn resolve(config: &Config) -> Result<Vec<SocketAddr>, StartError> {
    config
        .backends
        .iter()
        .map(|b| {
            let text = b.address.to_string();
            match (b.address.host.as_str(), b.address.port).to_socket_addrs() {
                Ok(mut it) => it.next().ok_or_else(|| StartError::Resolve {
                    backend: b.name.clone(),
                    address: text.clone(),
                    source: None,
                }),
                Err(e) => Err(StartError::Resolve {
                    backend: b.name.clone(),
                    address: text,
                    source: Some(e),
                }),
            }
        })
        .collect()
}

/// The number of reactor threads for `[server] threads` (0 = one per core).
pub fn thread_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Raises the soft open-files limit to the hard limit (as nginx's `worker_rlimit_nofile`), so
/// 10,000 clients and their upstream connections fit; returns the limit in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(0),
    }
}

/// Starts a server for `config`: binds every socket first (so errors come back here, before
/// anything runs), then spawns the reactor threads and the admin thread.
pub fn start(config: Config) -> Result<ServerHandle, StartError> {
    let nofile_limit = raise_nofile_limit();
    let threads = thread_count(config.server.threads);
    let addrs = resolve(&config)?;
    crate::upstream::scrape::check_targets(&config).map_err(StartError::Metrics)?;
    let tls = config
        .backends
        .iter()
        .map(|b| {
            UpstreamTls::for_backend(b).map_err(|source| StartError::BackendTls {
                backend: b.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let routing = crate::routing::Routing::new(Arc::new(config.clone())).map_err(|e| match e {
        crate::routing::RoutingError::Plugin(e) => StartError::Plugin(e),
        other => StartError::Routing(other.to_string()),
    })?;
    let routing = Arc::new(routing);
    let directory = Directory::new(routing, &addrs, &tls, config.server.max_registered_backends);

    // Bind everything before starting anything.
    let mut per_thread: Vec<Vec<std::net::TcpListener>> =
        (0..threads).map(|_| Vec::new()).collect();
    let mut listen_addrs = Vec::new();
    for addr in &config.server.listen {
        let sockets =
            listener::bind_reuseport(*addr, threads).map_err(|source| StartError::Bind {
                what: "listen",
                addr: *addr,
                source,
            })?;
        listen_addrs.push(sockets[0].local_addr().map_err(StartError::Runtime)?);
        for (i, s) in sockets.into_iter().enumerate() {
            per_thread[i].push(s);
        }
    }
    // `[listener NAME]` and `[l4 NAME]` ports: certificates first (a bad file stops the
    // start), then one SO_REUSEPORT socket per thread and address, like `listen`; the sockets
    // wait in each reactor's queue (see `net::ports`).
    let (reactor_tx, reactor_rx): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    let ports = crate::net::ports::PortTable::new(reactor_tx);
    let port_error = |e| match e {
        crate::net::ports::PortError::Tls(e) => StartError::Tls(e),
        e => StartError::Port(e),
    };
    let plan = ports
        .prepare(&config, &config, &listen_addrs)
        .map_err(port_error)?;
    ports.commit(plan.listen().map_err(port_error)?);
    let l4_addrs: Vec<SocketAddr> = ports.current().l4.iter().map(|p| p.addr).collect();
    let udp_sessions: u64 = config
        .l4
        .iter()
        .filter(|l| l.protocol == L4Protocol::Udp)
        .map(|l| l.max_sessions as u64)
        .sum();
    if udp_sessions > nofile_limit / 2 {
        tracing::warn!(
            max_sessions = udp_sessions,
            open_files_limit = nofile_limit,
            "the UDP listeners' max_sessions (one socket each) take more than half the open-files limit"
        );
    }
    let admin_auth = admin_guard(&config.server)?;
    let audit = crate::audit::Audit::start(&config.server.audit).map_err(StartError::Audit)?;
    let admin_listener = match config.server.admin_listen {
        Some(addr) => Some(listener::bind_one(addr).map_err(|source| StartError::Bind {
            what: "admin_listen",
            addr,
            source,
        })?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()
        .map_err(StartError::Runtime)?;

    let shared = Arc::new(Shared {
        monitor: crate::observe::monitor::Monitor::new(&config, directory.capacity()),
        cache: crate::traffic::cache::ResponseCache::new(config.server.traffic.cache_max_bytes),
        mirrors: crate::traffic::mirror::Mirrors::default(),
        reloads: crate::reload::Reloads::default(),
        accept_limit: crate::net::accept_limit::from_config(&config.server.accept),
        stats: Stats::new(
            threads,
            crate::routing::route_capacity(config.routes.len()),
            directory.capacity(),
        ),
        listen_addrs: listen_addrs.clone(),
        ports,
        clock: Clock::new(),
        threads,
        nofile_limit,
        scrapes: (0..directory.capacity())
            .map(|_| Default::default())
            .collect(),
        health: (0..directory.capacity())
            .map(|_| Default::default())
            .collect(),
        upstream_errors: (0..directory.capacity())
            .map(|_| Default::default())
            .collect(),
        diagnose: Default::default(),
        directory,
        admin_auth,
        audit,
        config,
    });
    tracing::info!(
        listen = ?listen_addrs,
        admin = ?admin_addr,
        l4 = ?l4_addrs,
        threads,
        open_files_limit = nofile_limit,
        "switchyard started"
    );

    let (tx, rx) = watch::channel(false);
    let mut handles = Vec::new();
    for (i, (listeners, sockets)) in per_thread.into_iter().zip(reactor_rx).enumerate() {
        let shared = Arc::clone(&shared);
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name(format!("switchyard-reactor-{i}"))
            .spawn(move || reactor(i, shared, listeners, sockets, rx))
            .map_err(StartError::Runtime)?;
        handles.push(h);
    }
    // Always running: a reload may add a TLS listener.
    {
        let watched = Arc::clone(&shared.ports.watched);
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name("switchyard-certs".into())
            .spawn(move || crate::net::certs::run(watched, rx))
            .map_err(StartError::Runtime)?;
        handles.push(h);
    }
    // The monitor scrapes metrics and runs health checks; registered backends and reloads
    // may bring either, so it always runs (idle when there is nothing to check).
    {
        let shared = Arc::clone(&shared);
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name("switchyard-monitor".into())
            .spawn(move || crate::upstream::scrape::run(shared, rx))
            .map_err(StartError::Runtime)?;
        handles.push(h);
    }
    // The history and alerts run with or without an admin listener: alerts are logged and
    // sent to the webhook either way (their memory is allocated with `Shared` regardless).
    {
        let shared = Arc::clone(&shared);
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name("switchyard-history".into())
            .spawn(move || crate::observe::monitor::run(shared, rx))
            .map_err(StartError::Runtime)?;
        handles.push(h);
    }
    if let Some(l) = admin_listener {
        let shared = Arc::clone(&shared);
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name("switchyard-admin".into())
            .spawn(move || crate::admin::run(l, shared, rx))
            .map_err(StartError::Runtime)?;
        handles.push(h);
    }
    Ok(ServerHandle {
        listen_addrs,
        admin_addr,
        shutdown: tx,
        threads: handles,
        shared,
    })
}

/// The admin plane's guard: the token from `admin_token_file`; without one, `admin_listen`
/// must be a loopback address. (`switchyard check` runs it too.)
pub fn admin_guard(
    server: &switchyard_config::ServerConfig,
) -> Result<crate::admin::auth::AdminAuth, StartError> {
    let token = match &server.admin_token_file {
        Some(path) => {
            Some(crate::admin::auth::AdminToken::load(path).map_err(StartError::AdminToken)?)
        }
        None => None,
    };
    if let (Some(addr), None) = (server.admin_listen, &token) {
        if !addr.ip().is_loopback() {
            return Err(StartError::AdminUnprotected(addr));
        }
    }
    Ok(crate::admin::auth::AdminAuth::new(
        token,
        server.admin_max_failures,
        server.admin_block_time,
        crate::admin::session::Sessions::new(server.admin_sessions.ttl, server.admin_sessions.max),
    ))
}

/// One reactor thread: a current-thread runtime running its accept loops and connections.
fn reactor(
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    sockets: tokio::sync::mpsc::UnboundedReceiver<crate::net::ports::Socket>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "reactor {index}: cannot build runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Rc::new(Worker::new(Arc::clone(&shared), index));
        let active = Rc::new(std::cell::Cell::new(0usize));
        for l in listeners {
            let l = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "reactor {index}: cannot register listener");
                    continue;
                }
            };
            tokio::task::spawn_local(accept_loop(
                l,
                Rc::clone(&worker),
                Rc::clone(&active),
                shutdown.clone(),
            ));
        }
        let ports = tokio::task::spawn_local(crate::net::port_tasks::run(
            index,
            Rc::clone(&worker),
            sockets,
            Rc::clone(&active),
            shutdown.clone(),
        ));
        let sweeper = {
            let worker = Rc::clone(&worker);
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(crate::clock::COARSE_TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                for n in 0u64.. {
                    tick.tick().await;
                    crate::clock::tick_coarse();
                    worker.deadlines.expire(crate::clock::coarse_now());
                    worker.flush_audit();
                    if n % 10 == 0 {
                        worker.pool.sweep();
                    }
                }
            })
        };
        let _ = shutdown.wait_for(|v| *v).await;
        let deadline = Instant::now() + shared.config.server.drain_timeout;
        // Upgraded (WebSocket) connections left hyper's hands: their tunnels are counted apart.
        let open = || active.get() + worker.tunnels.get();
        while open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if open() > 0 {
            tracing::warn!(
                connections = open(),
                "reactor {index}: drain timeout, closing remaining connections"
            );
        }
        sweeper.abort();
        ports.abort();
        worker.flush_audit();
        worker.pool.clear();
    });
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    worker: Rc<Worker>,
    active: Rc<std::cell::Cell<usize>>,
    shutdown: watch::Receiver<bool>,
) {
    use crate::observe::stats::Bump;
    let shared = Arc::clone(&worker.shared);
    let spawn = |stream, peer, permit| {
        worker.stats.conns_accepted.bump(1);
        active.set(active.get() + 1);
        let (worker, active, rx) = (Rc::clone(&worker), Rc::clone(&active), shutdown.clone());
        tokio::task::spawn_local(async move {
            let _permit = permit;
            conn::serve(worker, stream, peer, rx).await;
            active.set(active.get() - 1);
        });
    };
    let mut rx = shutdown.clone();
    crate::net::accept::accept_until_shutdown(&listener, &shared, &mut rx, None, "listen", spawn)
        .await;
}
