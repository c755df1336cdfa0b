//! Running switchyard in-process: a config builder, and a handle with the addresses and `/stats`.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard::server::ServerHandle;
use switchyard_config::{
    BackendConfig, Config, L4Config, L4Protocol, ListenerConfig, RouteConfig, ServerConfig,
};

use super::client;

/// Builds a proxy config: listen and admin on 127.0.0.1:0, one reactor thread, a short drain.
pub struct Builder {
    config: Config,
    admin_token: Option<String>,
}

/// A builder with no backends and no routes yet.
pub fn new() -> Builder {
    Builder {
        config: Config {
            server: ServerConfig {
                listen: vec!["127.0.0.1:0".parse().unwrap()],
                threads: 1,
                admin_listen: Some("127.0.0.1:0".parse().unwrap()),
                drain_timeout: Duration::from_secs(5),
                ..ServerConfig::default()
            },
            backends: Vec::new(),
            routes: Vec::new(),
            l4: Vec::new(),
            listeners: Vec::new(),
            limits: Vec::new(),
            acls: Vec::new(),
            budgets: Vec::new(),
            alerts: Vec::new(),
            plugins: Vec::new(),
        },
        admin_token: None,
    }
}

/// A fresh path in the target's temporary directory, unique to this process and call.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("switchyard-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

impl Builder {
    /// Changes `[server]` settings.
    pub fn server(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(&mut self.config.server);
        self
    }

    /// Sets `admin_token_file` to a new file holding `token` (with a trailing newline); the
    /// proxy's helpers ([`Proxy::stats`], [`Proxy::admin_get`]) then send it.
    pub fn admin_token(mut self, token: &str) -> Self {
        let path = temp_path("admin.token");
        std::fs::write(&path, format!("{token}\n")).unwrap();
        self.config.server.admin_token_file = Some(path);
        self.admin_token = Some(token.to_string());
        self
    }

    /// The config as built so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adds `[backend name]` at `addr` with weight 1.
    pub fn backend(self, name: &str, addr: SocketAddr) -> Self {
        self.weighted_backend(name, addr, 1)
    }

    /// Adds `[backend name]` at `addr` with `weight`.
    pub fn weighted_backend(mut self, name: &str, addr: SocketAddr, weight: u32) -> Self {
        self.config.backends.push(BackendConfig {
            name: name.into(),
            address: addr.to_string().parse().unwrap(),
            weight,
            metrics: None,
            models: Vec::new(),
            health: None,
            protocol: Default::default(),
            tls: None,
        });
        self
    }

    /// Sets `protocol` (`http1` or `h2c`) on the backend added last.
    pub fn protocol(mut self, protocol: &str) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            b.protocol = protocol.parse().expect("valid backend protocol");
        }
        self
    }

    /// Sets `tls = true` (with its options) on the backend added last.
    pub fn tls(mut self, tls: switchyard_config::BackendTls) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            b.tls = Some(tls);
        }
        self
    }

    /// Sets `models` on the backend added last.
    pub fn models(mut self, models: &[&str]) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            b.models = models
                .iter()
                .map(|m| m.parse().expect("valid model id"))
                .collect();
        }
        self
    }

    /// Sets `health` on the backend added last.
    pub fn health(mut self, check: &str) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            b.health = Some(check.parse().expect("valid health check"));
        }
        self
    }

    /// Sets `progress_timeout` on the backend added last, after its `metrics`.
    pub fn progress_timeout(mut self, timeout: Duration) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            let m = b
                .metrics
                .as_mut()
                .expect("progress_timeout needs metrics first");
            m.progress_timeout = Some(timeout);
        }
        self
    }

    /// Sets `metrics` on the backend added last.
    pub fn metrics(mut self, endpoint: &str) -> Self {
        if let Some(b) = self.config.backends.last_mut() {
            b.metrics = Some(endpoint.parse().expect("valid metrics endpoint"));
        }
        self
    }

    /// Adds `[route name]` for any host and `prefix`, over `backends` with `balancer`.
    pub fn route(self, name: &str, prefix: &str, backends: &[&str], balancer: &str) -> Self {
        self.host_route(name, &[], prefix, backends, balancer)
    }

    /// Adds `[route name]` for `hosts` (empty: any host) and `prefix`.
    pub fn host_route(
        mut self,
        name: &str,
        hosts: &[&str],
        prefix: &str,
        backends: &[&str],
        balancer: &str,
    ) -> Self {
        self.config.routes.push(RouteConfig {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefix: prefix.into(),
            backends: backends.iter().map(|b| b.to_string()).collect(),
            balancer: balancer.into(),
            hash_key: Default::default(),
            explain: false,
            max_websockets: 10_000,
            websocket_max_frame: None,
            rewrite: Default::default(),
            traffic: Default::default(),
            discovery: false,
            versions: Vec::new(),
        });
        self
    }

    /// Sets `max_websockets` on the route added last.
    pub fn max_websockets(mut self, max: u32) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.max_websockets = max;
        }
        self
    }

    /// Changes the traffic keys (`plugins`, `mirror`, `cache*`) of the route added last.
    pub fn traffic(mut self, f: impl FnOnce(&mut switchyard_config::RouteTraffic)) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            f(&mut r.traffic);
        }
        self
    }

    /// Sets `websocket_max_frame` on the route added last.
    pub fn websocket_max_frame(mut self, max: usize) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.websocket_max_frame = Some(max);
        }
        self
    }

    /// Sets `discovery = true` on the route added last (registered backends may join it).
    pub fn discovery(mut self) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.discovery = true;
        }
        self
    }

    /// Sets `versions` on the route added last.
    pub fn versions(mut self, rules: &str) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.versions =
                switchyard_config::versions::parse_versions(rules).expect("valid versions");
        }
        self
    }

    /// Sets `explain = true` on the route added last.
    pub fn explain(mut self) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.explain = true;
        }
        self
    }

    /// Changes the rewrite rules of the route added last.
    pub fn rewrite(mut self, f: impl FnOnce(&mut switchyard_config::RewriteConfig)) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            f(&mut r.rewrite);
        }
        self
    }

    /// Adds `[plugin name]` loading the library at `path` with `settings` (handed to the
    /// plugin's `create`).
    pub fn plugin(mut self, name: &str, path: &std::path::Path, settings: &[(&str, &str)]) -> Self {
        self.config.plugins.push(switchyard_config::PluginConfig {
            name: name.into(),
            path: path.to_str().expect("UTF-8 plugin path").into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
        self
    }

    /// Sets `plugins` (run in this order) on the route added last.
    pub fn plugins(mut self, names: &[&str]) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.traffic.plugins = names.iter().map(|n| n.to_string()).collect();
        }
        self
    }

    /// Sets `hash_key` on the route added last.
    pub fn hash_key(mut self, key: &str) -> Self {
        if let Some(r) = self.config.routes.last_mut() {
            r.hash_key = key.parse().expect("valid hash_key");
        }
        self
    }

    /// Adds `[l4 name]` listening on 127.0.0.1:0 over `backends` with `balancer`; its bound
    /// address is [`Proxy::l4_addr`].
    pub fn l4(self, name: &str, backends: &[&str], balancer: &str) -> Self {
        self.l4_with(L4Protocol::Tcp, name, backends, balancer)
    }

    /// Adds a `protocol = udp` `[l4 name]` listening on 127.0.0.1:0 over `backends` with
    /// `balancer`, every other key at its default; its bound address is [`Proxy::l4_addr`].
    pub fn l4_udp(self, name: &str, backends: &[&str], balancer: &str) -> Self {
        self.l4_with(L4Protocol::Udp, name, backends, balancer)
    }

    fn l4_with(
        mut self,
        protocol: L4Protocol,
        name: &str,
        backends: &[&str],
        balancer: &str,
    ) -> Self {
        let backends = backends.iter().map(|b| b.to_string()).collect();
        let mut l = L4Config::new(name, "127.0.0.1:0".parse().unwrap(), protocol, backends);
        l.balancer = balancer.into();
        self.config.l4.push(l);
        self
    }

    /// Sets `max_sessions` on the (UDP) L4 listener added last.
    pub fn l4_max_sessions(mut self, max: usize) -> Self {
        if let Some(l) = self.config.l4.last_mut() {
            l.max_sessions = max;
        }
        self
    }

    /// Sets `max_datagram` on the (UDP) L4 listener added last.
    pub fn l4_max_datagram(mut self, max: usize) -> Self {
        if let Some(l) = self.config.l4.last_mut() {
            l.max_datagram = max;
        }
        self
    }

    /// Sets `idle_timeout` on the L4 listener added last.
    pub fn l4_idle_timeout(mut self, timeout: Duration) -> Self {
        if let Some(l) = self.config.l4.last_mut() {
            l.idle_timeout = timeout;
        }
        self
    }

    /// Sets `connect_timeout` on the L4 listener added last.
    pub fn l4_connect_timeout(mut self, timeout: Duration) -> Self {
        if let Some(l) = self.config.l4.last_mut() {
            l.connect_timeout = Some(timeout);
        }
        self
    }

    /// Lets `f` change the last `[l4]` listener added.
    pub fn l4_set(mut self, f: impl FnOnce(&mut L4Config)) -> Self {
        if let Some(l) = self.config.l4.last_mut() {
            f(l);
        }
        self
    }

    /// Adds `[listener name]` on 127.0.0.1:0 with the defaults (`protocols = http1, h2c`),
    /// then lets `f` change it; its bound address is [`Proxy::listener_addr`].
    pub fn listener(mut self, name: &str, f: impl FnOnce(&mut ListenerConfig)) -> Self {
        let mut l = ListenerConfig {
            name: name.into(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            protocols: Default::default(),
            fallback: None,
            sniff_timeout: None,
            tls_certificate: None,
            tls_key: None,
            tls_sni: Vec::new(),
            tls_handshake_timeout: switchyard_config::DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            tls_reload_interval: switchyard_config::DEFAULT_TLS_RELOAD_INTERVAL,
            acme_challenge_dir: None,
            proxy_protocol: Default::default(),
            proxy_protocol_timeout: None,
        };
        f(&mut l);
        self.config.listeners.push(l);
        self
    }

    /// Adds `[limit name]`: `key` (`global`, `client_ip`, `api_key`, ...), `rate` (`10/s`) and
    /// `burst`, then lets `f` change it.
    pub fn limit(
        mut self,
        name: &str,
        key: &str,
        rate: &str,
        burst: u32,
        f: impl FnOnce(&mut switchyard_config::LimitConfig),
    ) -> Self {
        let mut l =
            switchyard_config::LimitConfig::new(name, key.parse().unwrap(), rate.parse().unwrap());
        l.burst = burst;
        f(&mut l);
        self.config.limits.push(l);
        self
    }

    /// Adds `[budget name]`: `tokens_per_minute` and `burst` (every other key at its default:
    /// `key = api_key`, `per_model = true`), then lets `f` change it.
    pub fn budget(
        mut self,
        name: &str,
        tokens_per_minute: u64,
        burst: u64,
        f: impl FnOnce(&mut switchyard_config::BudgetConfig),
    ) -> Self {
        let mut b = switchyard_config::BudgetConfig::new(name, tokens_per_minute);
        b.burst = burst;
        f(&mut b);
        self.config.budgets.push(b);
        self
    }

    /// Adds `[acl name]` with `rules` (`allow 10.0.0.0/8, deny ::/0`) and `default = deny`,
    /// then lets `f` set what it guards (`routes`, `l4`) and the rest.
    pub fn acl(
        mut self,
        name: &str,
        rules: &str,
        f: impl FnOnce(&mut switchyard_config::AclConfig),
    ) -> Self {
        let rules = rules
            .split(", ")
            .map(|r| {
                let (action, net) = r.split_once(' ').unwrap();
                switchyard_config::AclRule {
                    action: action.parse().unwrap(),
                    network: net.parse().unwrap(),
                }
            })
            .collect();
        let mut a = switchyard_config::AclConfig::new(name, rules, Default::default());
        f(&mut a);
        self.config.acls.push(a);
        self
    }

    /// Adds `[alert name]` on `series` (`above` or `below` `threshold`), then lets `f` change
    /// it.
    pub fn alert(
        mut self,
        name: &str,
        series: &str,
        comparison: switchyard_config::AlertComparison,
        threshold: f64,
        f: impl FnOnce(&mut switchyard_config::AlertConfig),
    ) -> Self {
        let mut a = switchyard_config::AlertConfig::new(name, series, comparison, threshold);
        f(&mut a);
        self.config.alerts.push(a);
        self
    }

    /// One backend `b0` at `addr` behind a route for every path.
    pub fn to(self, addr: SocketAddr) -> Self {
        self.backend("b0", addr)
            .route("default", "/", &["b0"], "round_robin")
    }

    /// Starts the proxy, after validating the config exactly as a file would be.
    pub fn start(self) -> Proxy {
        let admin_token = self.admin_token.clone();
        let handle = self.try_start().expect("proxy starts");
        Proxy {
            addr: handle.listen_addrs()[0],
            admin: handle.admin_addr().expect("admin listener"),
            admin_token,
            handle: Some(handle),
        }
    }

    /// Validates the config as a file would be, then tries to start the proxy.
    pub fn try_start(self) -> Result<ServerHandle, switchyard::server::StartError> {
        let config = switchyard_config::parse(&self.config.to_ini(), "test.ini")
            .unwrap_or_else(|e| panic!("invalid test config:\n{e}"));
        switchyard::server::start(config)
    }
}

/// History sampled every 100 ms (a minute of it, then a second's steps for ten minutes), so
/// that tests see samples and alerts without waiting seconds.
pub fn fast_history(s: &mut ServerConfig) {
    s.observe.history_interval = Duration::from_millis(100);
    s.observe.history_window = Duration::from_secs(60);
    s.observe.history_long_step = Duration::from_secs(1);
    s.observe.history_long_window = Duration::from_secs(600);
}

/// A running proxy; dropping it starts its shutdown.
pub struct Proxy {
    addr: SocketAddr,
    admin: SocketAddr,
    admin_token: Option<String>,
    handle: Option<ServerHandle>,
}

impl Proxy {
    /// The data-plane address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of L4 listener `index` (config order).
    pub fn l4_addr(&self, index: usize) -> SocketAddr {
        self.handle().l4_addrs()[index]
    }

    /// The (first) bound address of `[listener name]`.
    pub fn listener_addr(&self, name: &str) -> SocketAddr {
        self.handle().listener_addrs(name)[0]
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The server handle.
    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        self.handle().shutdown();
    }

    /// Waits for every thread to end (on a blocking thread).
    pub async fn join(mut self) {
        let handle = self.handle.take().unwrap();
        tokio::task::spawn_blocking(move || handle.join())
            .await
            .unwrap();
    }

    /// `GET path` on the admin listener, with the admin token if the proxy has one.
    pub async fn admin_get(&self, path: &str) -> client::Answer {
        client::get_authorized(self.admin, path, self.admin_token.as_deref()).await
    }

    /// The `/stats` document.
    pub async fn stats(&self) -> serde_json::Value {
        let a = self.admin_get("/stats").await;
        assert_eq!(a.status, 200, "/stats: {}", a.text());
        a.json()
    }

    /// `totals.errors.<kind>` from `/stats`.
    pub async fn errors(&self, kind: &str) -> u64 {
        let s = self.stats().await;
        s["totals"]["errors"][kind]
            .as_u64()
            .unwrap_or_else(|| panic!("no error kind {kind} in {s:#}"))
    }

    /// Waits until `totals.errors.<kind>` reaches `n` (errors found when a connection ends are
    /// counted just after the client sees it close), then checks it is exactly `n`.
    pub async fn expect_errors(&self, kind: &str, n: u64) {
        super::wait_for(super::DEADLINE, &format!("{n} {kind} errors"), || async {
            self.errors(kind).await >= n
        })
        .await;
        assert_eq!(self.errors(kind).await, n, "{kind} errors");
    }

    /// `backends[index]` from `/stats`.
    pub async fn backend_stats(&self, index: usize) -> serde_json::Value {
        self.stats().await["backends"][index].clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.shutdown();
        }
    }
}
