//! switchyard's configuration: INI text to a typed, validated [`Config`], rendered back to INI
//! with [`Config::to_ini`], summarised with [`Config::summary`] and compared with [`diff`].
//!
//! The crate does no I/O: the caller reads the file and passes its text and name to [`parse`],
//! which reports every problem in the file at once (see [`ConfigErrors`]).
//!
//! ```
//! let text = "\
//! [server]
//! listen = 0.0.0.0:8080
//!
//! [backend llama-a]
//! address = 10.0.0.1:8000
//!
//! [route chat]
//! path_prefix = /v1/
//! backends = llama-a
//! ";
//! let config = switchyard_config::parse(text, "switchyard.ini").unwrap();
//! assert_eq!(config.backend("llama-a").unwrap().weight, 1);
//! assert_eq!(switchyard_config::parse(&config.to_ini(), "again.ini"), Ok(config));
//! ```
//!
//! The file format is described in `docs/config.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acl;
mod address;
mod alert;
mod budget;
mod diff;
mod error;
mod health;
mod ini;
mod limit;
mod listener;
mod model;
mod observe;
mod parse;
mod proxy_protocol;
mod reader;
pub mod reload;
mod render;
mod rewrite;
mod sections;
mod security;
mod suggest;
mod summary;
mod traffic;
pub mod value;
pub mod versions;

pub use acl::{AclAction, AclConfig, AclRule, Cidr, MAX_ACL_RULES};
pub use address::Address;
pub use alert::{
    default_alerts, AlertComparison, AlertConfig, AlertSeverity, BACKEND_FIELDS, GLOBAL_SERIES,
};
pub use budget::{
    BudgetConfig, DEFAULT_BUDGET_MAX_TOKENS, MAX_BUDGET_MAX_TOKENS, MAX_BUDGET_MODELS,
    MAX_BUDGET_TOKENS,
};
pub use diff::{diff, Change};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use health::MAX_BODY_SUBSTRING;
pub use limit::{
    LimitConfig, LimitKey, Rate, DEFAULT_LIMIT_MAX_KEYS, MAX_LIMIT_BURST, MAX_LIMIT_KEYS,
};
pub use listener::{
    Fallback, ListenerConfig, Protocols, SniCertificate, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    DEFAULT_TLS_RELOAD_INTERVAL, MAX_SNI_CERTIFICATES,
};
pub use model::{
    AcceptSettings, BackendConfig, BackendProtocol, BackendTls, Config, H2Settings, HashKey,
    HealthCheck, L4Config, L4Protocol, MetricsEndpoint, ModelId, RouteConfig, ServerConfig,
    DEFAULT_L4_IDLE_TIMEOUT, DEFAULT_UDP_IDLE_TIMEOUT, DEFAULT_UDP_MAX_DATAGRAM,
    DEFAULT_UDP_MAX_SESSIONS, DEFAULT_WEBSOCKET_MAX_FRAME,
};
pub use observe::{
    ObserveSettings, WebhookUrl, MAX_HISTORY_ROWS, MAX_HISTORY_WINDOW, MAX_WEBHOOK_RETRIES,
    MIN_HISTORY_INTERVAL,
};
pub use parse::parse;
pub use proxy_protocol::{ProxyProtocol, DEFAULT_PROXY_PROTOCOL_TIMEOUT};
pub use rewrite::{HeaderRules, PathRewrite, RewriteConfig};
pub use security::{
    AdminSessions, AuditSettings, AUDIT_MAX_AGE, AUDIT_MAX_BYTES_RANGE, AUDIT_MAX_KEEP,
    AUDIT_QUEUE_RANGE, DEFAULT_ADMIN_BLOCK_TIME, DEFAULT_ADMIN_MAX_FAILURES,
};
pub use traffic::{
    MirrorConfig, PluginConfig, RouteCache, RouteTraffic, TrafficSettings, DEFAULT_CACHE_MAX_BYTES,
    DEFAULT_CACHE_MAX_OBJECT, DEFAULT_CACHE_MAX_TTL, DEFAULT_MIRROR_MAX_BODY,
    DEFAULT_MIRROR_MAX_IN_FLIGHT,
};

impl Config {
    /// Renders the config as INI text; `parse(&c.to_ini(), f) == Ok(c)` for every config `c`
    /// that [`parse`] returned. Every `[server]` key is written out explicitly.
    pub fn to_ini(&self) -> String {
        render::to_ini(self)
    }

    /// A few human-readable lines describing the config, like `nginx -t`: the listeners,
    /// threads, admin endpoint, each backend (name, address, weight), each route (hosts and
    /// path prefix -> backends via balancer) and each L4 listener (protocol and address ->
    /// backends via balancer). No trailing newline.
    pub fn summary(&self) -> String {
        summary::summary(self)
    }
}
