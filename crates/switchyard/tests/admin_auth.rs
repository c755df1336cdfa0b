//! The admin plane's authentication: a bearer token from `admin_token_file` on every admin
//! endpoint but `/healthz`, failed attempts audited and limited per client, and no open admin
//! endpoint beyond loopback.

mod support;

use http::{Method, StatusCode};
use serde_json::Value;
use support::body::full;
use support::client::{self, get_authorized, Client};
use support::{proxy, wait_for, DEADLINE};

const TOKEN: &str = "adm-7f3c9e1b5d-secret";

/// A proxy config with one route (to a dead address: these tests talk to the admin API).
fn base() -> proxy::Builder {
    proxy::new().to(support::server::dead_addr())
}

/// The audit file's lines, parsed.
fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn every_admin_endpoint_but_healthz_needs_the_token() {
    let p = base().admin_token(TOKEN).start();
    let admin = p.admin_addr();
    for path in ["/stats", "/admin/backends"] {
        let a = get_authorized(admin, path, Some(TOKEN)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
        // The token is never echoed back.
        assert!(!a.text().contains(TOKEN));
    }
    // The builder's helpers send the token.
    assert!(p.stats().await["totals"].is_object());
    for path in ["/stats", "/admin/backends"] {
        let a = get_authorized(admin, path, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert!(
            a.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{path}"
        );
        let a = get_authorized(admin, path, Some("not-the-token")).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong token"
        );
    }
    // A registration needs the token too.
    let mut c = Client::connect(admin).await;
    let req = client::request(Method::POST, "/admin/backends")
        .body(full(r#"{"id":"x","address":"127.0.0.1:1"}"#))
        .unwrap();
    assert_eq!(c.request(req).await.status, StatusCode::UNAUTHORIZED);
    // Liveness probes stay open (even for a client blocked after 5 failures).
    assert_eq!(client::get(admin, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_loopback_stays_open() {
    let p = base().start();
    let a = client::get(p.admin_addr(), "/stats").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn failed_attempts_are_audited_without_secrets_and_limited() {
    let audit = proxy::temp_path("audit.log");
    let p = base()
        .admin_token(TOKEN)
        .server(|s| s.audit.log = Some(audit.clone()))
        .start();
    let admin = p.admin_addr();
    let wrong = "wrong-guess-0123456789";
    for i in 0..4 {
        let a = get_authorized(admin, "/stats", Some(wrong)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    // The right token still works before the limit.
    assert_eq!(
        get_authorized(admin, "/stats", Some(TOKEN)).await.status,
        StatusCode::OK
    );
    // The fifth failure within the minute blocks the client, even with the right token.
    let a = get_authorized(admin, "/admin/backends", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = get_authorized(admin, "/stats", Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // Blocked requests are refused before the token is checked, so they are not failures.
    assert_eq!(
        get_authorized(admin, "/stats", Some(wrong)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The counters, read through the (unblocked) API of the server itself.
    let auth = &p.handle().shared().admin_auth;
    assert_eq!(auth.stats_json()["auth_failures"], 5);
    assert_eq!(auth.stats_json()["auth_blocked"], 2);

    wait_for(DEADLINE, "5 audited failures", || async {
        audit_lines(&audit).len() >= 5
    })
    .await;
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(!text.contains(TOKEN), "the admin token in the audit log");
    assert!(!text.contains(wrong), "a presented token in the audit log");
    let lines = audit_lines(&audit);
    assert_eq!(lines.len(), 5, "{text}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["type"], "control");
        assert_eq!(l["action"], "admin_auth_failed");
        assert_eq!(l["client"], "127.0.0.1");
        assert!(l["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(l["detail"]["now_blocked"], i == 4);
        assert_eq!(l["detail"]["token_presented"], i < 4);
    }
    assert_eq!(lines[4]["detail"]["path"], "/admin/backends");
}

#[tokio::test]
async fn an_open_admin_endpoint_beyond_loopback_is_refused() {
    let err = base()
        .server(|s| s.admin_listen = Some("0.0.0.0:0".parse().unwrap()))
        .try_start()
        .expect_err("an unauthenticated admin endpoint on 0.0.0.0");
    let msg = err.to_string();
    assert!(
        msg.contains("0.0.0.0:0") && msg.contains("loopback") && msg.contains("admin_token_file"),
        "{msg}"
    );
    // With a token it may listen anywhere.
    let handle = base()
        .admin_token(TOKEN)
        .server(|s| s.admin_listen = Some("0.0.0.0:0".parse().unwrap()))
        .try_start()
        .expect("starts with a token");
    handle.shutdown();
}

#[tokio::test]
async fn a_missing_or_empty_token_file_is_a_start_error_naming_it() {
    let missing = proxy::temp_path("no-such.token");
    let err = base()
        .server(|s| s.admin_token_file = Some(missing.clone()))
        .try_start()
        .expect_err("missing token file");
    let msg = err.to_string();
    assert!(msg.contains("admin_token_file") && msg.contains(&*missing.to_string_lossy()));

    let empty = proxy::temp_path("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    let err = base()
        .server(|s| s.admin_token_file = Some(empty.clone()))
        .try_start()
        .expect_err("empty token file");
    let msg = err.to_string();
    assert!(
        msg.contains(&*empty.to_string_lossy()) && msg.contains("empty"),
        "{msg}"
    );
}

#[tokio::test]
async fn registrations_and_removals_are_audited() {
    let audit = proxy::temp_path("audit.log");
    let backend = support::server::fixed("ok").await;
    let p = proxy::new()
        .admin_token(TOKEN)
        .server(|s| s.audit.log = Some(audit.clone()))
        .to(backend.addr())
        .discovery()
        .start();
    let mut c = Client::connect(p.admin_addr()).await;
    let body = format!(
        r#"{{"id":"extra","address":"{}","ttl":"1m"}}"#,
        backend.addr()
    );
    let req = client::request(Method::POST, "/admin/backends")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(full(body))
        .unwrap();
    let a = c.request(req).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    let req = client::request(Method::DELETE, "/admin/backends/extra")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(support::body::empty())
        .unwrap();
    assert_eq!(c.request(req).await.status, StatusCode::OK);
    wait_for(DEADLINE, "2 control lines", || async {
        audit_lines(&audit).len() >= 2
    })
    .await;
    let lines = audit_lines(&audit);
    assert_eq!(lines[0]["action"], "backend_registered");
    assert_eq!(lines[0]["detail"]["backend"], "extra");
    assert_eq!(lines[0]["detail"]["address"], backend.addr().to_string());
    assert_eq!(lines[1]["action"], "backend_removed");
    assert_eq!(lines[1]["detail"]["backend"], "extra");
}

#[tokio::test]
async fn the_failure_limit_is_configurable() {
    let p = base()
        .admin_token(TOKEN)
        .server(|s| {
            s.admin_max_failures = 2;
            s.admin_block_time = std::time::Duration::from_secs(600);
        })
        .start();
    let admin = p.admin_addr();
    for _ in 0..2 {
        let a = get_authorized(admin, "/stats", Some("nope")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = get_authorized(admin, "/stats", Some(TOKEN)).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((590..=600).contains(&retry), "Retry-After {retry}");
}
