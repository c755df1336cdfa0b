//! `GET /history` and alerts through the real proxy: the sampler records the traffic, and an
//! alert fires when a backend's health check fails and resolves when it passes again, each
//! transition POSTed to a webhook receiver and listed by `/admin/alerts`.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use support::client::Client;
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};
use switchyard_config::AlertComparison;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_records_the_request_rate() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .server(proxy::fast_history)
        .to(backend.addr())
        .start();
    // Traffic spread over several intervals until a sample shows it: the rate is measured
    // between two readings, so keep sending while polling.
    wait_for(DEADLINE, "a request rate above 0", || {
        let proxy = &proxy;
        async move {
            let mut c = Client::connect(proxy.addr()).await;
            for _ in 0..5 {
                assert_eq!(c.get("/x").await.status, StatusCode::OK);
            }
            let h = proxy
                .admin_get("/history?series=requests_per_second&since=60")
                .await;
            assert_eq!(h.status, StatusCode::OK, "{}", h.text());
            let doc = h.json();
            let s = &doc["series"]["requests_per_second"];
            assert_eq!(s["step_ms"], 100);
            s["points"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p[1].as_f64().is_some_and(|v| v > 0.0))
        }
    })
    .await;
    let h = proxy.admin_get("/history").await.json();
    let series = h["series"].as_object().unwrap();
    assert!(series.contains_key("latency_p99_ms") && series.contains_key("backends_up"));
    let points = series["backends_up"]["points"].as_array().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let t = points.last().unwrap()[0].as_f64().unwrap();
    assert!(
        (now_ms - t).abs() < 60_000.0,
        "points in Unix ms: {t} vs {now_ms}"
    );
    assert!(h["available"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("backend:b0:in_flight")));
    let b = proxy.admin_get("/history?series=backend%3Ab0%3Aup").await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    let bad = proxy.admin_get("/history?series=nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["available"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("requests_per_second")));
    let bad = proxy.admin_get("/history?since=soon").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let stats = proxy.stats().await;
    assert_eq!(stats["history"]["interval_ms"], 100);
    assert!(stats["history"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["alerts"]["firing"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_alert_fires_and_resolves_with_webhook_notifications() {
    // The backend's /health answers as `healthy` says.
    let healthy = Arc::new(AtomicBool::new(true));
    let backend = {
        let healthy = Arc::clone(&healthy);
        server::serve(move |req| {
            let ok = req.uri().path() != "/health" || healthy.load(SeqCst);
            async move {
                let status = if ok {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                respond(status, "")
            }
        })
        .await
    };
    // The webhook receiver keeps every JSON document POSTed to /hook.
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let receiver = {
        let received = Arc::clone(&received);
        server::serve(move |req| {
            let received = Arc::clone(&received);
            async move {
                let ok = req.method() == http::Method::POST && req.uri().path() == "/hook";
                let body = req.into_body().collect().await.unwrap().to_bytes();
                if ok {
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                }
                respond(StatusCode::OK, "")
            }
        })
        .await
    };
    let hook = format!("http://{}/hook", receiver.addr());
    let proxy = proxy::new()
        .server(|s| {
            proxy::fast_history(s);
            s.health_interval = Duration::from_millis(50);
            s.health_timeout = Duration::from_millis(500);
            s.health_fall = 2;
            s.health_rise = 2;
            s.observe.alert_webhook = Some(hook.parse().unwrap());
            s.observe.alert_webhook_timeout = Duration::from_secs(5);
        })
        .backend("a", backend.addr())
        .health("http /health")
        .route("r", "/", &["a"], "round_robin")
        // Replaces the built-in rule of the same name with a short `for`.
        .alert(
            "backend_down",
            "backend:*:up",
            AlertComparison::Below,
            1.0,
            |a| {
                a.for_ = Duration::from_millis(200);
                a.resolve_for = Duration::from_millis(200);
                a.severity = switchyard_config::AlertSeverity::Critical;
            },
        )
        .start();
    wait_for(DEADLINE, "the backend up", || async {
        proxy.stats().await["backends"][0]["up"] == true
    })
    .await;

    healthy.store(false, SeqCst);
    wait_for(DEADLINE, "the alert firing", || async {
        let a = proxy.admin_get("/admin/alerts").await.json();
        a["firing"].as_array().unwrap().len() == 1
    })
    .await;
    let alerts = proxy.admin_get("/admin/alerts").await.json();
    let f = &alerts["firing"][0];
    assert_eq!(f["alert"], "backend_down");
    assert_eq!(f["series"], "backend:a:up");
    assert_eq!(f["severity"], "critical");
    let rules = alerts["rules"].as_array().unwrap();
    let down: Vec<_> = rules
        .iter()
        .filter(|r| r["name"] == "backend_down")
        .collect();
    assert_eq!(down.len(), 1, "the section replaced the built-in rule");
    assert_eq!(down[0]["for_ms"], 200);
    assert!(
        rules.iter().any(|r| r["name"] == "error_rate"),
        "the other built-ins stay"
    );
    let m = proxy.admin_get("/metrics").await.text();
    assert!(
        m.contains("switchyard_alerts_firing{alert=\"backend_down\",severity=\"critical\"} 1\n"),
        "{m}"
    );
    assert_eq!(proxy.stats().await["alerts"]["firing"], 1);

    healthy.store(true, SeqCst);
    wait_for(DEADLINE, "both notifications", || async {
        received.lock().unwrap().len() >= 2
    })
    .await;
    let got = received.lock().unwrap().clone();
    let statuses: Vec<_> = got.iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "{got:?}");
    for (doc, status, value) in [(&got[0], "firing", 0.0), (&got[1], "resolved", 1.0)] {
        assert_eq!(doc["alert"], "backend_down");
        assert_eq!(doc["series"], "backend:a:up");
        assert_eq!(doc["severity"], "critical");
        assert_eq!(doc["status"], status);
        assert_eq!(doc["value"], value);
        let at = doc["at"].as_str().unwrap();
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{at}"
        );
    }
    let alerts = proxy.admin_get("/admin/alerts").await.json();
    assert_eq!(alerts["firing"].as_array().unwrap().len(), 0);
    assert_eq!(alerts["notifications"]["sent"], 2);
    assert_eq!(alerts["notifications"]["dropped"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_webhook_without_an_admin_listener() {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let receiver = {
        let received = Arc::clone(&received);
        server::serve(move |req| {
            let received = Arc::clone(&received);
            async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                if let Ok(doc) = serde_json::from_slice(&body) {
                    received.lock().unwrap().push(doc);
                }
                respond(StatusCode::OK, "")
            }
        })
        .await
    };
    let backend = server::fixed("ok").await;
    let hook = format!("http://{}/hook", receiver.addr());
    // A rule that fires as soon as requests are counted.
    let handle = proxy::new()
        .server(|s| {
            proxy::fast_history(s);
            s.admin_listen = None;
            s.observe.alert_webhook = Some(hook.parse().unwrap());
        })
        .to(backend.addr())
        .alert(
            "traffic",
            "requests_per_second",
            AlertComparison::Above,
            0.0,
            |a| a.for_ = Duration::ZERO,
        )
        .try_start()
        .expect("starts without an admin listener");
    let addr = handle.listen_addrs()[0];
    wait_for(DEADLINE, "the alert at the webhook", || async {
        let _ = support::client::get(addr, "/").await;
        received
            .lock()
            .unwrap()
            .iter()
            .any(|d| d["alert"] == "traffic" && d["status"] == "firing")
    })
    .await;
    drop(handle);
}
