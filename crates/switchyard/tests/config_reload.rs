//! Hot reload through `POST /admin/config`: the next request follows the new config while
//! exchanges already started finish on the old one (on the same keep-alive connection too);
//! static backends come and go; registered backends survive and rejoin their routes by name;
//! limits change; route counters survive; and under a steady load a run of reloads fails no
//! request.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;
use support::body::{channel, full};
use support::client::{self, request, Client};
use support::reload::{answers, apply, edited, post};
use support::{proxy, server, DEADLINE};
use switchyard_config::BackendConfig;
use tokio::sync::Notify;

fn backend_config(name: &str, addr: std::net::SocketAddr) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        address: addr.to_string().parse().unwrap(),
        weight: 1,
        metrics: None,
        models: Vec::new(),
        health: None,
        protocol: Default::default(),
        tls: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_started_before_a_reload_finishes_on_the_old_backend() {
    let release = Arc::new(Notify::new());
    let slow = {
        let release = Arc::clone(&release);
        server::serve(move |_req| {
            let release = Arc::clone(&release);
            async move {
                let (tx, body) = channel();
                tokio::spawn(async move {
                    tx.send(Bytes::from("data: first\n\n")).await.unwrap();
                    release.notified().await;
                    for n in 0..3 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        tx.send(Bytes::from(format!("data: {n}\n\n")))
                            .await
                            .unwrap();
                    }
                });
                http::Response::new(body)
            }
        })
        .await
    };
    let fresh = server::fixed("fresh").await;
    let p = proxy::new()
        .backend("slow", slow.addr())
        .backend("fresh", fresh.addr())
        .route("chat", "/", &["slow"], "round_robin")
        .start();
    let mut c = Client::connect(p.addr()).await;
    let (mut body, mut got) = client::stream_until(
        &mut c,
        "/stream",
        b"data: first

",
    )
    .await;
    // Reload mid-stream: the route now goes to `fresh`, and `slow` leaves the config.
    let doc = apply(
        &p,
        edited(&p, |c| {
            c.routes[0].backends = vec!["fresh".into()];
            c.backends.retain(|b| b.name == "fresh");
        }),
    )
    .await;
    assert_eq!(doc["version"], 1);
    release.notify_one();
    tokio::time::timeout(DEADLINE, client::read_rest(&mut body, &mut got))
        .await
        .expect("the rest of the stream");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: first\n\ndata: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
    // The same keep-alive connection: the next request follows the new config.
    assert!(!c.is_closed());
    assert_eq!(c.get("/next").await.text(), "fresh");
    assert_eq!(slow.requests(), 1);
}

#[tokio::test]
async fn static_backends_come_and_go_and_registered_ones_rejoin_by_route_name() {
    let a = server::fixed("a").await;
    let b = server::fixed("b").await;
    let dynamic = server::fixed("dyn").await;
    let p = proxy::new()
        .backend("a", a.addr())
        .route("pool", "/", &["a"], "round_robin")
        .discovery()
        .start();
    let reg = json!({"id": "gpu-9", "address": dynamic.addr().to_string(), "routes": ["pool"]});
    let (status, doc) = post(&p, "/admin/backends", reg.to_string(), None).await;
    assert_eq!(status, 201, "{doc:#}");
    // Add `b`; put a new route first (the pool route moves to index 1).
    let ini = edited(&p, |c| {
        c.backends.push(backend_config("b", b.addr()));
        c.routes[0].backends.push("b".into());
        let mut other = c.routes[0].clone();
        other.name = "other".into();
        other.path_prefix = "/other/".into();
        other.backends = vec!["a".into()];
        other.discovery = false;
        c.routes.insert(0, other);
    });
    apply(&p, ini).await;
    let mut seen = answers(&p, "/", 6).await;
    seen.sort();
    assert_eq!(seen, ["a", "a", "b", "b", "dyn", "dyn"]);
    assert!(answers(&p, "/other/x", 3).await.iter().all(|x| x == "a"));
    // Remove `a`: it gets no more requests.
    let before = a.requests();
    let ini = edited(&p, |c| {
        c.routes.remove(0);
        c.routes[0].backends = vec!["b".into()];
        c.backends.retain(|x| x.name != "a");
    });
    apply(&p, ini).await;
    let mut seen = answers(&p, "/", 4).await;
    seen.sort();
    assert_eq!(seen, ["b", "b", "dyn", "dyn"]);
    assert_eq!(a.requests(), before);
    let stats = p.stats().await;
    let names: Vec<&str> = stats["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "gpu-9"]);
    assert_eq!(stats["backends"][1]["routes"], json!(["pool"]));
}

#[tokio::test]
async fn a_limit_changed_by_reload_takes_effect_and_route_counters_survive() {
    let backend = server::fixed("ok").await;
    let p = proxy::new()
        .to(backend.addr())
        .limit("all", "global", "1/m", 100, |_| {})
        .start();
    assert!(answers(&p, "/", 5).await.iter().all(|a| a == "ok"));
    let ini = edited(&p, |c| c.limits[0].burst = 1);
    apply(&p, ini).await;
    let first = client::get(p.addr(), "/").await;
    assert_eq!(first.status, StatusCode::OK);
    let second = client::get(p.addr(), "/").await;
    assert_eq!(second.status, 429, "{}", second.text());
    // The route kept its counters: 5 + 2 requests, across the reload.
    let stats = p.stats().await;
    assert_eq!(stats["routes"][0]["name"], "default");
    assert_eq!(stats["routes"][0]["requests"], 7);
    assert_eq!(stats["config"]["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_reloads_under_load_fail_no_request() {
    let one = server::fixed("one").await;
    let two = server::fixed("two").await;
    let p = Arc::new(
        proxy::new()
            .server(|s| s.threads = 2)
            .backend("one", one.addr())
            .backend("two", two.addr())
            .route("a", "/a/", &["one"], "round_robin")
            .route("b", "/b/", &["two"], "round_robin")
            .start(),
    );
    let configs = [
        edited(&p, |_| {}),
        edited(&p, |c| {
            c.routes[0].backends = vec!["two".into()];
            c.routes[1].backends = vec!["one".into()];
        }),
    ];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (p, stop, ok) = (Arc::clone(&p), Arc::clone(&stop), Arc::clone(&ok));
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(p.addr()).await;
            let path = if i % 2 == 0 { "/a/x" } else { "/b/x" };
            let mut failures = Vec::new();
            while !stop.load(Relaxed) {
                let req = request(Method::POST, path).body(full("hello")).unwrap();
                let a = c.request(req).await;
                if a.status == StatusCode::OK && (a.text() == "one" || a.text() == "two") {
                    ok.fetch_add(1, Relaxed);
                } else {
                    failures.push(format!("{} {}", a.status, a.text()));
                }
            }
            failures
        }));
    }
    for n in 0..20 {
        let doc = apply(&p, configs[(n + 1) % 2].clone()).await;
        assert_eq!(doc["version"], n as u64 + 1);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Relaxed);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(ok.load(Relaxed) > 40, "{} requests", ok.load(Relaxed));
    let stats = p.stats().await;
    assert_eq!(stats["config"]["reloads"], 20);
    assert_eq!(stats["totals"]["responses"]["5xx"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_by_reload_gets_its_health_check() {
    let ok = server::fixed("ok").await;
    let served = Arc::new(AtomicU64::new(0));
    let sick = {
        let served = Arc::clone(&served);
        server::serve(move |req| {
            let served = Arc::clone(&served);
            async move {
                if req.uri().path() == "/health" {
                    server::respond(StatusCode::SERVICE_UNAVAILABLE, "no")
                } else {
                    served.fetch_add(1, Relaxed);
                    server::respond(StatusCode::OK, "sick")
                }
            }
        })
        .await
    };
    let p = proxy::new()
        .server(|s| {
            s.health_interval = Duration::from_millis(50);
            s.health_fall = 1;
        })
        .to(ok.addr())
        .start();
    let ini = edited(&p, |c| {
        let mut b = backend_config("sick", sick.addr());
        b.health = Some("http GET /health 200".parse().unwrap());
        c.backends.push(b);
        c.routes[0].backends.push("sick".into());
    });
    apply(&p, ini).await;
    support::wait_for(DEADLINE, "the new backend's check to fail", || async {
        p.stats().await["backends"][1]["health"]["state"] == "down"
    })
    .await;
    assert!(answers(&p, "/", 6).await.iter().all(|a| a == "ok"));
    assert_eq!(served.load(Relaxed), 0, "only its health checks reached it");
}
