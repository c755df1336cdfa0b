//! Routing: by host (case and port ignored, wildcards), then the longest path prefix; a request
//! no route matches gets 404 without reaching any backend. Plus the admin endpoints.

mod support;

use http::{Method, StatusCode};
use support::body::empty;
use support::client::{self, Client};
use support::proxy;
use support::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_without_route_is_404() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .backend("b", backend.addr())
        .route("api", "/v1/", &["b"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/v1/models").await.status, StatusCode::OK);
    let a = c.get("/v2/models").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.proxy_error(), Some("no_route"));
    // The connection stays usable after a 404.
    assert_eq!(c.get("/v1/again").await.status, StatusCode::OK);
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_then_longest_prefix() {
    let (api, wild, chat, default) = (
        server::fixed("api").await,
        server::fixed("wild").await,
        server::fixed("chat").await,
        server::fixed("default").await,
    );
    let proxy = proxy::new()
        .backend("api", api.addr())
        .backend("wild", wild.addr())
        .backend("chat", chat.addr())
        .backend("default", default.addr())
        .host_route("api", &["api.example.test"], "/", &["api"], "round_robin")
        .host_route("wild", &["*.models.test"], "/v1/", &["wild"], "round_robin")
        .route("default", "/", &["default"], "round_robin")
        .route("chat", "/v1/chat/", &["chat"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for (host, path, expected) in [
        ("API.example.test:8080", "/anything", "api"),
        ("a.models.test", "/v1/x", "wild"),
        ("a.models.test", "/v1/chat/x", "wild"),
        ("a.models.test", "/other", "default"),
        ("models.test", "/v1/x", "default"),
        ("elsewhere.test", "/v1/chat/completions", "chat"),
        ("elsewhere.test", "/v1/chatter", "default"),
    ] {
        let req = http::Request::get(path)
            .header("host", host)
            .body(empty())
            .unwrap();
        let a = c.request(req).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.text(), expected, "{host}{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let admin = proxy.admin_addr();
    let h = client::get(admin, "/healthz").await;
    assert_eq!((h.status, h.text().as_str()), (StatusCode::OK, "ok\n"));
    assert_eq!(
        client::get(admin, "/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let post = Client::connect(admin)
        .await
        .request(
            client::request(Method::POST, "/stats")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);

    assert_eq!(client::get(proxy.addr(), "/").await.status, StatusCode::OK);
    let s = proxy.stats().await;
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["process"]["threads"], 1);
    assert!(s["process"]["resident_memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(s["totals"]["requests"], 1);
    assert_eq!(s["totals"]["responses"]["2xx"], 1);
    assert_eq!(s["routes"][0]["name"], "default");
    assert_eq!(s["routes"][0]["requests"], 1);
    assert_eq!(s["backends"][0]["name"], "b0");
    assert_eq!(s["backends"][0]["address"], backend.addr().to_string());
    assert_eq!(s["backends"][0]["requests"], 1);
    assert_eq!(s["backends"][0]["up"], true);
}
