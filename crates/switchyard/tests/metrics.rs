//! `GET /metrics` through the real proxy: a strict Prometheus text parser reads it, and the
//! series carry the traffic sent; the admin token guards it.

mod support;

use http::StatusCode;
use support::client::{get_authorized, Client};
use support::server;
use support::{proxy, wait_for, DEADLINE};

const TOKEN: &str = "metrics-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_in_the_prometheus_format() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .admin_token(TOKEN)
        .backend("b0", backend.addr())
        .route("r", "/", &["b0"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    const SENT: u64 = 7;
    for _ in 0..SENT {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    let hist = "switchyard_route_request_duration_seconds";
    // Durations are recorded as each exchange ends, just after the client has the response.
    wait_for(DEADLINE, "every duration recorded", || async {
        let a = proxy.admin_get("/metrics").await;
        support::prom::parse(&a.text())
            .ok()
            .and_then(|m| m.get(&format!("{hist}_count"), &[("route", "r")]))
            == Some(SENT as f64)
    })
    .await;
    let a = proxy.admin_get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = support::prom::parse(&a.text()).unwrap_or_else(|e| panic!("{e}\n{}", a.text()));
    let sent = SENT as f64;
    assert_eq!(
        m.get(
            "switchyard_requests_total",
            &[("route", "r"), ("backend", "b0"), ("code", "2xx")]
        ),
        Some(sent)
    );
    assert_eq!(
        m.get("switchyard_responses_total", &[("code", "2xx")]),
        Some(sent)
    );
    assert_eq!(
        m.get("switchyard_route_requests_total", &[("route", "r")]),
        Some(sent)
    );
    assert_eq!(
        m.get(
            "switchyard_route_responses_total",
            &[("route", "r"), ("code", "2xx")]
        ),
        Some(sent)
    );
    assert_eq!(
        m.get(
            "switchyard_route_responses_total",
            &[("route", "r"), ("code", "5xx")]
        ),
        Some(0.0)
    );
    assert_eq!(m.types[hist], "histogram");
    let buckets = m.matching(&format!("{hist}_bucket"), &[("route", "r")]);
    assert_eq!(buckets.len(), 14, "13 bounds and +Inf");
    assert_eq!(buckets.last().unwrap().value, sent);
    assert!(m.get(&format!("{hist}_sum"), &[("route", "r")]).unwrap() > 0.0);
    assert_eq!(
        m.get("switchyard_backend_requests_total", &[("backend", "b0")]),
        Some(sent)
    );
    assert_eq!(
        m.get("switchyard_backend_errors_total", &[("backend", "b0")]),
        Some(0.0)
    );
    assert_eq!(
        m.get("switchyard_backend_up", &[("backend", "b0")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("switchyard_backend_in_flight", &[("backend", "b0")]),
        Some(0.0)
    );
    assert_eq!(
        m.get("switchyard_errors_total", &[("kind", "no_route")]),
        Some(0.0)
    );
    assert!(m.get("switchyard_connections_accepted_total", &[]).unwrap() >= 1.0);
    assert!(m.get("switchyard_connections_active", &[]).unwrap() >= 1.0);
    assert_eq!(
        m.get(
            "switchyard_alerts_firing",
            &[("alert", "backend_down"), ("severity", "critical")]
        ),
        Some(0.0)
    );
    assert!(m.get("switchyard_history_memory_bytes", &[]).unwrap() > 0.0);
    assert_eq!(m.types["switchyard_requests_total"], "counter");
    assert_eq!(m.types["switchyard_backend_up"], "gauge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_total_is_counted_by_route_backend_and_class() {
    let b0 = server::fixed("ok").await;
    let b1 = server::serve(|req: http::Request<hyper::body::Incoming>| async move {
        let status = match req.uri().path().ends_with("/missing") {
            true => StatusCode::NOT_FOUND,
            false => StatusCode::OK,
        };
        server::respond(status, "b1")
    })
    .await;
    let proxy = proxy::new()
        .admin_token(TOKEN)
        .backend("b0", b0.addr())
        .backend("b1", b1.addr())
        .backend("dead", server::dead_addr())
        .route("a", "/a", &["b0", "b1"], "round_robin")
        .route("b", "/b", &["b1"], "round_robin")
        .route("c", "/c", &["dead"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    let traffic = [
        ("/a/x", StatusCode::OK, 4),
        ("/b/x", StatusCode::OK, 3),
        ("/b/missing", StatusCode::NOT_FOUND, 1),
        ("/nowhere", StatusCode::NOT_FOUND, 1),
        ("/c/x", StatusCode::BAD_GATEWAY, 1),
    ];
    for (path, status, n) in traffic {
        for _ in 0..n {
            assert_eq!(c.get(path).await.status, status, "{path}");
        }
    }
    let a = proxy.admin_get("/metrics").await;
    let m = support::prom::parse(&a.text()).unwrap_or_else(|e| panic!("{e}\n{}", a.text()));
    assert_eq!(m.types["switchyard_requests_total"], "counter");
    let series: Vec<(String, String, String, f64)> = m
        .matching("switchyard_requests_total", &[])
        .iter()
        .map(|s| {
            let l = |k: &str| s.labels[k].clone();
            (l("route"), l("backend"), l("code"), s.value)
        })
        .collect();
    let mut want: Vec<(String, String, String, f64)> = [
        // Round robin over one connection: every other request to each backend.
        ("a", "b0", "2xx", 2.0),
        ("a", "b1", "2xx", 2.0),
        ("b", "b1", "2xx", 3.0),
        ("b", "b1", "4xx", 1.0),
        // No route matched: answered without a route or a backend.
        ("", "", "4xx", 1.0),
        // A proxy error after a backend was tried counts under that backend.
        ("c", "dead", "5xx", 1.0),
    ]
    .iter()
    .map(|(r, b, c, v)| (r.to_string(), b.to_string(), c.to_string(), *v))
    .collect();
    let mut got = series;
    got.sort_by(|x, y| x.partial_cmp(y).unwrap());
    want.sort_by(|x, y| x.partial_cmp(y).unwrap());
    assert_eq!(got, want, "{}", a.text());
    // Every response is in exactly one series.
    let total: f64 = got.iter().map(|s| s.3).sum();
    let responses: f64 = m
        .matching("switchyard_responses_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, responses);
    assert_eq!(total, 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_count_per_limit_and_without_a_backend() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .admin_token(TOKEN)
        .to(backend.addr())
        .limit("per-ip", "client_ip", "1/m", 1, |_| {})
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    for _ in 0..2 {
        assert_eq!(c.get("/").await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let a = proxy.admin_get("/metrics").await;
    let m = support::prom::parse(&a.text()).unwrap_or_else(|e| panic!("{e}\n{}", a.text()));
    assert_eq!(
        m.get("switchyard_limit_denied_total", &[("limit", "per-ip")]),
        Some(2.0)
    );
    let requests = |backend, code| {
        let labels = [("route", "default"), ("backend", backend), ("code", code)];
        m.get("switchyard_requests_total", &labels)
    };
    assert_eq!(requests("b0", "2xx"), Some(1.0));
    assert_eq!(requests("", "4xx"), Some(2.0), "refused without a backend");
    assert_eq!(requests("b0", "4xx"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_history_and_alerts_need_the_admin_token() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .admin_token(TOKEN)
        // Six refusals in a row: not enough to be blocked.
        .server(|s| s.admin_max_failures = 100)
        .to(backend.addr())
        .start();
    for path in ["/metrics", "/history", "/admin/alerts"] {
        let refused = get_authorized(proxy.admin_addr(), path, None).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = get_authorized(proxy.admin_addr(), path, Some("nope")).await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{path}");
        let ok = get_authorized(proxy.admin_addr(), path, Some(TOKEN)).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {}", ok.text());
    }
}
