//! Signing in to the admin pages: `GET /admin/login` (the form), `POST /admin/login` (the
//! token for a session cookie, then back to the page asked for) and `POST /admin/logout`.
//! A wrong token counts as a failed admin attempt like a wrong bearer token (and blocks the
//! client the same way). See [`super::session`].

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::auth::Verdict;
use super::form::param;
use super::session;
use super::ui;
use crate::server::Shared;

/// The largest sign-in form read.
const MAX_FORM: usize = 4096;
/// Where a sign-in goes when the form names nowhere (or somewhere not on this server).
const HOME: &str = "/dashboard";

/// A page of HTML with the admin pages' security headers.
pub fn html(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = super::respond(status, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(ui::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

/// A `303 See Other` to `location` (a local path).
pub fn redirect(location: &str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut r = super::respond(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Sends a browser that asked for `path_and_query` without a session to the sign-in page.
pub fn to_sign_in(path_and_query: &str) -> Response<Full<Bytes>> {
    let next: String = path_and_query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    redirect(&format!("/admin/login?next={next}"), None)
}

fn next_of(value: Option<String>) -> String {
    value
        .filter(|n| session::local_path(n))
        .unwrap_or_else(|| HOME.to_string())
}

/// `/admin/login` and `/admin/logout`.
pub async fn handle(
    shared: &Shared,
    client: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let auth = &shared.admin_auth;
    let now = std::time::Duration::from_millis(shared.clock.now_ms());
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/admin/logout") => {
            if let Some(id) = session::cookie(req.headers()) {
                auth.sessions.remove(id);
                shared.audit.control(
                    "admin_logout",
                    Some(client.to_string()),
                    serde_json::json!({}),
                );
            }
            redirect("/admin/login", Some(session::clear_cookie()))
        }
        (Method::GET | Method::HEAD, "/admin/login") => {
            let next = next_of(param(&query, "next"));
            if auth.token.is_none() {
                return redirect(&next, None);
            }
            html(StatusCode::OK, ui::login(&next, None))
        }
        (Method::POST, "/admin/login") => {
            let form = match Limited::new(req.into_body(), MAX_FORM).collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(_) => {
                    return html(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ui::login(HOME, Some("the sign-in form is too large")),
                    )
                }
            };
            let next = next_of(param(&form, "next"));
            if auth.token.is_none() {
                return redirect(&next, None);
            }
            let token = param(&form, "token").unwrap_or_default();
            match auth.check(client, Some(token.as_bytes()), now) {
                Verdict::Allow => match auth.sessions.create(now) {
                    Some(id) => {
                        shared.audit.control(
                            "admin_login",
                            Some(client.to_string()),
                            serde_json::json!({"next": next}),
                        );
                        redirect(&next, Some(session::set_cookie(&id, auth.sessions.ttl())))
                    }
                    None => html(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        ui::login(&next, Some("no randomness available for a session id")),
                    ),
                },
                Verdict::Unauthorized { blocked } => {
                    let presented = !token.is_empty();
                    super::audit_auth_failure(
                        shared,
                        client,
                        "POST",
                        "/admin/login",
                        presented,
                        blocked,
                    );
                    tracing::warn!(%client, "admin sign-in refused: wrong token");
                    html(
                        StatusCode::UNAUTHORIZED,
                        ui::login(&next, Some("That is not the admin token.")),
                    )
                }
                Verdict::Blocked(secs) => {
                    let mut r = html(
                        StatusCode::TOO_MANY_REQUESTS,
                        ui::login(
                            &next,
                            Some(&format!("Too many failed attempts; try again in {secs} s.")),
                        ),
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    r
                }
            }
        }
        _ => super::respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET or POST /admin/login, POST /admin/logout\n",
        ),
    }
}
