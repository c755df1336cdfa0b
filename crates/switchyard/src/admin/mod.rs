//! The admin listener: `GET /stats` (JSON), `GET /metrics` (Prometheus), `GET /history` and
//! `GET /admin/alerts` (see [`observe`]), `GET /healthz`, the service-discovery API
//! (`/admin/backends`, see [`backends`]), the config API (`/admin/config`, see
//! [`config`]), the diagnostics (`/admin/diagnose` as JSON, see [`diagnose`]) and the web pages (`/dashboard`, `/admin/diagnose`, `/admin/config/ui`, see
//! [`ui`], signed in to through [`login`]), on its own thread and runtime so
//! that reading statistics never competes with the data plane's event loops.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::observe::report::stats_json;

pub mod auth;
pub mod backends;
pub mod config;
pub mod diagnose;
pub mod form;
pub mod login;
pub mod observe;
pub mod session;
pub mod ui;
use crate::server::Shared;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Answers one admin request from `client`: `/healthz` is open; anything else needs the
/// admin token when one is configured.
pub async fn handle(
    shared: &Shared,
    client: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Open to all: the health check, the pages' stylesheet and scripts, signing in.
    if path == "/healthz" {
        return respond(StatusCode::OK, "text/plain", "ok\n");
    }
    if let Some(name) = path.strip_prefix("/ui/") {
        return asset(&method, name);
    }
    if path == "/admin/login" || path == "/admin/logout" {
        return login::handle(shared, client, req).await;
    }
    let signed_in = match authenticate(shared, client, &method, &req) {
        Ok(signed_in) => signed_in,
        Err(refused) => return *refused,
    };
    if method == Method::GET || method == Method::HEAD {
        if path == "/" {
            return login::redirect("/dashboard", None);
        }
        if let Some(page) = ui::page_for(&path, accepts_html(req.headers())) {
            return login::html(StatusCode::OK, ui::render(page, signed_in));
        }
    }
    if let Some(rest) = path.strip_prefix("/admin/backends") {
        return discovery(shared, client, method, rest, req).await;
    }
    if let Some(rest) = path.strip_prefix("/admin/config") {
        let query = req.uri().query().map(str::to_string);
        let (status, content_type, body) = config::handle(
            shared,
            client,
            &method,
            rest,
            query.as_deref(),
            req.into_body(),
        )
        .await;
        return respond(status, content_type, body);
    }
    if path == "/admin/cache/purge" {
        if method != Method::POST {
            return respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "POST /admin/cache/purge[?host=H][&path=PREFIX]\n",
            );
        }
        let query = req.uri().query().unwrap_or("");
        let host = form::param(query, "host").filter(|h| !h.is_empty());
        let prefix = form::param(query, "path").filter(|p| !p.is_empty());
        let purged = shared.cache.purge(host.as_deref(), prefix.as_deref());
        tracing::info!(purged, host = ?host, path = ?prefix, "response cache purged");
        return json_reply(StatusCode::OK, &serde_json::json!({ "purged": purged }));
    }
    if path == "/admin/diagnose" {
        let (status, body) = diagnose::handle(shared, &method, req.uri().query()).await;
        return json_reply(status, &body);
    }
    if method != Method::GET && method != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match path.as_str() {
        "/stats" => json_reply(StatusCode::OK, &stats_json(shared)),
        "/metrics" => respond(
            StatusCode::OK,
            crate::observe::exposition::CONTENT_TYPE,
            crate::observe::metrics::render(shared),
        ),
        "/history" => {
            let (status, body) = observe::history(shared, req.uri().query().unwrap_or(""));
            json_reply(status, &body)
        }
        "/admin/alerts" => {
            let (status, body) = observe::alerts(shared);
            json_reply(status, &body)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /dashboard, /stats, /metrics, /history, /healthz, /admin/alerts, /admin/diagnose or /admin/backends\n",
        ),
    }
}

/// `/ui/{name}`: the pages' stylesheet and scripts.
fn asset(method: &Method, name: &str) -> Response<Full<Bytes>> {
    match ui::asset(name) {
        Some(_) if method != Method::GET && method != Method::HEAD => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        ),
        Some((content_type, body)) => {
            let mut r = respond(StatusCode::OK, content_type, body);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            r.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                header::HeaderValue::from_static("nosniff"),
            );
            r
        }
        None => respond(StatusCode::NOT_FOUND, "text/plain", "no such file\n"),
    }
}

/// Whether the client takes HTML (a browser navigating, not a script asking for JSON).
fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// Lets a request through (`Ok(true)` when by a session cookie) or answers it: a bearer token
/// is checked as always; without one a live session cookie will do (a request that changes
/// state must then also carry [`session::UI_HEADER`]); a browser asking for a page without
/// either is sent to sign in.
fn authenticate(
    shared: &Shared,
    client: std::net::IpAddr,
    method: &Method,
    req: &Request<Incoming>,
) -> Result<bool, Box<Response<Full<Bytes>>>> {
    let headers = req.headers();
    let path = req.uri().path();
    if shared.admin_auth.token.is_some() && crate::audit::bearer(headers).is_none() {
        let now = std::time::Duration::from_millis(shared.clock.now_ms());
        if let Some(id) = session::cookie(headers) {
            if shared.admin_auth.sessions.valid(id, now) {
                let safe = method == Method::GET || method == Method::HEAD;
                if !safe && headers.get(session::UI_HEADER).is_none_or(|v| v != "1") {
                    return Err(Box::new(respond(
                        StatusCode::FORBIDDEN,
                        "text/plain",
                        "a request signed in by cookie that changes state must carry x-switchyard-ui: 1\n",
                    )));
                }
                return Ok(true);
            }
        }
        let page = path == "/" || ui::page_for(path, accepts_html(headers)).is_some();
        if page && (method == Method::GET || method == Method::HEAD) {
            let target = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
            return Err(Box::new(login::to_sign_in(target)));
        }
    }
    match authorize(shared, client, method, path, headers) {
        None => Ok(false),
        Some(refused) => Err(Box::new(refused)),
    }
}

/// `None` if the request may go on, else the 401 or 429 to answer (the failure audited).
fn authorize(
    shared: &Shared,
    client: std::net::IpAddr,
    method: &Method,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    let now = std::time::Duration::from_millis(shared.clock.now_ms());
    let verdict = shared
        .admin_auth
        .check(client, crate::audit::bearer(headers), now);
    let mut resp = match verdict {
        auth::Verdict::Allow => return None,
        auth::Verdict::Unauthorized { blocked } => {
            let presented = headers.contains_key(header::AUTHORIZATION);
            audit_auth_failure(shared, client, method.as_str(), path, presented, blocked);
            tracing::warn!(%client, path, "admin request refused: missing or wrong bearer token");
            let mut r = respond(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "admin token required: Authorization: Bearer <token>\n",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"switchyard-admin\""),
            );
            r
        }
        auth::Verdict::Blocked(secs) => {
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain",
                "too many failed admin attempts; retry later\n",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            r
        }
    };
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Some(resp)
}

/// The `admin_auth_failed` audit line: who, what they asked for, whether they presented a
/// token (never the token), and whether this failure blocked them.
pub(crate) fn audit_auth_failure(
    shared: &Shared,
    client: std::net::IpAddr,
    method: &str,
    path: &str,
    token_presented: bool,
    now_blocked: bool,
) {
    shared.audit.control(
        "admin_auth_failed",
        Some(client.to_string()),
        serde_json::json!({
            "method": method,
            "path": path,
            "token_presented": token_presented,
            "now_blocked": now_blocked,
        }),
    );
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

/// `/admin/backends[/{id}[/heartbeat]]`; `rest` is the path after `/admin/backends`.
async fn discovery(
    shared: &Shared,
    client: std::net::IpAddr,
    method: Method,
    rest: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (status, body) = match (&method, segments.as_slice()) {
        (&Method::GET, []) => backends::list(shared),
        (&Method::POST, []) => {
            match Limited::new(req.into_body(), backends::MAX_BODY)
                .collect()
                .await
            {
                Ok(body) => backends::register(shared, &body.to_bytes()).await,
                Err(_) => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    serde_json::json!({"error": format!(
                        "registration body larger than {} bytes, or unreadable",
                        backends::MAX_BODY
                    )}),
                ),
            }
        }
        (&Method::PUT, [id, "heartbeat"]) => backends::heartbeat(shared, id),
        (&Method::DELETE, [id]) => backends::remove(shared, id),
        _ => (
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "use GET or POST /admin/backends, PUT /admin/backends/{id}/heartbeat, DELETE /admin/backends/{id}"}),
        ),
    };
    let action = match (&method, status) {
        (&Method::POST, StatusCode::CREATED) => Some("backend_registered"),
        (&Method::POST, StatusCode::OK) => Some("backend_updated"),
        (&Method::DELETE, StatusCode::OK) => Some("backend_removed"),
        _ => None,
    };
    if let Some(action) = action {
        let detail = serde_json::json!({
            "backend": body.get("name").or_else(|| body.get("removed")),
            "address": body.get("address"),
            "models": body.get("models"),
        });
        shared
            .audit
            .control(action, Some(client.to_string()), detail);
    }
    json_reply(status, &body)
}

/// Runs the admin listener until shutdown.
pub fn run(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "admin: cannot build runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "admin: cannot register listener");
                return;
            }
        };
        let expiry = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { backends::expiry_loop(&shared).await })
        };
        let _expiry = AbortOnDrop(expiry);
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|v| *v) => return,
                r = listener.accept() => {
                    let Ok((stream, peer)) = r else { continue };
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let shared = Arc::clone(&shared);
                            async move { Ok::<_, Infallible>(handle(&shared, peer.ip(), req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
}

/// Aborts a task when dropped (the admin runtime's background work ends with it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
