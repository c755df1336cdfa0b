//! Health checks that speak to inference engines: `ai` finds the declared models in
//! `GET /v1/models` (and `ai completion` gets a one-token answer), and the progress check
//! ejects an engine that still answers `/health` but has stopped producing tokens.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::body::full;
use support::client::{self, request, Answer, Client};
use support::server::{self, respond};
use support::{proxy, wait_for, DEADLINE};
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine(name: &str, models: &[&str]) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some(name.into()),
            models: models.iter().map(|m| m.to_string()).collect(),
            ttft_ms: 0,
            tokens_per_sec: 200.0,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn fast_checks(s: &mut switchyard_config::ServerConfig) {
    s.health_interval = Duration::from_millis(50);
    s.health_timeout = Duration::from_secs(2);
    s.health_fall = 2;
    s.health_rise = 2;
}

async fn health(proxy: &proxy::Proxy, i: usize) -> Value {
    proxy.stats().await["backends"][i]["health"].clone()
}

async fn state(proxy: &proxy::Proxy, i: usize) -> String {
    health(proxy, i).await["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_check_passes_when_the_engine_lists_the_declared_models_and_fails_when_not() {
    let e1 = engine("e1", &["llama-3-8b", "qwen"]).await;
    let e2 = engine("e2", &["llama-3-8b"]).await;
    let proxy = proxy::new()
        .server(fast_checks)
        // Served as plain `llama-3-8b`: a declared version is found under the bare name.
        .backend("a", e1.local_addr())
        .models(&["llama-3-8b@v2", "qwen"])
        .health("ai")
        // e2 does not serve mistral.
        .backend("b", e2.local_addr())
        .models(&["llama-3-8b", "mistral"])
        .health("ai")
        // No models declared: any model list with a model in it passes.
        .backend("c", e2.local_addr())
        .health("ai")
        .route("r", "/", &["a", "b", "c"], "round_robin")
        .start();
    wait_for(DEADLINE, "a and c up, b down", || async {
        state(&proxy, 0).await == "up"
            && state(&proxy, 1).await == "down"
            && state(&proxy, 2).await == "up"
    })
    .await;
    let b = health(&proxy, 1).await;
    assert_eq!(b["check"], "ai");
    assert_eq!(b["ok"], 0, "{b}");
    assert_eq!(proxy.backend_stats(1).await["up"], false);
    assert_eq!(proxy.backend_stats(0).await["up"], true);
    assert_eq!(health(&proxy, 0).await["failed"], 0);
}

/// A fake engine: `/v1/models` lists `llama`; `/v1/chat/completions` answers 200, or 500 while
/// `broken`, and keeps the last request body it got.
struct FakeEngine {
    backend: server::Backend,
    broken: Arc<AtomicBool>,
    last_completion: Arc<Mutex<Option<Value>>>,
}

async fn fake_engine() -> FakeEngine {
    let broken = Arc::new(AtomicBool::new(false));
    let last = Arc::new(Mutex::new(None));
    let backend = {
        let (broken, last) = (Arc::clone(&broken), Arc::clone(&last));
        server::serve(move |req| {
            let (broken, last) = (broken.load(SeqCst), Arc::clone(&last));
            async move {
                match req.uri().path() {
                    "/v1/models" => respond(
                        StatusCode::OK,
                        json!({"object": "list", "data": [{"id": "llama", "object": "model"}]})
                            .to_string(),
                    ),
                    "/v1/chat/completions" => {
                        let body = client::read(http::Response::new(req.into_body()))
                            .await
                            .json();
                        *last.lock().unwrap() = Some(body);
                        if broken {
                            respond(StatusCode::INTERNAL_SERVER_ERROR, "{}")
                        } else {
                            respond(StatusCode::OK, "{\"choices\": []}")
                        }
                    }
                    _ => respond(StatusCode::NOT_FOUND, ""),
                }
            }
        })
        .await
    };
    FakeEngine {
        backend,
        broken,
        last_completion: last,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_completion_check_asks_for_one_token_and_follows_the_answer() {
    let mock = engine("mock", &["qwen"]).await;
    let fake = fake_engine().await;
    let proxy = proxy::new()
        .server(fast_checks)
        .backend("mock", mock.local_addr())
        .models(&["qwen"])
        .health("ai completion")
        .backend("fake", fake.backend.addr())
        .models(&["llama@v2"])
        .health("ai completion")
        .route("r", "/", &["mock", "fake"], "round_robin")
        .start();
    wait_for(DEADLINE, "both up", || async {
        state(&proxy, 0).await == "up" && state(&proxy, 1).await == "up"
    })
    .await;
    // The real mock engine answered a completion.
    assert!(mock.requests_served() > 0);
    // One token of the declared model, under the id the engine listed.
    let sent = fake.last_completion.lock().unwrap().clone().unwrap();
    assert_eq!(sent["model"], "llama");
    assert_eq!(sent["max_tokens"], 1);
    assert_eq!(sent["stream"], false);

    fake.broken.store(true, SeqCst);
    wait_for(DEADLINE, "fake down", || async {
        state(&proxy, 1).await == "down"
    })
    .await;
    assert_eq!(state(&proxy, 0).await, "up");
    fake.broken.store(false, SeqCst);
    wait_for(DEADLINE, "fake up again", || async {
        state(&proxy, 1).await == "up"
    })
    .await;
}

fn chat(max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "mock-llama",
        "messages": [{"role": "user", "content": "Tell me a long story"}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

async fn post_chat(c: &mut Client, body: &Value) -> Answer {
    c.request(
        request(Method::POST, "/v1/chat/completions")
            .header("content-type", "application/json")
            .body(full(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_engine_that_still_answers_health_is_ejected_by_the_progress_check() {
    let a = engine("a", &["mock-llama"]).await;
    let b = engine("b", &["mock-llama"]).await;
    let proxy = proxy::new()
        .server(|s| {
            fast_checks(s);
            s.metrics_interval = Duration::from_millis(50);
            s.metrics_timeout = Duration::from_secs(1);
        })
        .backend("a", a.local_addr())
        .health("http /health 200")
        .metrics("/metrics")
        .progress_timeout(Duration::from_millis(500))
        .backend("b", b.local_addr())
        .health("http /health 200")
        .metrics("/metrics")
        .progress_timeout(Duration::from_millis(500))
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    wait_for(DEADLINE, "both up", || async {
        state(&proxy, 0).await == "up" && state(&proxy, 1).await == "up"
    })
    .await;

    // A long generation runs on a, straight to the engine, tokens flowing...
    let a_addr = a.local_addr();
    let long = tokio::spawn(async move {
        let mut c = Client::connect(a_addr).await;
        let resp = c
            .send(
                request(Method::POST, "/v1/chat/completions")
                    .header("content-type", "application/json")
                    .body(full(chat(100_000, true).to_string()))
                    .unwrap(),
            )
            .await;
        let mut body = resp.into_body();
        let mut received = Vec::new();
        client::read_rest(&mut body, &mut received).await;
    });
    wait_for(DEADLINE, "a generating", || async {
        a.requests_running() >= 1 && a.generation_tokens() > 0
    })
    .await;
    // ...well past the progress timeout: a busy engine is not a hung one.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(state(&proxy, 0).await, "up");

    // Then it hangs: /health still answers 200, no more tokens.
    a.set_hung(true);
    wait_for(DEADLINE, "a ejected", || async {
        proxy.backend_stats(0).await["up"] == false
    })
    .await;
    assert_eq!(state(&proxy, 0).await, "down");
    // Its /health check keeps passing all along.
    let ok_before = health(&proxy, 0).await["ok"].as_u64().unwrap();
    wait_for(DEADLINE, "a's /health check still passing", || async {
        health(&proxy, 0).await["ok"].as_u64().unwrap() > ok_before + 2
    })
    .await;
    assert_eq!(proxy.backend_stats(0).await["up"], false);
    assert!(health(&proxy, 0).await["failed"].as_u64().unwrap() > 0);

    // Traffic through the proxy goes to b only (a request sent to a would never finish).
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..6 {
        let ans = post_chat(&mut c, &chat(2, false)).await;
        assert_eq!(ans.status, StatusCode::OK, "{}", ans.text());
        assert_eq!(ans.header("x-mock-engine"), Some("b"));
    }

    // Unhung, the long generation resumes: a is back at once.
    a.set_hung(false);
    wait_for(DEADLINE, "a back", || async {
        proxy.backend_stats(0).await["up"] == true
    })
    .await;
    assert_eq!(state(&proxy, 0).await, "up");
    let mut engines = Vec::new();
    for _ in 0..4 {
        let ans = post_chat(&mut c, &chat(2, false)).await;
        assert_eq!(ans.status, StatusCode::OK, "{}", ans.text());
        engines.push(ans.header("x-mock-engine").unwrap_or("").to_string());
    }
    assert!(engines.iter().any(|e| e == "a"), "{engines:?}");
    long.abort();
}
