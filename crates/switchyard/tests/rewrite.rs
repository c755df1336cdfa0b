//! Route rewrites end to end: path rules (strip, regex, add) and request header and host
//! rules checked at a real backend that echoes what it received; response header rules
//! checked at the client; the query string kept; a path the rules break refused with 500;
//! a reload changing a rule; and the `switchyard` binary reading the keys from an INI file.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use support::binary::Binary;
use support::body::empty;
use support::client::{self, Client};
use support::proxy;
use support::reload::{apply, edited, post, running};
use support::server::{self, echoed_headers, respond};
use switchyard_config::RewriteConfig;

/// The rewrite keys of `lines` (INI `key = value` lines), parsed as the config file would be.
fn rules(lines: &str) -> RewriteConfig {
    let text = format!("[backend a]\naddress = h:1\n[route r]\nbackends = a\n{lines}\n");
    let config = switchyard_config::parse(&text, "t.ini").expect("valid rules");
    config.routes[0].rewrite.clone()
}

/// Sends `GET path` with `Host: host` and extra `headers`; the answer.
async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> client::Answer {
    let mut req = http::Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", host);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    Client::connect(addr)
        .await
        .request(req.body(empty()).unwrap())
        .await
}

/// Each case is a route on its own host: (rules, request target, target the backend sees).
const PATH_CASES: &[(&str, &str, &str)] = &[
    (
        "strip_prefix = /api",
        "/api/v1/chat?x=1&y=%20",
        "/v1/chat?x=1&y=%20",
    ),
    ("strip_prefix = /api", "/api", "/"),
    ("strip_prefix = /api", "/apix/y", "/apix/y"),
    ("add_prefix = /v2", "/chat?q=a", "/v2/chat?q=a"),
    (
        "rewrite_path = ^/models/(?P<m>[^/]+)/generate$ /v1/engines/${m}/completions",
        "/models/llama-3/generate?stream=1",
        "/v1/engines/llama-3/completions?stream=1",
    ),
    (
        "rewrite_path = ^/models/(?P<m>[^/]+)/generate$ /v1/engines/${m}/completions",
        "/models/llama-3/other",
        "/models/llama-3/other",
    ),
    (
        "strip_prefix = /api\nrewrite_path = ^/old/(.*)$ /new/$1\nadd_prefix = /v3",
        "/api/old/x?k=v",
        "/v3/new/x?k=v",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_reach_the_backend_with_the_query_kept() {
    let backend = server::echo().await;
    let mut b = proxy::new().backend("echo", backend.addr());
    for (i, (lines, _, _)) in PATH_CASES.iter().enumerate() {
        let host = format!("c{i}.test");
        b = b.host_route(&format!("c{i}"), &[&host], "/", &["echo"], "round_robin");
        let r = rules(lines);
        b = b.rewrite(|w| *w = r);
    }
    let p = b.start();
    for (i, (lines, target, want)) in PATH_CASES.iter().enumerate() {
        let a = get(p.addr(), &format!("c{i}.test"), target, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{lines}: {}", a.text());
        assert_eq!(a.json()["uri"], *want, "{lines} on {target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_host_rules_reach_the_backend_before_the_forwarding_headers() {
    let backend = server::echo().await;
    let p = proxy::new()
        .backend("echo", backend.addr())
        .host_route("r", &["public.example"], "/", &["echo"], "round_robin")
        .rewrite(|w| {
            *w = rules(
                "request_header_remove = x-secret, x-forwarded-for\n\
                 request_header_set = x-tenant: blue; x-forwarded-proto: ftp\n\
                 request_header_add = x-tag: one; x-tag: two\n\
                 host_rewrite = api.internal:8000",
            )
        })
        .start();
    // Routed on the client's host: the rewritten one matches no route.
    let a = get(
        p.addr(),
        "public.example",
        "/v1/chat",
        &[
            ("x-secret", "s3cret"),
            ("x-tenant", "red"),
            ("x-tag", "zero"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let doc = a.json();
    assert!(echoed_headers(&doc, "x-secret").is_empty());
    assert_eq!(echoed_headers(&doc, "x-tenant"), ["blue"]);
    assert_eq!(echoed_headers(&doc, "x-tag"), ["zero", "one", "two"]);
    assert_eq!(echoed_headers(&doc, "host"), ["api.internal:8000"]);
    // The forwarding headers come last: the spoofed address was removed by the rule, and
    // the proxy's own values stand.
    assert_eq!(echoed_headers(&doc, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_headers(&doc, "x-forwarded-proto"), ["http"]);
    let routed = get(p.addr(), "api.internal:8000", "/v1/chat", &[]).await;
    assert_eq!(routed.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_rules_apply_to_backend_responses_not_to_the_proxys_errors() {
    let backend = server::serve(|_req| async {
        let mut r = respond(StatusCode::OK, "hello");
        let h = r.headers_mut();
        h.insert("x-internal", "node-7".parse().unwrap());
        h.insert("cache-control", "max-age=60".parse().unwrap());
        r
    })
    .await;
    let p = proxy::new()
        .backend("b", backend.addr())
        .route("r", "/", &["b"], "round_robin")
        .rewrite(|w| {
            *w = rules(
                "rewrite_path = ^/broken/(.*)$ $1\n\
                 response_header_remove = x-internal\n\
                 response_header_set = cache-control: no-store\n\
                 response_header_add = x-served-by: switchyard",
            )
        })
        .start();
    let a = get(p.addr(), "test.local", "/ok", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "hello");
    assert_eq!(a.header("x-internal"), None);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("x-served-by"), Some("switchyard"));
    assert!(a.header("via").unwrap().contains("switchyard"));
    assert_eq!(backend.requests(), 1);

    // `$1` alone makes a path without a leading `/`: refused, the backend untouched, and the
    // proxy's own error left as it is.
    let broken = get(p.addr(), "test.local", "/broken/x?q=1", &[]).await;
    assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(broken.proxy_error(), Some("rewrite_failed"));
    assert_eq!(broken.header("x-served-by"), None);
    assert_eq!(backend.requests(), 1);
    p.expect_errors("rewrite_failed", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_rules_for_the_next_request() {
    let backend = server::echo().await;
    let p = proxy::new()
        .backend("echo", backend.addr())
        .route("r", "/", &["echo"], "round_robin")
        .rewrite(|w| *w = rules("add_prefix = /v1"))
        .start();
    let a = get(p.addr(), "test.local", "/x?k=1", &[]).await;
    assert_eq!(a.json()["uri"], "/v1/x?k=1");

    let ini = edited(&p, |c| {
        c.routes[0].rewrite = rules("add_prefix = /v2\nresponse_header_add = x-gen: 2")
    });
    assert!(ini.contains("add_prefix = /v2\n"), "{ini}");
    apply(&p, ini).await;
    assert_eq!(
        running(&p).routes[0].rewrite.add_prefix.as_deref(),
        Some("/v2")
    );
    let b = get(p.addr(), "test.local", "/x?k=1", &[]).await;
    assert_eq!(b.json()["uri"], "/v2/x?k=1");
    assert_eq!(b.header("x-gen"), Some("2"));

    // Removing the rules: requests pass as sent.
    apply(
        &p,
        edited(&p, |c| c.routes[0].rewrite = RewriteConfig::default()),
    )
    .await;
    let c = get(p.addr(), "test.local", "/x?k=1", &[]).await;
    assert_eq!(c.json()["uri"], "/x?k=1");
    assert_eq!(c.header("x-gen"), None);
}

#[tokio::test]
async fn a_config_read_and_posted_back_keeps_its_redacted_credentials() {
    let backend = server::echo().await;
    let p = proxy::new()
        .backend("echo", backend.addr())
        .route("r", "/", &["echo"], "round_robin")
        .rewrite(|w| {
            *w = rules("request_header_set = x-tenant: blue; authorization: Bearer s3cret")
        })
        .start();
    let shown = client::get(p.admin_addr(), "/admin/config").await.text();
    assert!(
        shown.contains("authorization: <redacted>") && !shown.contains("s3cret"),
        "{shown}"
    );
    // Edited elsewhere (another rule added), posted back as a whole.
    let posted = shown.replace(
        "request_header_set =",
        "add_prefix = /v9\nrequest_header_set =",
    );
    let (status, doc) = post(&p, "/admin/config", posted, None).await;
    assert_eq!(status, 200, "{doc:#}");
    let a = get(p.addr(), "test.local", "/x", &[]).await;
    let doc = a.json();
    assert_eq!(doc["uri"], "/v9/x");
    assert_eq!(echoed_headers(&doc, "authorization"), ["Bearer s3cret"]);
    assert_eq!(echoed_headers(&doc, "x-tenant"), ["blue"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_applies_rules_from_its_config_file() {
    let backend = server::echo().await;
    let listen = server::dead_addr();
    let path = proxy::temp_path("rewrite.ini");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = {listen}\nthreads = 1\nadmin_listen = off\n\n\
             [backend b]\naddress = {}\n\n\
             [route api]\npath_prefix = /api/\nbackends = b\n\
             strip_prefix = /api\n\
             rewrite_path = ^/chat$ /v1/chat/completions\n\
             request_header_set = x-route: api\n\
             host_rewrite = engine.internal\n\
             response_header_add = x-rewritten: yes\n",
            backend.addr()
        ),
    )
    .unwrap();
    let mut proc = Binary::run_file(&path);
    proc.listening(listen).await;
    let a = get(listen, "public.example", "/api/chat?stream=true", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let doc = a.json();
    assert_eq!(doc["uri"], "/v1/chat/completions?stream=true");
    assert_eq!(echoed_headers(&doc, "x-route"), ["api"]);
    assert_eq!(echoed_headers(&doc, "host"), ["engine.internal"]);
    assert_eq!(a.header("x-rewritten"), Some("yes"));
}
