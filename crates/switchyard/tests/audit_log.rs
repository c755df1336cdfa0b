//! The audit log: one JSON line per request (sampled) and per control-plane action, written
//! off the request path, rotated by size, with no secret in any line.

mod support;

use http::{Method, StatusCode};
use serde_json::Value;
use support::body::full;
use support::client::{self, Client};
use support::{proxy, server, wait_for, DEADLINE};

const ADMIN_TOKEN: &str = "adm-c4f1e8a2b7-secret";
const CLIENT_KEY: &str = "sk-client-9d2b6f0e41-secret";

fn lines_of(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn wait_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    wait_for(DEADLINE, &format!("{n} audit lines"), || async {
        lines_of(path).len() >= n
    })
    .await;
    lines_of(path)
}

#[tokio::test]
async fn a_proxied_request_gets_one_line_with_every_field() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::echo().await;
    let p = proxy::new()
        .admin_token(ADMIN_TOKEN)
        .server(|s| s.audit.log = Some(audit.clone()))
        .backend("gpu-a", backend.addr())
        .models(&["llama-3"])
        .route("chat", "/v1/", &["gpu-a"], "round_robin")
        .start();
    let mut c = Client::connect(p.addr()).await;
    let req = client::request(Method::POST, "/v1/chat/completions?api_key=query-secret")
        .header("authorization", format!("Bearer {CLIENT_KEY}"))
        .header("content-type", "application/json")
        .body(full(r#"{"model":"llama-3","messages":[]}"#))
        .unwrap();
    let a = c.request(req).await;
    assert_eq!(a.status, StatusCode::OK);

    let lines = wait_lines(&audit, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let l = &lines[0];
    assert_eq!(l["type"], "request");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["method"], "POST");
    assert_eq!(l["host"], "test.local");
    assert_eq!(l["path"], "/v1/chat/completions");
    assert_eq!(l["model"], "llama-3");
    assert_eq!(l["route"], "chat");
    assert_eq!(l["backend"], "gpu-a");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes"], a.body.len() as u64);
    assert!(l.get("denied").is_none(), "no null fields: {l}");
    let key_id = l["key_id"].as_str().unwrap();
    assert_eq!(key_id.len(), 8);
    assert!(key_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let duration = l["duration_ms"].as_f64().unwrap();
    let ttft = l["ttft_ms"].as_f64().expect("ttft of a streamed body");
    assert!(
        ttft > 0.0 && ttft <= duration,
        "ttft {ttft} duration {duration}"
    );
    assert!(l["time"].as_str().unwrap().ends_with('Z'));

    let text = std::fs::read_to_string(&audit).unwrap();
    for secret in [CLIENT_KEY, ADMIN_TOKEN, "query-secret"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    let stats = p.stats().await;
    assert_eq!(stats["audit"]["written"], 1);
    assert_eq!(stats["audit"]["dropped"], 0);
    assert_eq!(stats["audit"]["write_errors"], 0);
}

#[tokio::test]
async fn a_refused_request_says_why() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::fixed("ok").await;
    let p = proxy::new()
        .server(|s| s.audit.log = Some(audit.clone()))
        .backend("b0", backend.addr())
        .route("api", "/api/", &["b0"], "round_robin")
        .start();
    let a = client::get(p.addr(), "/elsewhere").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let l = &wait_lines(&audit, 1).await[0];
    assert_eq!(l["status"], 404);
    assert_eq!(l["denied"], "no_route");
    // Fields without a value are left out, not written as null.
    for absent in ["route", "backend", "key_id", "model"] {
        assert!(l.get(absent).is_none(), "{absent}: {l}");
    }
    assert!(l.get("ttft_ms").is_none(), "no streamed body: {l}");
}

#[tokio::test]
async fn the_log_rotates_by_size_into_kept_files() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::fixed("ok").await;
    let p = proxy::new()
        .server(|s| {
            s.audit.log = Some(audit.clone());
            s.audit.max_bytes = 1024;
            s.audit.keep = 2;
        })
        .to(backend.addr())
        .start();
    let mut c = Client::connect(p.addr()).await;
    for _ in 0..30 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    wait_for(DEADLINE, "30 lines written", || async {
        p.stats().await["audit"]["written"] == 30
    })
    .await;
    let stats = p.stats().await;
    let rotations = stats["audit"]["rotations"].as_u64().unwrap();
    assert!(rotations >= 2, "{rotations} rotations");
    let rotated = |n: u32| {
        let mut s = audit.as_os_str().to_owned();
        s.push(format!(".{n}"));
        std::path::PathBuf::from(s)
    };
    for path in [audit.clone(), rotated(1), rotated(2)] {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 1024, "{} is {size} bytes", path.display());
        assert!(lines_of(&path).iter().all(|l| l["type"] == "request"));
    }
    assert!(!rotated(3).exists(), "only audit_keep = 2 rotated files");
    // The newest file holds the latest lines: nothing lost across the fresh file.
    assert!(!lines_of(&audit).is_empty() || lines_of(&rotated(1)).len() > 1);
}

#[tokio::test]
async fn sampling_zero_keeps_control_plane_lines_only() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::fixed("ok").await;
    let p = proxy::new()
        .admin_token(ADMIN_TOKEN)
        .server(|s| {
            s.audit.log = Some(audit.clone());
            s.audit.sample = 0;
        })
        .to(backend.addr())
        .start();
    let mut c = Client::connect(p.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
    }
    let a = client::get_authorized(p.admin_addr(), "/stats", Some("guess")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let lines = wait_lines(&audit, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["type"], "control");
    assert_eq!(lines[0]["action"], "admin_auth_failed");
    let stats = p.stats().await;
    assert_eq!(stats["audit"]["written"], 1);
    assert_eq!(stats["audit"]["dropped"], 0);
}

#[tokio::test]
async fn an_unwritable_audit_log_is_a_start_error_naming_it() {
    let dir = proxy::temp_path("no-such-dir");
    let path = dir.join("audit.log");
    let err = proxy::new()
        .server(|s| s.audit.log = Some(path.clone()))
        .to(support::server::dead_addr())
        .try_start()
        .expect_err("audit_log in a missing directory");
    let msg = err.to_string();
    assert!(
        msg.contains("audit_log") && msg.contains(&*path.to_string_lossy()),
        "{msg}"
    );
}

#[tokio::test]
async fn without_audit_log_stats_say_off() {
    let backend = server::fixed("ok").await;
    let p = proxy::new().to(backend.addr()).start();
    assert_eq!(client::get(p.addr(), "/").await.status, StatusCode::OK);
    let stats = p.stats().await;
    assert_eq!(stats["audit"]["enabled"], false);
    assert_eq!(stats["audit"]["written"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_records_its_time_to_first_byte() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::serve(|_req| async {
        let (tx, body) = support::body::channel();
        tokio::spawn(async move {
            // The head and first event at once, the rest 300 ms later.
            tx.send(bytes::Bytes::from("data: first\n\n"))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            tx.send(bytes::Bytes::from("data: [DONE]\n\n"))
                .await
                .unwrap();
        });
        http::Response::new(body)
    })
    .await;
    let p = proxy::new()
        .server(|s| s.audit.log = Some(audit.clone()))
        .to(backend.addr())
        .start();
    let a = client::get(p.addr(), "/v1/stream").await;
    assert_eq!(a.status, StatusCode::OK);
    let l = &wait_lines(&audit, 1).await[0];
    let ttft = l["ttft_ms"].as_f64().unwrap();
    let duration = l["duration_ms"].as_f64().unwrap();
    // The first byte came well before the end (300 ms apart at the backend).
    assert!(duration >= 300.0, "duration {duration} ms");
    assert!(
        duration - ttft >= 200.0,
        "ttft {ttft} ms, duration {duration} ms"
    );
    assert_eq!(l["bytes"], 13 + 14);
}
