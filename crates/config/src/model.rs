//! The typed configuration and its defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use crate::health::HealthCheck;
use crate::Address;

/// The default `listen` address.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The default `admin_listen` address.
pub(crate) const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
/// The default route `path_prefix`.
pub(crate) const DEFAULT_PATH_PREFIX: &str = "/";
/// The default route `balancer`.
pub(crate) const DEFAULT_BALANCER: &str = "round_robin";
/// The default `[server]` `websocket_max_frame`: 1 MiB.
pub const DEFAULT_WEBSOCKET_MAX_FRAME: usize = 1 << 20;
/// The default backend `weight`.
pub(crate) const DEFAULT_WEIGHT: u32 = 1;

/// A whole, validated configuration: what [`parse`](crate::parse) returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The `[server]` section (all defaults if the file has none).
    pub server: ServerConfig,
    /// The `[backend NAME]` sections, in file order.
    pub backends: Vec<BackendConfig>,
    /// The `[route NAME]` sections, in file order.
    pub routes: Vec<RouteConfig>,
    /// The `[l4 NAME]` sections (raw TCP and UDP listeners), in file order.
    pub l4: Vec<L4Config>,
    /// The `[listener NAME]` sections (client ports with configured protocols), in file order.
    pub listeners: Vec<crate::ListenerConfig>,
    /// The `[limit NAME]` sections (request rate limits), in file order.
    pub limits: Vec<crate::LimitConfig>,
    /// The `[acl NAME]` sections (access control lists), in file order.
    pub acls: Vec<crate::AclConfig>,
    /// The `[budget NAME]` sections (LLM token budgets), in file order.
    pub budgets: Vec<crate::BudgetConfig>,
    /// The `[alert NAME]` sections, in file order (see [`Config::effective_alerts`] for the
    /// rules watched).
    pub alerts: Vec<crate::AlertConfig>,
    /// The `[plugin NAME]` sections, in file order.
    pub plugins: Vec<crate::PluginConfig>,
}

impl Config {
    /// The plugin named `name`, if there is one.
    pub fn plugin(&self, name: &str) -> Option<&crate::PluginConfig> {
        self.plugins.iter().find(|p| p.name == name)
    }

    /// The backend named `name`, if there is one.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The route named `name`, if there is one.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The L4 listener named `name`, if there is one.
    pub fn l4_listener(&self, name: &str) -> Option<&L4Config> {
        self.l4.iter().find(|l| l.name == name)
    }

    /// The `[acl NAME]` section named `name`, if there is one.
    pub fn acl(&self, name: &str) -> Option<&crate::AclConfig> {
        self.acls.iter().find(|a| a.name == name)
    }

    /// The `[limit NAME]` section named `name`, if there is one.
    pub fn limit(&self, name: &str) -> Option<&crate::LimitConfig> {
        self.limits.iter().find(|l| l.name == name)
    }

    /// The `[budget NAME]` section named `name`, if there is one.
    pub fn budget(&self, name: &str) -> Option<&crate::BudgetConfig> {
        self.budgets.iter().find(|b| b.name == name)
    }

    /// The `[listener NAME]` section named `name`, if there is one.
    pub fn listener(&self, name: &str) -> Option<&crate::ListenerConfig> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// The default `[l4 NAME]` `idle_timeout` of a `protocol = tcp` listener.
pub const DEFAULT_L4_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// The default `[l4 NAME]` `idle_timeout` of a `protocol = udp` listener: how long a UDP
/// session lives without a datagram either way.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `[l4 NAME]` `max_sessions` (`protocol = udp`): each session holds one socket,
/// so this also bounds the listener's file descriptors.
pub const DEFAULT_UDP_MAX_SESSIONS: usize = 10_000;
/// The default `[l4 NAME]` `max_datagram` (`protocol = udp`): the largest UDP payload.
pub const DEFAULT_UDP_MAX_DATAGRAM: usize = 65_535;

/// An `[l4 NAME]` section's `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Protocol {
    /// `tcp`: byte streams, with half-close (the default).
    #[default]
    Tcp,
    /// `udp`: datagrams, in sessions keyed by the client's address.
    Udp,
}

impl std::fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            L4Protocol::Tcp => write!(f, "tcp"),
            L4Protocol::Udp => write!(f, "udp"),
        }
    }
}

impl std::str::FromStr for L4Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(L4Protocol::Tcp),
            "udp" => Ok(L4Protocol::Udp),
            _ => Err("expected `tcp` or `udp`".to_string()),
        }
    }
}

/// An `[l4 NAME]` section: a raw TCP listener whose connections are forwarded, byte for byte,
/// to one backend of a group picked by a balancer, or a UDP listener whose datagrams are
/// forwarded per client session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Config {
    /// The section's name.
    pub name: String,
    /// `listen`: the address accepting connections; must not collide with `[server]`
    /// `listen`/`admin_listen` or another L4 listener.
    pub listen: SocketAddr,
    /// `protocol`: `tcp` (the default) or `udp`.
    pub protocol: L4Protocol,
    /// `backends`: names of the `[backend NAME]` sections to forward to; non-empty, no
    /// duplicates.
    pub backends: Vec<String>,
    /// `balancer`: the balancing algorithm's registered name; `consistent_hash` hashes the
    /// client's IP address (for UDP, when a session opens).
    pub balancer: String,
    /// `idle_timeout`: a tunnel (TCP) or session (UDP) with no traffic either way for this
    /// long is closed. Defaults to [`DEFAULT_L4_IDLE_TIMEOUT`] for TCP and
    /// [`DEFAULT_UDP_IDLE_TIMEOUT`] for UDP.
    pub idle_timeout: Duration,
    /// `connect_timeout` (TCP only): how long connecting to a backend may take; `None` means
    /// the server's `upstream_connect_timeout`. Always `None` for UDP.
    pub connect_timeout: Option<Duration>,
    /// `max_sessions` (UDP only): the most client sessions open at once over all reactor
    /// threads; datagrams from new clients past it are dropped. [`DEFAULT_UDP_MAX_SESSIONS`]
    /// for TCP, where it is unused.
    pub max_sessions: usize,
    /// `max_datagram` (UDP only): the largest datagram payload relayed, in bytes; longer ones
    /// are dropped. [`DEFAULT_UDP_MAX_DATAGRAM`] for TCP, where it is unused.
    pub max_datagram: usize,
    /// `proxy_protocol` (TCP only): the PROXY protocol header required from trusted peers.
    pub proxy_protocol: crate::ProxyProtocol,
    /// `proxy_protocol_timeout` (TCP only): how long the header may take; `None` means the
    /// server's `proxy_protocol_timeout`.
    pub proxy_protocol_timeout: Option<Duration>,
}

impl L4Config {
    /// A listener with every optional key at its default for `protocol`.
    pub fn new(
        name: &str,
        listen: SocketAddr,
        protocol: L4Protocol,
        backends: Vec<String>,
    ) -> Self {
        L4Config {
            name: name.to_string(),
            listen,
            protocol,
            backends,
            balancer: DEFAULT_BALANCER.to_string(),
            idle_timeout: match protocol {
                L4Protocol::Tcp => DEFAULT_L4_IDLE_TIMEOUT,
                L4Protocol::Udp => DEFAULT_UDP_IDLE_TIMEOUT,
            },
            connect_timeout: None,
            max_sessions: DEFAULT_UDP_MAX_SESSIONS,
            max_datagram: DEFAULT_UDP_MAX_DATAGRAM,
            proxy_protocol: crate::ProxyProtocol::Off,
            proxy_protocol_timeout: None,
        }
    }

    /// The PROXY protocol timeout in effect: this listener's own, else `server`'s.
    pub fn effective_proxy_protocol_timeout(&self, server: &ServerConfig) -> Duration {
        self.proxy_protocol_timeout
            .unwrap_or(server.proxy_protocol_timeout)
    }

    /// The connect timeout in effect: this listener's own, else `server`'s
    /// `upstream_connect_timeout`.
    pub fn effective_connect_timeout(&self, server: &ServerConfig) -> Duration {
        self.connect_timeout
            .unwrap_or(server.upstream_connect_timeout)
    }
}

/// The `[server]` section: listeners, limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `listen`: the addresses accepting client traffic; at least one, no duplicates.
    pub listen: Vec<SocketAddr>,
    /// `threads`: reactor threads; 0 means one per CPU core. At most 1024.
    pub threads: usize,
    /// `admin_listen`: the admin endpoint's address, or `None` (`off`) for no admin endpoint.
    pub admin_listen: Option<SocketAddr>,
    /// `drain_timeout`: on shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// `client_header_timeout`: the whole request head must arrive within this.
    pub client_header_timeout: Duration,
    /// `client_keepalive_timeout`: an idle client keep-alive connection is closed after this.
    pub client_keepalive_timeout: Duration,
    /// `max_header_bytes`: the largest request head accepted (431 past it); 8 KiB..=1 MiB.
    pub max_header_bytes: usize,
    /// `max_headers`: the most request header fields accepted (431 past it); 1..=1000.
    pub max_headers: usize,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` names the client (for ACLs, rate
    /// limits and the `X-Forwarded-For` sent upstream); empty: none, the peer is the client.
    pub trusted_proxies: Vec<crate::Cidr>,
    /// `proxy_protocol`: the PROXY protocol header required on `listen` from peers in
    /// `trusted_proxies` (`off`: none is read).
    pub proxy_protocol: crate::ProxyProtocol,
    /// `proxy_protocol_timeout`: how long a PROXY protocol header may take to arrive; the
    /// default of `[listener NAME]` and `[l4 NAME]` ports too.
    pub proxy_protocol_timeout: Duration,
    /// `upstream_connect_timeout`: how long connecting to a backend may take.
    pub upstream_connect_timeout: Duration,
    /// `upstream_response_timeout`: from request sent to response headers received (504
    /// past it).
    pub upstream_response_timeout: Duration,
    /// `upstream_keepalive_timeout`: an idle pooled upstream connection is closed after this.
    pub upstream_keepalive_timeout: Duration,
    /// `upstream_keepalive`: idle upstream connections kept per backend per thread; 0 disables
    /// pooling.
    pub upstream_keepalive: usize,
    /// `fail_threshold`: consecutive connect failures that mark a backend down; 0 = never.
    pub fail_threshold: u32,
    /// `fail_timeout`: how long a backend ejected for the first time stays out; the `n`-th
    /// ejection in a row lasts `n` times as long.
    pub fail_timeout: Duration,
    /// `fail_timeout_max`: the longest ejection.
    pub fail_timeout_max: Duration,
    /// `max_ejected_percent`: the largest share of a route's group ejected at once (0..=100).
    pub max_ejected_percent: u32,
    /// `max_registered_backends`: how many backends the admin API may register (0..=4096).
    pub max_registered_backends: usize,
    /// `metrics_interval`: how often each backend's `metrics` endpoint is scraped (50ms..).
    pub metrics_interval: Duration,
    /// `metrics_timeout`: how long one scrape may take.
    pub metrics_timeout: Duration,
    /// `metrics_max_age`: scraped figures older than this are not trusted.
    pub metrics_max_age: Duration,
    /// `health_interval`: how often active health checks run.
    pub health_interval: Duration,
    /// `health_timeout`: how long one check may take.
    pub health_timeout: Duration,
    /// `health_rise`: consecutive passes that bring a backend marked down back up.
    pub health_rise: u32,
    /// `health_fall`: consecutive failures that mark a backend down.
    pub health_fall: u32,
    /// `health_jitter`: each wait between two checks of a backend is `health_interval` plus
    /// or minus up to this percentage of it (0..=50), so backends are not probed in lockstep.
    pub health_jitter: u32,
    /// `retries`: how many other backends a request may be tried on after the first (0..=5).
    pub retries: u32,
    /// `retry_budget`: retries allowed as a percentage of requests (0..=100).
    pub retry_budget: u32,
    /// `config_history`: configs kept for `POST /admin/config/rollback` (1..=1000).
    pub config_history: usize,
    /// The `h2_*` keys: HTTP/2 limits towards clients.
    pub h2: H2Settings,
    /// `websocket_max_frame`: the largest payload of one WebSocket frame a client may send,
    /// in bytes (larger ones close the tunnel with status 1009); 0 = no limit. A route's own
    /// `websocket_max_frame` overrides it.
    pub websocket_max_frame: usize,
    /// The accept limiter's keys (`max_connections`, `max_connections_per_ip`, ...).
    pub accept: AcceptSettings,
    /// The `history_*`, `alert_*` and `default_alerts` keys.
    pub observe: crate::ObserveSettings,
    /// `cache_max_bytes`, `mirror_max_body`, `mirror_max_in_flight`.
    pub traffic: crate::TrafficSettings,
    /// `admin_token_file`: the file holding the admin plane's bearer token; `None` leaves the
    /// admin endpoint open, which is only allowed on a loopback `admin_listen`.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// `admin_max_failures`: failed admin requests from one client IP within a minute that
    /// block it (1..=1000).
    pub admin_max_failures: u32,
    /// `admin_block_time`: how long a blocked client is answered 429 (1s..=24h).
    pub admin_block_time: Duration,
    /// `admin_session_ttl` and `admin_max_sessions`: the admin pages' sign-in sessions.
    pub admin_sessions: crate::security::AdminSessions,
    /// The `audit_*` keys: the audit log.
    pub audit: crate::security::AuditSettings,
}

/// The accept limiter (`[server]` keys): checked as a connection is accepted, before any
/// TLS or HTTP parsing, on `listen`, `[listener]` and TCP `[l4]` ports. `0` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptSettings {
    /// `max_connections`: client connections open at once over the whole process.
    pub max_connections: usize,
    /// `max_connections_per_ip`: connections one client IP may have open at once.
    pub max_connections_per_ip: u32,
    /// `max_connection_rate_per_ip`: new connections one client IP may open per second (a
    /// burst of as many).
    pub max_connection_rate_per_ip: u32,
    /// `ban_after`: refusals of one IP in a row after which it is banned (`0`: never).
    pub ban_after: u32,
    /// `ban_time`: how long a ban lasts.
    pub ban_time: Duration,
    /// `max_tracked_ips`: client IPs the limiter remembers at most.
    pub max_tracked_ips: usize,
}

impl Default for AcceptSettings {
    fn default() -> Self {
        AcceptSettings {
            max_connections: 0,
            max_connections_per_ip: 0,
            max_connection_rate_per_ip: 0,
            ban_after: 0,
            ban_time: Duration::from_secs(60),
            max_tracked_ips: 100_000,
        }
    }
}

/// HTTP/2 limits and flow control for client connections (`[server]` `h2_*` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Settings {
    /// `h2_max_concurrent_streams`: streams a client may have open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); 1..=10000.
    pub max_concurrent_streams: u32,
    /// `h2_stream_window`: the initial flow-control window of each stream, in bytes: how
    /// much of a request body a client may send ahead of the proxy reading it.
    pub stream_window: u32,
    /// `h2_connection_window`: the initial flow-control window of a whole connection.
    pub connection_window: u32,
    /// `h2_max_reset_streams`: streams a client may reset before the proxy has taken them up
    /// (rapid reset, CVE-2023-44487); past it the connection gets GOAWAY
    /// `ENHANCE_YOUR_CALM`.
    pub max_reset_streams: u32,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            max_concurrent_streams: 256,
            stream_window: 1 << 20,
            connection_window: 1 << 20,
            max_reset_streams: 20,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![DEFAULT_LISTEN],
            threads: 0,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
            drain_timeout: Duration::from_secs(30),
            client_header_timeout: Duration::from_secs(10),
            client_keepalive_timeout: Duration::from_secs(60),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            trusted_proxies: Vec::new(),
            proxy_protocol: crate::ProxyProtocol::Off,
            proxy_protocol_timeout: crate::DEFAULT_PROXY_PROTOCOL_TIMEOUT,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
            upstream_keepalive_timeout: Duration::from_secs(60),
            upstream_keepalive: 1024,
            fail_threshold: 3,
            fail_timeout: Duration::from_secs(10),
            fail_timeout_max: Duration::from_secs(300),
            max_ejected_percent: 50,
            max_registered_backends: 64,
            metrics_interval: Duration::from_secs(1),
            metrics_timeout: Duration::from_millis(500),
            metrics_max_age: Duration::from_secs(5),
            health_interval: Duration::from_secs(2),
            health_timeout: Duration::from_secs(1),
            health_rise: 2,
            health_fall: 3,
            health_jitter: 10,
            retries: 1,
            retry_budget: 20,
            config_history: 10,
            h2: H2Settings::default(),
            websocket_max_frame: DEFAULT_WEBSOCKET_MAX_FRAME,
            accept: AcceptSettings::default(),
            observe: crate::ObserveSettings::default(),
            traffic: crate::TrafficSettings::default(),
            admin_token_file: None,
            admin_max_failures: crate::security::DEFAULT_ADMIN_MAX_FAILURES,
            admin_block_time: crate::security::DEFAULT_ADMIN_BLOCK_TIME,
            admin_sessions: Default::default(),
            audit: Default::default(),
        }
    }
}

/// A `[backend NAME]` section: one upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The section's name, referenced by routes' `backends`.
    pub name: String,
    /// `address`: where to connect.
    pub address: Address,
    /// `weight`: relative share of traffic, 1..=10000.
    pub weight: u32,
    /// `metrics`: where the engine's Prometheus figures are scraped from, if anywhere.
    pub metrics: Option<MetricsEndpoint>,
    /// `models`: the models (and versions) this backend serves; empty = not declared.
    pub models: Vec<ModelId>,
    /// `health`: the active health check, if any.
    pub health: Option<HealthCheck>,
    /// `protocol`: how requests are sent to this backend.
    pub protocol: BackendProtocol,
    /// `tls = true` (with `tls_ca`, `tls_server_name`): connections to the backend use TLS.
    pub tls: Option<BackendTls>,
}

/// TLS to a backend: `tls = true`, and how its certificate is verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendTls {
    /// `tls_ca`: a PEM file of the certificate authorities that may have issued the
    /// backend's certificate; `None`: the system's trusted roots.
    pub ca: Option<String>,
    /// `tls_server_name`: the name sent in SNI and checked against the certificate; `None`:
    /// the host of `address` (a name, or an IP address checked as such).
    pub server_name: Option<String>,
}

/// A `[backend NAME]` section's `protocol`: what the proxy speaks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum BackendProtocol {
    /// `http1`: HTTP/1.1 over a pool of keep-alive connections (the default).
    #[default]
    Http1,
    /// `h2c`: HTTP/2 with prior knowledge, every request a stream of one multiplexed
    /// connection per reactor thread. Needed for gRPC (trailers).
    H2c,
}

impl std::fmt::Display for BackendProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendProtocol::Http1 => "http1",
            BackendProtocol::H2c => "h2c",
        })
    }
}

impl std::str::FromStr for BackendProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http1" => Ok(BackendProtocol::Http1),
            "h2c" => Ok(BackendProtocol::H2c),
            _ => Err("expected `http1` or `h2c`".to_string()),
        }
    }
}

/// A model a backend serves: `name` or `name@version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelId {
    /// The model's name, as clients send it in `model`.
    pub name: String,
    /// Its version, if declared.
    pub version: Option<String>,
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl std::str::FromStr for ModelId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-/:+".contains(&b))
        };
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        if !ok(name) || version.is_some_and(|v| !ok(v)) {
            return Err(format!(
                "`{s}` is not a model id: expected NAME or NAME@VERSION of letters, digits \
                 and . _ - / : +"
            ));
        }
        Ok(ModelId {
            name: name.to_string(),
            version: version.map(str::to_string),
        })
    }
}

/// A backend's `metrics` endpoint: a path on the backend's own address (`/metrics`), or a full
/// `http://host:port/path` URL (an exporter elsewhere, e.g. NVIDIA's DCGM exporter); and the
/// progress check its figures feed, which exists only where `metrics` does.
///
/// Its `Display` and `FromStr` are the `metrics` value alone; `progress_timeout` is the
/// backend's `progress_timeout` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsEndpoint {
    /// Where to connect; `None` means the backend's `address`.
    pub address: Option<Address>,
    /// The request path, starting with `/`.
    pub path: String,
    /// `progress_timeout`: with requests running, the engine's generated-token counter must
    /// advance within this, or the backend is taken out of rotation. `None`: no progress
    /// check.
    pub progress_timeout: Option<Duration>,
}

impl std::fmt::Display for MetricsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.address {
            Some(a) => write!(f, "http://{a}{}", self.path),
            None => write!(f, "{}", self.path),
        }
    }
}

impl std::str::FromStr for MetricsEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let path_ok = |p: &str| p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic());
        if path_ok(s) {
            return Ok(MetricsEndpoint {
                address: None,
                path: s.to_string(),
                progress_timeout: None,
            });
        }
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            "expected a path such as /metrics or a URL such as http://10.0.0.5:9400/metrics \
             (https is not supported for scraping)"
                .to_string()
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        if !path_ok(path) {
            return Err(format!("`{path}` is not a valid path"));
        }
        Ok(MetricsEndpoint {
            address: Some(authority.parse()?),
            path: path.to_string(),
            progress_timeout: None,
        })
    }
}

/// A `[route NAME]` section: which requests go to which backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// The section's name.
    pub name: String,
    /// `host`: lowercase host names (or `*.domain` wildcards) this route matches; empty means
    /// any host.
    pub hosts: Vec<String>,
    /// `path_prefix`: request paths starting with this match; starts with `/`.
    pub path_prefix: String,
    /// `backends`: names of the backends to balance over; no duplicates; non-empty unless
    /// `discovery` is on.
    pub backends: Vec<String>,
    /// `discovery`: whether backends registered through the admin API may join this route.
    pub discovery: bool,
    /// `versions`: per model, which version serves requests that name none.
    pub versions: Vec<crate::versions::ModelVersions>,
    /// `balancer`: the balancing algorithm's registered name.
    pub balancer: String,
    /// `hash_key`: what `balancer = consistent_hash` hashes to keep a client on one backend.
    pub hash_key: HashKey,
    /// `explain`: add an `x-switchyard-route` response header saying why the backend was picked.
    pub explain: bool,
    /// `max_websockets`: WebSocket tunnels open at once on this route; 0 refuses upgrades.
    pub max_websockets: u32,
    /// `websocket_max_frame`: this route's WebSocket frame limit in bytes (0 = none); `None`
    /// takes the `[server]` value.
    pub websocket_max_frame: Option<usize>,
    /// The rewrite keys (`strip_prefix`, `rewrite_path`, `add_prefix`, `*_header_*`,
    /// `host_rewrite`); the default rewrites nothing.
    pub rewrite: crate::rewrite::RewriteConfig,
    /// The `plugins`, `mirror` and `cache*` keys.
    pub traffic: crate::traffic::RouteTraffic,
}

impl RouteConfig {
    /// The WebSocket frame limit that applies on this route under `server` (0 = none).
    pub fn websocket_max_frame(&self, server: &ServerConfig) -> usize {
        self.websocket_max_frame
            .unwrap_or(server.websocket_max_frame)
    }
}

/// The request property that `consistent_hash` keeps on one backend (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    /// `client_ip`: the client's address (the default).
    #[default]
    ClientIp,
    /// `header:NAME`: a request header's value (lowercase name), e.g. a session id.
    Header(String),
    /// `cookie:NAME`: a cookie's value.
    Cookie(String),
    /// `json:FIELD`: a field of the JSON request body (`user`, or a dotted path such as
    /// `metadata.session_id`); strings and numbers are hashed as written.
    Json(String),
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::ClientIp => write!(f, "client_ip"),
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
            HashKey::Json(n) => write!(f, "json:{n}"),
        }
    }
}

/// A dotted path of JSON field names: `user`, `metadata.session_id`.
fn json_path(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 256
        && p.split('.').all(|f| {
            !f.is_empty()
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

impl std::str::FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let token = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        match s.split_once(':') {
            None if s == "client_ip" => Ok(HashKey::ClientIp),
            Some(("header", n)) if token(n) => Ok(HashKey::Header(n.to_ascii_lowercase())),
            Some(("cookie", n)) if token(n) => Ok(HashKey::Cookie(n.to_string())),
            Some(("json", n)) if json_path(n) => Ok(HashKey::Json(n.to_string())),
            _ => Err(
                "expected `client_ip`, `header:NAME`, `cookie:NAME` (NAME an HTTP token, \
                 e.g. header:x-session-id) or `json:FIELD` (e.g. json:user or \
                 json:metadata.session_id)"
                    .to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HashKey;

    #[test]
    fn hash_keys_parse_and_print() {
        for (text, key) in [
            ("client_ip", HashKey::ClientIp),
            (
                "header:x-session-id",
                HashKey::Header("x-session-id".into()),
            ),
            ("cookie:SID", HashKey::Cookie("SID".into())),
        ] {
            assert_eq!(text.parse::<HashKey>(), Ok(key.clone()));
            assert_eq!(key.to_string(), text);
        }
        assert_eq!(
            "header:X-User".parse::<HashKey>(),
            Ok(HashKey::Header("x-user".into()))
        );
        assert_eq!(
            "json:metadata.session_id".parse::<HashKey>(),
            Ok(HashKey::Json("metadata.session_id".into()))
        );
        for bad in [
            "",
            "ip",
            "header:",
            "header:a b",
            "cookie:a;b",
            "json:",
            "json:a..b",
            "json:.a",
        ] {
            assert!(bad.parse::<HashKey>().is_err(), "{bad}");
        }
    }
}
