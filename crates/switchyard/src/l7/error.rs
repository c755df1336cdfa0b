//! Errors of the request path, each knowing its status, its stats kind and whether the request
//! may be retried on another backend.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::observe::ErrorKind;

/// A failure while proxying one request.
///
/// Whether a retry is safe lives here, in the value: only failures that happened before any
/// byte of the request was sent ([`ProxyError::is_retryable`]) may be retried elsewhere.
#[derive(Debug)]
pub enum ProxyError {
    /// No `[route]` matches the request's host and path.
    NoRoute,
    /// The route has no backend that is up.
    NoHealthyBackend {
        /// The route's name.
        route: String,
    },
    /// The TCP connection to a backend could not be opened.
    Connect {
        /// The backend's name.
        backend: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Opening the connection took longer than `upstream_connect_timeout`.
    ConnectTimeout {
        /// The backend's name.
        backend: String,
        /// The timeout in force.
        after: Duration,
    },
    /// The backend sent no response headers within `upstream_response_timeout`.
    ResponseTimeout {
        /// The backend's name.
        backend: String,
        /// The timeout in force.
        after: Duration,
    },
    /// The exchange with the backend failed after the request was (partly) sent.
    Upstream {
        /// The backend's name.
        backend: String,
        /// What went wrong.
        source: crate::upstream::conn::UpstreamError,
    },
    /// The request itself was unacceptable.
    BadRequest(&'static str),
    /// Reading the client's request body failed while it was being forwarded (the client went
    /// away mid-upload).
    ClientAborted,
    /// No backend of the route serves the requested model.
    UnknownModel {
        /// The model asked for.
        model: String,
        /// The models the route serves.
        served: Vec<String>,
    },
    /// The route has `max_websockets` tunnels open already.
    TooManyWebSockets {
        /// The route's name.
        route: String,
        /// Its limit.
        max: u32,
    },
    /// A `[limit NAME]` refused the request.
    RateLimited(Box<crate::security::Refusal>),
    /// An `[acl NAME]` (named) denied the client.
    AclDenied(std::sync::Arc<str>),
    /// A `[budget NAME]` holds fewer tokens than the request's estimate.
    BudgetExceeded(Box<crate::security::BudgetRefusal>),
    /// The route's rewrite rules made a target that is not a path.
    Rewrite {
        /// The route's name.
        route: String,
        /// What the rules made.
        source: crate::traffic::InvalidPath,
    },
    /// A plugin's callback failed (an error code, a panic, an invalid header or path).
    Plugin(Box<crate::plugin::CallError>),
}

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. } => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest(_) | ProxyError::ClientAborted => StatusCode::BAD_REQUEST,
            ProxyError::UnknownModel { .. } => StatusCode::NOT_FOUND,
            ProxyError::TooManyWebSockets { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::AclDenied(_) => StatusCode::FORBIDDEN,
            ProxyError::BudgetExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Rewrite { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Plugin(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The counter this failure increments.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::NoRoute => ErrorKind::NoRoute,
            ProxyError::NoHealthyBackend { .. } => ErrorKind::NoHealthyBackend,
            ProxyError::Connect { .. } => ErrorKind::ConnectFailed,
            ProxyError::ConnectTimeout { .. } => ErrorKind::ConnectTimeout,
            ProxyError::ResponseTimeout { .. } => ErrorKind::UpstreamTimeout,
            ProxyError::Upstream { .. } => ErrorKind::UpstreamError,
            ProxyError::BadRequest(_) => ErrorKind::BadRequest,
            ProxyError::ClientAborted => ErrorKind::ClientError,
            ProxyError::UnknownModel { .. } => ErrorKind::UnknownModel,
            ProxyError::TooManyWebSockets { .. } => ErrorKind::WebSocketLimit,
            ProxyError::RateLimited(_) => ErrorKind::RateLimited,
            ProxyError::AclDenied(_) => ErrorKind::AclDenied,
            ProxyError::BudgetExceeded(_) => ErrorKind::BudgetExceeded,
            ProxyError::Rewrite { .. } => ErrorKind::RewriteFailed,
            ProxyError::Plugin(_) => ErrorKind::PluginFailed,
        }
    }

    /// Its kind as a backend's failure (`/admin/diagnose`'s last errors); `None` when it is
    /// no backend's.
    pub fn cause(&self) -> Option<crate::upstream::errlog::Cause> {
        use crate::upstream::errlog::Cause;
        match self {
            ProxyError::Connect { source, .. } => Some(Cause::of_connect(source)),
            ProxyError::ConnectTimeout { .. } => Some(Cause::ConnectTimeout),
            ProxyError::ResponseTimeout { .. } => Some(Cause::ResponseTimeout),
            ProxyError::Upstream { source, .. } => Some(source.cause()),
            _ => None,
        }
    }

    /// What the audit line's `denied` says: the error's kind, or `budget:NAME`.
    pub fn audit_reason(&self) -> std::borrow::Cow<'static, str> {
        match self {
            ProxyError::BudgetExceeded(r) => format!("budget:{}", &*r.budget).into(),
            other => other.kind().name().into(),
        }
    }

    /// Whether the request may be sent to another backend: nothing of it has left the proxy.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. } | ProxyError::ConnectTimeout { .. }
        )
    }

    /// The short plain-text body sent to the client (no internal names or addresses).
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "404 Not Found: no route for this host and path\n",
            ProxyError::NoHealthyBackend { .. } => "503 Service Unavailable: no healthy backend\n",
            ProxyError::Connect { .. } => "502 Bad Gateway: backend connection failed\n",
            ProxyError::ConnectTimeout { .. } => "502 Bad Gateway: backend connect timed out\n",
            ProxyError::ResponseTimeout { .. } => {
                "504 Gateway Timeout: backend did not respond in time\n"
            }
            ProxyError::Upstream { .. } => {
                "502 Bad Gateway: backend closed or reset the connection\n"
            }
            ProxyError::BadRequest(_) | ProxyError::ClientAborted => "400 Bad Request\n",
            ProxyError::UnknownModel { .. } => "404 Not Found: unknown model\n",
            ProxyError::TooManyWebSockets { .. } => {
                "503 Service Unavailable: too many WebSocket connections\n"
            }
            ProxyError::RateLimited(_) => "429 Too Many Requests: rate limit reached\n",
            ProxyError::AclDenied(_) => "403 Forbidden\n",
            ProxyError::BudgetExceeded(_) => "429 Too Many Requests: token budget exhausted\n",
            ProxyError::Rewrite { .. } => {
                "500 Internal Server Error: the route's rewrite rules made an invalid path\n"
            }
            ProxyError::Plugin(_) => "500 Internal Server Error: a plugin failed\n",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NoRoute => write!(f, "no route matches the request"),
            ProxyError::NoHealthyBackend { route } => {
                write!(f, "route {route:?}: no healthy backend")
            }
            ProxyError::Connect { backend, source } => {
                write!(f, "backend {backend:?}: connect failed: {source}")
            }
            ProxyError::ConnectTimeout { backend, after } => {
                write!(f, "backend {backend:?}: connect timed out after {after:?}")
            }
            ProxyError::ResponseTimeout { backend, after } => {
                write!(
                    f,
                    "backend {backend:?}: no response headers within {after:?}"
                )
            }
            ProxyError::Upstream { backend, source } => {
                write!(f, "backend {backend:?}: {source}")
            }
            ProxyError::BadRequest(why) => write!(f, "bad request: {why}"),
            ProxyError::ClientAborted => write!(f, "the client's request body broke off"),
            ProxyError::UnknownModel { model, .. } => write!(f, "unknown model {model:?}"),
            ProxyError::TooManyWebSockets { route, max } => {
                write!(
                    f,
                    "route {route:?}: {max} WebSocket tunnels open (max_websockets)"
                )
            }
            ProxyError::RateLimited(r) => write!(f, "rate limit {:?} reached", &*r.limit),
            ProxyError::AclDenied(acl) => write!(f, "denied by acl {:?}", &**acl),
            ProxyError::BudgetExceeded(r) => write!(
                f,
                "token budget {:?}: {} tokens left, {} estimated",
                &*r.budget, r.remaining, r.estimate
            ),
            ProxyError::Rewrite { route, source } => write!(f, "route {route:?}: {source}"),
            ProxyError::Plugin(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ProxyError {}
