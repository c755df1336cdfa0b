//! `/admin/diagnose`: live probes of every backend (connect time, health request, model list),
//! the last upstream errors with their causes, the config validated again, and runs on
//! demand.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::Value;
use support::diagnose::{self, backend};
use support::server::{self, respond};
use support::{client, proxy};
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine(models: &[&str]) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            models: models.iter().map(|m| m.to_string()).collect(),
            ttft_ms: 0,
            tokens_per_sec: 500.0,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn short_timeouts(s: &mut switchyard_config::ServerConfig) {
    s.upstream_connect_timeout = Duration::from_secs(1);
    s.health_timeout = Duration::from_millis(300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_connect_time_status_and_models_or_the_cause_of_failure() {
    let live = engine(&["llama-3-8b", "qwen"]).await;
    let dead = server::dead_addr();
    let silent = server::silent().await;
    let proxy = proxy::new()
        .server(short_timeouts)
        .backend("live", live.local_addr())
        .models(&["llama-3-8b", "mistral"])
        .metrics("/metrics")
        .backend("dead", dead)
        .backend("silent", silent.addr())
        .route("r", "/", &["live", "dead", "silent"], "round_robin")
        .start();
    let asked = Instant::now();
    let doc = diagnose::run(&proxy).await;
    let took = asked.elapsed();
    // Connect timeout (1 s) + HTTP timeout (300 ms), with room for a slow machine.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(doc["generated_unix_ms"].as_u64().unwrap() > 0);
    assert!(doc["duration_ms"].as_u64().unwrap() < 2500);

    let p = &backend(&doc, "live")["probe"];
    assert_eq!(p["connect"]["ok"], true, "{p:#}");
    assert!(p["connect"]["ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(p["http"]["request"], "GET /health");
    assert_eq!(p["http"]["status"], 200);
    assert_eq!(p["http"]["ok"], true);
    assert_eq!(p["models"]["status"], 200);
    let ids: Vec<&str> = p["models"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(ids, ["llama-3-8b", "qwen"]);
    assert_eq!(
        p["models"]["declared_missing"],
        serde_json::json!(["mistral"])
    );
    let live_entry = backend(&doc, "live");
    assert_eq!(live_entry["health"]["state"], "up");
    assert_eq!(live_entry["metrics"]["endpoint"], "/metrics");
    assert_eq!(live_entry["pool"]["in_flight"], 0);

    let p = &backend(&doc, "dead")["probe"];
    assert_eq!(p["connect"]["ok"], false, "{p:#}");
    assert_eq!(p["connect"]["cause"], "refused");
    assert!(p["connect"]["error"].as_str().unwrap().contains("refused"));
    assert_eq!(p["http"]["skipped"], "no connection");

    let p = &backend(&doc, "silent")["probe"];
    assert_eq!(p["connect"]["ok"], true, "{p:#}");
    assert_eq!(p["http"]["cause"], "timeout", "{p:#}");
    assert_eq!(p["models"]["cause"], "timeout");
    let waited = p["http"]["ms"].as_f64().unwrap();
    assert!((250.0..1500.0).contains(&waited), "{waited} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_proxied_requests_appear_with_their_causes() {
    let dead = server::dead_addr();
    let failing = server::serve(|_req| async { respond(StatusCode::BAD_GATEWAY, "no") }).await;
    let proxy = proxy::new()
        .server(|s| s.fail_threshold = 100)
        .backend("dead", dead)
        .backend("failing", failing.addr())
        .route("dead", "/dead", &["dead"], "round_robin")
        .route("failing", "/", &["failing"], "round_robin")
        .start();
    for _ in 0..2 {
        assert_eq!(client::get(proxy.addr(), "/dead").await.status, 502);
        assert_eq!(client::get(proxy.addr(), "/x").await.status, 502);
    }
    let doc = diagnose::run(&proxy).await;
    let errors = backend(&doc, "dead")["last_errors"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!errors.is_empty(), "{doc:#}");
    assert_eq!(errors[0]["cause"], "connect_refused", "{errors:#?}");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("connect failed"));
    assert!(errors[0]["unix_ms"].as_u64().unwrap() > 0);
    let errors = backend(&doc, "failing")["last_errors"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0]["cause"], "status");
    assert_eq!(errors[0]["status"], 502);
    assert_eq!(backend(&doc, "failing")["pool"]["requests"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_is_validated_again_and_its_errors_have_lines() {
    let b = server::fixed("ok").await;
    let proxy = proxy::new()
        .backend("a", b.addr())
        .route("r", "/", &["a"], "round_robin")
        .start();
    // Not started from a file: the config in force, validated.
    let doc = diagnose::run(&proxy).await;
    assert_eq!(doc["config"]["valid"], true, "{:#}", doc["config"]);
    assert_eq!(doc["config"]["source"], "in force");
    assert!(doc["config"]["file"].is_null());

    let ini = support::reload::running(&proxy).to_ini();
    let path = proxy::temp_path("diagnose.ini");
    std::fs::write(&path, &ini).unwrap();
    proxy.handle().shared().reloads.set_file(path.clone());
    let doc = diagnose::run(&proxy).await;
    let c = &doc["config"];
    assert_eq!(c["valid"], true, "{c:#}");
    assert_eq!(c["file"], path.display().to_string());
    assert_eq!(c["matches_running"], true, "{c:#}");

    // Broken on disk: every error with its line and key; the config in force stays.
    let (line, _) = ini
        .lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with("threads"))
        .expect("a threads line");
    let broken: Vec<String> = ini
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == line {
                "threads = lots".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&path, broken.join("\n")).unwrap();
    let doc = diagnose::run(&proxy).await;
    let c = &doc["config"];
    assert_eq!(c["valid"], false, "{c:#}");
    let errors = c["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{c:#}");
    assert_eq!(errors[0]["line"], line + 1);
    assert_eq!(errors[0]["key"], "threads");
    assert!(!errors[0]["message"].as_str().unwrap().is_empty());
    assert_eq!(client::get(proxy.addr(), "/").await.text(), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_answers_the_last_report_and_a_post_runs_the_checks_again() {
    let b = server::fixed("ok").await;
    let proxy = proxy::new()
        .backend("a", b.addr())
        .route("r", "/", &["a"], "round_robin")
        .start();
    let first = diagnose::report(&proxy).await;
    assert_eq!(first["cached"], false);
    let again = diagnose::report(&proxy).await;
    assert_eq!(again["cached"], true);
    assert_eq!(again["generated_unix_ms"], first["generated_unix_ms"]);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let ran = diagnose::run(&proxy).await;
    assert_eq!(ran["cached"], false);
    assert!(ran["generated_unix_ms"].as_u64() > first["generated_unix_ms"].as_u64());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let forced = proxy
        .admin_get("/admin/diagnose?run=1&format=json")
        .await
        .json();
    assert!(forced["generated_unix_ms"].as_u64() > ran["generated_unix_ms"].as_u64());

    let (status, _) = support::reload::post(&proxy, "/admin/diagnose/other", "", None).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_page_with_what_its_script_fills_in() {
    let b = server::fixed("ok").await;
    let proxy = proxy::new()
        .backend("a", b.addr())
        .route("r", "/", &["a"], "round_robin")
        .start();
    let mut c = client::Client::connect(proxy.admin_addr()).await;
    let req = client::request(http::Method::GET, "/admin/diagnose")
        .header("accept", "text/html")
        .body(support::body::empty())
        .unwrap();
    let page = c.request(req).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    for id in [
        "id=\"run\"",
        "id=\"config\"",
        "id=\"backends\"",
        "id=\"generated\"",
    ] {
        assert!(html.contains(id), "{id} missing");
    }
    let script = proxy.admin_get("/ui/diagnose.js").await.text();
    for needle in ["\"/admin/diagnose\"", "method: \"POST\"", "data-backend"] {
        assert!(script.contains(needle), "{needle} missing from diagnose.js");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_backends_are_probed_too() {
    let fixed = server::fixed("static").await;
    let registered = engine(&["qwen"]).await;
    let proxy = proxy::new().to(fixed.addr()).discovery().start();
    let body = serde_json::json!({
        "id": "gpu-7",
        "address": registered.local_addr().to_string(),
        "ttl": "1m",
    });
    let (status, doc) =
        support::reload::post(&proxy, "/admin/backends", body.to_string(), None).await;
    assert_eq!(status, 201, "{doc}");
    let doc = diagnose::run(&proxy).await;
    let names: Vec<&str> = doc["backends"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(names, ["b0", "gpu-7"]);
    let gpu = backend(&doc, "gpu-7");
    assert_eq!(gpu["source"], "registered");
    assert_eq!(gpu["probe"]["models"]["ids"], serde_json::json!(["qwen"]));
    // The static one answers every path with text: its model list is no model list.
    let b0 = &backend(&doc, "b0")["probe"];
    assert_eq!(b0["http"]["status"], 200);
    assert_eq!(b0["models"]["cause"], "not_a_model_list", "{b0:#}");
}
