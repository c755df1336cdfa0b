//! Service discovery through the admin API: registered backends join their routes without a
//! restart, heartbeats keep them, a lapsed TTL or a DELETE removes them, requests in flight are
//! not disturbed, and bad registrations get a 4xx naming the field.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::body::{empty, full};
use support::client::{self, Client};
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};

/// Sends an admin request with a JSON body (or none); the status and the JSON answer.
async fn admin(
    proxy: &proxy::Proxy,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut c = Client::connect(proxy.admin_addr()).await;
    let body = match body {
        Some(v) => full(Bytes::from(v.to_string())),
        None => empty(),
    };
    let a = c
        .request(client::request(method, path).body(body).unwrap())
        .await;
    let doc = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
    (a.status.as_u16(), doc)
}

/// The bodies of `n` requests through the proxy, each on a new connection.
async fn bodies(proxy: &proxy::Proxy, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(client::get(proxy.addr(), "/").await.text());
    }
    out
}

fn names(list: &Value) -> Vec<String> {
    list["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_registered_backend_joins_the_route_and_a_delete_removes_it() {
    let fixed = server::fixed("static").await;
    let other = server::fixed("registered").await;
    let proxy = proxy::new().to(fixed.addr()).discovery().start();
    assert!(bodies(&proxy, 4).await.iter().all(|b| b == "static"));

    let (status, doc) = admin(
        &proxy,
        Method::POST,
        "/admin/backends",
        Some(json!({"id": "gpu-7", "address": other.addr().to_string(), "ttl": "1m"})),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(doc["name"], "gpu-7");
    assert_eq!(doc["source"], "registered");
    let seen = bodies(&proxy, 6).await;
    assert_eq!(
        seen.iter().filter(|b| *b == "registered").count(),
        3,
        "{seen:?}"
    );

    let (status, list) = admin(&proxy, Method::GET, "/admin/backends", None).await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["b0", "gpu-7"]);
    assert_eq!(list["backends"][0]["source"], "static");
    assert_eq!(list["backends"][1]["requests"], 3);
    assert_eq!(
        proxy.stats().await["routes"][0]["backends"],
        json!(["b0", "gpu-7"])
    );

    let (status, _) = admin(&proxy, Method::DELETE, "/admin/backends/gpu-7", None).await;
    assert_eq!(status, 200);
    assert!(bodies(&proxy, 4).await.iter().all(|b| b == "static"));
    let (status, _) = admin(&proxy, Method::DELETE, "/admin/backends/gpu-7", None).await;
    assert_eq!(status, 404);
    // Static backends change with the config, not through this API.
    let (status, _) = admin(&proxy, Method::DELETE, "/admin/backends/b0", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn heartbeats_keep_a_registration_and_a_lapsed_ttl_removes_it() {
    let fixed = server::fixed("static").await;
    let other = server::fixed("registered").await;
    let proxy = proxy::new().to(fixed.addr()).discovery().start();
    let reg = json!({"id": "beating", "address": other.addr().to_string(), "ttl": 1});
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(reg))
            .await
            .0,
        201
    );
    let quiet = json!({"id": "quiet", "address": other.addr().to_string(), "ttl": 1});
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(quiet))
            .await
            .0,
        201
    );

    // `quiet` lapses after its second; `beating` outlives it with heartbeats.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let (status, doc) = admin(
            &proxy,
            Method::PUT,
            "/admin/backends/beating/heartbeat",
            None,
        )
        .await;
        assert_eq!(status, 200, "{doc}");
        assert!(doc["expires_in_ms"].as_u64().unwrap() > 500);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = admin(&proxy, Method::GET, "/admin/backends", None).await;
    assert_eq!(names(&list), ["b0", "beating"]);
    let (status, _) = admin(&proxy, Method::PUT, "/admin/backends/quiet/heartbeat", None).await;
    assert_eq!(status, 404);

    // Without heartbeats `beating` goes too, and traffic stays on the static backend.
    wait_for(DEADLINE, "the TTL to lapse", || async {
        names(&admin(&proxy, Method::GET, "/admin/backends", None).await.1) == ["b0"]
    })
    .await;
    assert!(bodies(&proxy, 4).await.iter().all(|b| b == "static"));
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_a_backend_removed_under_it() {
    let fixed = server::fixed("static").await;
    let slow = server::serve(|_req| async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        respond(StatusCode::OK, "slow but complete")
    })
    .await;
    // Only the registered backend serves this route: the static one is elsewhere.
    let proxy = proxy::new()
        .backend("b0", fixed.addr())
        .route("static", "/static", &["b0"], "round_robin")
        .route("pool", "/", &[], "round_robin")
        .discovery()
        .start();
    let reg = json!({"id": "slow", "address": slow.addr().to_string(), "routes": ["pool"]});
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(reg))
            .await
            .0,
        201
    );

    let addr = proxy.addr();
    let in_flight = tokio::spawn(async move { client::get(addr, "/").await });
    wait_for(DEADLINE, "the request to reach the backend", || async {
        slow.requests() == 1
    })
    .await;
    assert_eq!(
        admin(&proxy, Method::DELETE, "/admin/backends/slow", None)
            .await
            .0,
        200
    );
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "slow but complete");
    // The route has no members left; the static route was never touched.
    assert_eq!(client::get(proxy.addr(), "/").await.status, 503);
    assert_eq!(client::get(proxy.addr(), "/static").await.text(), "static");
}

#[tokio::test]
async fn a_registered_backend_serves_its_models() {
    let old = server::fixed("old model").await;
    let new = server::fixed("new model").await;
    let proxy = proxy::new()
        .backend("old", old.addr())
        .models(&["llama"])
        .route("v1", "/", &["old"], "least_conn")
        .discovery()
        .start();
    let body = r#"{"model":"qwen","messages":[]}"#;
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.post("/v1/chat/completions", body).await.status, 404);

    let reg = json!({"address": new.addr().to_string(), "models": ["qwen@2"], "weight": 2});
    let (status, doc) = admin(&proxy, Method::POST, "/admin/backends", Some(reg)).await;
    assert_eq!(status, 201, "{doc}");
    assert!(doc["name"].as_str().unwrap().starts_with("registered-"));
    assert_eq!(doc["weight"], 2);
    let a = c.post("/v1/chat/completions", body).await;
    assert_eq!(a.text(), "new model");
    let llama = r#"{"model":"llama","messages":[]}"#;
    assert_eq!(
        c.post("/v1/chat/completions", llama).await.text(),
        "old model"
    );
    let models = c.get("/v1/models").await.json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["llama", "qwen@2"]);
}

#[tokio::test]
async fn a_new_registration_under_the_same_id_replaces_the_old_address() {
    let first = server::fixed("first").await;
    let second = server::fixed("second").await;
    let proxy = proxy::new()
        .route("pool", "/", &[], "round_robin")
        .discovery()
        .start();
    let reg = |addr: std::net::SocketAddr| json!({"id": "engine", "address": addr.to_string()});
    assert_eq!(
        admin(
            &proxy,
            Method::POST,
            "/admin/backends",
            Some(reg(first.addr()))
        )
        .await
        .0,
        201
    );
    // A keep-alive client, so the proxy pools a connection to `first`.
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/").await.text(), "first");
    assert_eq!(
        admin(
            &proxy,
            Method::POST,
            "/admin/backends",
            Some(reg(second.addr()))
        )
        .await
        .0,
        200
    );
    for _ in 0..3 {
        assert_eq!(c.get("/").await.text(), "second");
    }
    let (_, list) = admin(&proxy, Method::GET, "/admin/backends", None).await;
    assert_eq!(names(&list), ["engine"]);
    // The slot's counters start again with the new occupant.
    assert_eq!(list["backends"][0]["requests"], 3);
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_reason() {
    let fixed = server::fixed("static").await;
    let proxy = proxy::new().to(fixed.addr()).discovery().start();
    let cases = [
        (json!({}), 400, "address"),
        (json!({"address": "nowhere"}), 400, "address"),
        (
            json!({"address": "127.0.0.1:1", "colour": "blue"}),
            400,
            "unknown field",
        ),
        (
            json!({"address": "127.0.0.1:1", "weight": 0}),
            400,
            "weight",
        ),
        (
            json!({"address": "127.0.0.1:1", "ttl": "forever"}),
            400,
            "ttl",
        ),
        (json!({"address": "127.0.0.1:1", "ttl": 0}), 400, "ttl"),
        (
            json!({"address": "127.0.0.1:1", "routes": ["nope"]}),
            400,
            "routes",
        ),
        (
            json!({"address": "127.0.0.1:1", "models": ["a@b@c"]}),
            400,
            "models",
        ),
        (
            json!({"address": "127.0.0.1:1", "id": "has space"}),
            400,
            "id",
        ),
        (
            json!({"address": "127.0.0.1:1", "id": "b0"}),
            409,
            "static backend",
        ),
        (json!(["address"]), 400, "object"),
    ];
    for (body, status, needle) in cases {
        let (got, doc) = admin(&proxy, Method::POST, "/admin/backends", Some(body.clone())).await;
        assert_eq!(got, status, "{body} -> {doc}");
        let msg = doc["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should mention {needle:?}"
        );
    }
    let mut c = Client::connect(proxy.admin_addr()).await;
    let a = c
        .request(
            client::request(Method::POST, "/admin/backends")
                .body(full("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 400);
    let huge = format!(
        r#"{{"address":"127.0.0.1:1","id":"{}"}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(c.post("/admin/backends", huge).await.status, 413);
    // Nothing was registered.
    let (_, list) = admin(&proxy, Method::GET, "/admin/backends", None).await;
    assert_eq!(names(&list), ["b0"]);
}

#[tokio::test]
async fn registrations_are_capped() {
    let fixed = server::fixed("registered").await;
    let max = 5;
    let proxy = proxy::new()
        .server(|s| s.max_registered_backends = max)
        .route("pool", "/", &[], "round_robin")
        .discovery()
        .start();
    for i in 0..max {
        let reg = json!({"id": format!("e{i}"), "address": fixed.addr().to_string()});
        assert_eq!(
            admin(&proxy, Method::POST, "/admin/backends", Some(reg))
                .await
                .0,
            201
        );
    }
    let reg = json!({"id": "one-too-many", "address": fixed.addr().to_string()});
    let (status, doc) = admin(&proxy, Method::POST, "/admin/backends", Some(reg.clone())).await;
    assert_eq!(status, 409, "{doc}");
    assert!(doc["error"]
        .as_str()
        .unwrap()
        .contains("max_registered_backends"));
    // A freed slot takes the next registration.
    assert_eq!(
        admin(&proxy, Method::DELETE, "/admin/backends/e3", None)
            .await
            .0,
        200
    );
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(reg))
            .await
            .0,
        201
    );
    assert_eq!(client::get(proxy.addr(), "/").await.text(), "registered");
}

#[tokio::test]
async fn a_registered_backend_is_scraped_and_health_checked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine = switchyard_mock_engine::spawn_on(
        listener,
        switchyard_mock_engine::MockEngineArgs {
            models: vec!["llama".into()],
            ttft_ms: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let proxy = proxy::new()
        .server(|s| {
            s.metrics_interval = Duration::from_millis(50);
            s.health_interval = Duration::from_millis(50);
            s.health_fall = 1;
        })
        .route("pool", "/", &[], "least_queue")
        .discovery()
        .start();
    let reg = json!({
        "id": "engine", "address": engine.local_addr().to_string(), "models": ["llama"],
        "metrics": "/metrics", "health": "ai",
    });
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(reg))
            .await
            .0,
        201
    );
    wait_for(
        DEADLINE,
        "figures scraped and the check passing",
        || async {
            let b = &admin(&proxy, Method::GET, "/admin/backends", None).await.1["backends"][0];
            b["engine"]["fresh"] == true && b["health"]["state"] == "up"
        },
    )
    .await;
    // The same id now declares a model the engine does not serve, and no metrics: the new
    // `ai` check fails and takes it out of rotation, and nothing is scraped any more.
    let reg = json!({
        "id": "engine", "address": engine.local_addr().to_string(), "models": ["qwen"],
        "health": "ai", "weight": 2,
    });
    assert_eq!(
        admin(&proxy, Method::POST, "/admin/backends", Some(reg))
            .await
            .0,
        200
    );
    wait_for(DEADLINE, "the ai check to fail", || async {
        let b = &admin(&proxy, Method::GET, "/admin/backends", None).await.1["backends"][0];
        b["health"]["state"] == "down" && b["up"] == false && b["engine"].is_null()
    })
    .await;
    engine.shutdown().await;
}
