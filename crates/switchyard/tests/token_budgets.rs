//! `[budget NAME]`: LLM token budgets through the real proxy, with the mock inference engine
//! as the backend. A request's estimate is reserved at admission (429 with `Retry-After` and
//! `x-ratelimit-*-tokens` when the bucket holds less, before any backend is touched), then
//! replaced by the usage the engine reported: from the JSON body, from the final SSE chunk,
//! or by counting SSE events. Keys and models are budgeted apart.
//!
//! The budgets refill at 1 token a minute: over a test's few seconds the refill is at most one
//! token, so the figures below hold within 1 whatever the machine's speed.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::body::full;
use support::client::{request, Answer, Client};
use support::{proxy, wait_for, DEADLINE};
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine() -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some("engine-1".into()),
            models: vec!["llama".into(), "qwen".into()],
            ttft_ms: 0,
            tokens_per_sec: 0.0,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn chat(model: &str, content: &str, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
    })
}

async fn post(addr: SocketAddr, key: &str, body: &Value) -> Answer {
    Client::connect(addr)
        .await
        .request(
            request(Method::POST, "/v1/chat/completions")
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {key}"))
                .body(full(body.to_string()))
                .unwrap(),
        )
        .await
}

fn num(a: &Answer, name: &str) -> u64 {
    a.header(name)
        .unwrap_or_else(|| panic!("no {name}: {}", a.text()))
        .parse()
        .unwrap()
}

/// Waits until budget `i` has settled `n` requests' worth of charges (it settles when the
/// exchange ends, just after the client has the body), then returns its `/stats` entry.
async fn settled(p: &proxy::Proxy, i: usize, charged: u64) -> Value {
    wait_for(DEADLINE, &format!("{charged} tokens charged"), || async {
        p.stats().await["budgets"][i]["tokens_charged"].as_u64() == Some(charged)
    })
    .await;
    p.stats().await["budgets"][i].clone()
}

/// `x` is `want`, or one more (a token refilled during the test).
fn about(x: u64, want: u64, what: &str) {
    assert!(x == want || x == want + 1, "{what}: {x}, expected {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_streamed_usage_is_charged() {
    let engine = engine().await;
    let p = proxy::new()
        .to(engine.local_addr())
        .budget("per-key", 1, 10_000, |_| {})
        .start();
    // 16 bytes of prompt: an estimate of 4 + 20.
    let first = post(p.addr(), "sk-a", &chat("llama", "0123456789abcdef", 20)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(num(&first, "x-ratelimit-limit-tokens"), 10_000);
    about(
        num(&first, "x-ratelimit-remaining-tokens"),
        10_000 - 24,
        "after one",
    );
    assert!(first.header("x-ratelimit-reset-tokens").is_some());
    assert!(
        first.header("x-ratelimit-limit-requests").is_none(),
        "no [limit]"
    );
    let used = first.json()["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used > 20, "{}", first.text());
    let b = settled(&p, 0, used).await;
    assert_eq!(
        (b["admitted"].as_u64(), b["tokens_reserved"].as_u64()),
        (Some(1), Some(24))
    );
    // The next request sees the real usage taken, not the estimate.
    let second = post(p.addr(), "sk-a", &chat("llama", "0123456789abcdef", 20)).await;
    assert_eq!(second.status, StatusCode::OK);
    about(
        num(&second, "x-ratelimit-remaining-tokens"),
        10_000 - used - 24,
        "after two",
    );
    let used2 = second.json()["usage"]["total_tokens"].as_u64().unwrap();
    settled(&p, 0, used + used2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_usage_from_the_final_chunk_or_counted_events() {
    let engine = engine().await;
    let p = proxy::new()
        .to(engine.local_addr())
        .budget("per-key", 1, 10_000, |_| {})
        .start();
    // With include_usage: the last chunk's usage is charged.
    let mut req = chat("llama", "tell me a story", 12);
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let a = post(p.addr(), "sk-a", &req).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    about(
        num(&a, "x-ratelimit-remaining-tokens"),
        10_000 - 4 - 12,
        "reserved",
    );
    let text = a.text();
    let usage = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v["usage"]["total_tokens"].as_u64())
        .expect("a usage chunk");
    settled(&p, 0, usage).await;

    // Without usage: the prompt estimate plus one token per data event.
    req["stream_options"] = json!({"include_usage": false});
    let b = post(p.addr(), "sk-b", &req).await;
    assert_eq!(b.status, StatusCode::OK);
    let events = b
        .text()
        .lines()
        .filter(|l| l.starts_with("data:") && !l.contains("[DONE]"))
        .count() as u64;
    assert!(events >= 12, "{}", b.text());
    settled(&p, 0, usage + 4 + events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_is_429_before_the_engine_and_other_keys_go_on() {
    let engine = engine().await;
    let p = proxy::new()
        .to(engine.local_addr())
        .budget("per-key", 1, 100, |_| {})
        .start();
    let big = chat("llama", "0123456789abcdef", 80);
    let ok = post(p.addr(), "sk-a", &big).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let used = ok.json()["usage"]["total_tokens"].as_u64().unwrap();
    settled(&p, 0, used).await;

    let refused = post(p.addr(), "sk-a", &big).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.text()
    );
    assert_eq!(refused.proxy_error(), Some("budget_exceeded"));
    let retry = num(&refused, "retry-after");
    assert!(retry >= 60, "{retry}: at 1 token a minute, minutes away");
    assert_eq!(num(&refused, "x-ratelimit-limit-tokens"), 100);
    about(
        num(&refused, "x-ratelimit-remaining-tokens"),
        100u64.saturating_sub(used),
        "left",
    );
    assert!(refused.header("x-ratelimit-reset-tokens").is_some());
    let body = refused.json();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "tokens");

    // Another key has its own bucket.
    assert_eq!(post(p.addr(), "sk-b", &big).await.status, StatusCode::OK);
    assert_eq!(
        engine.requests_served(),
        2,
        "the refused request never reached it"
    );
    p.expect_errors("budget_exceeded", 1).await;
    let b = &p.stats().await["budgets"][0];
    assert_eq!(
        (b["admitted"].as_u64(), b["denied"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(b["keys"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_budgeted_apart_and_limits_add_their_headers() {
    let engine = engine().await;
    let p = proxy::new()
        .to(engine.local_addr())
        .budget("per-model", 1, 100, |b| {
            b.models = vec!["llama".into(), "qwen".into()]
        })
        .limit("rpm", "api_key", "60/m", 5, |_| {})
        .start();
    let llama = post(p.addr(), "sk-a", &chat("llama", "0123", 90)).await;
    assert_eq!(llama.status, StatusCode::OK, "{}", llama.text());
    assert_eq!(llama.header("x-ratelimit-limit-requests"), Some("5"));
    assert_eq!(llama.header("x-ratelimit-remaining-requests"), Some("4"));
    assert!(llama.header("x-ratelimit-reset-requests").is_some());
    about(
        num(&llama, "x-ratelimit-remaining-tokens"),
        100 - 91,
        "llama",
    );
    let used = llama.json()["usage"]["total_tokens"].as_u64().unwrap();
    settled(&p, 0, used).await;
    assert_eq!(
        post(p.addr(), "sk-a", &chat("llama", "0123", 90))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The same key's other model has its own bucket.
    let qwen = post(p.addr(), "sk-a", &chat("qwen", "0123", 90)).await;
    assert_eq!(qwen.status, StatusCode::OK, "{}", qwen.text());
    about(num(&qwen, "x-ratelimit-remaining-tokens"), 100 - 91, "qwen");
    assert_eq!(qwen.header("x-ratelimit-remaining-requests"), Some("2"));
    assert_eq!(p.stats().await["budgets"][0]["keys"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backend_is_refunded_in_full() {
    let dead = support::server::dead_addr();
    let p = proxy::new()
        .to(dead)
        .budget("per-key", 1, 100, |_| {})
        .start();
    for _ in 0..3 {
        let a = post(p.addr(), "sk-a", &chat("llama", "0123", 90)).await;
        assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
    }
    let b = &p.stats().await["budgets"][0];
    assert_eq!(b["admitted"], 3, "each refund made room for the next: {b}");
    assert_eq!(
        (b["tokens_reserved"].as_u64(), b["tokens_charged"].as_u64()),
        (Some(273), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_over_budget_is_resource_exhausted() {
    use switchyard_grpc_echo::pb::Msg;
    let backend = switchyard_grpc_echo::spawn_server().await.unwrap();
    let p = proxy::new()
        .backend("grpc", backend)
        .protocol("h2c")
        .route("default", "/", &["grpc"], "round_robin")
        .budget("calls", 1, 10, |b| b.key = "global".parse().unwrap())
        .start();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", p.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = switchyard_grpc_echo::EchoClient::new(channel);
    let msg = || Msg {
        text: "hi".into(),
        data: vec![],
        count: 0,
    };
    // No usage in a gRPC reply: the reservation (the whole bucket) stands.
    c.unary(msg()).await.unwrap();
    let status = c.unary(msg()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.metadata().get("x-switchyard-error").unwrap(),
        "budget_exceeded"
    );
    assert_eq!(
        status.metadata().get("x-ratelimit-limit-tokens").unwrap(),
        "10"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_audited_with_the_budget_name() {
    let engine = engine().await;
    let audit = proxy::temp_path("audit.log");
    let p = proxy::new()
        .server(|s| s.audit.log = Some(audit.clone()))
        .to(engine.local_addr())
        .budget("tight", 1, 10, |_| {})
        .start();
    assert_eq!(
        post(p.addr(), "sk-a", &chat("llama", "0123", 5))
            .await
            .status,
        StatusCode::OK
    );
    let refused = post(p.addr(), "sk-a", &chat("llama", "0123", 5)).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    wait_for(DEADLINE, "2 audit lines", || async { lines().len() >= 2 }).await;
    let lines = lines();
    assert_eq!(lines[0]["denied"], Value::Null);
    assert_eq!(lines[0]["model"], "llama");
    assert_eq!(lines[1]["denied"], "budget:tight");
    assert_eq!(lines[1]["status"], 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_stream_is_charged_what_was_streamed() {
    // 20 tokens a second: 200 tokens would take ten seconds; the client leaves after a few.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let engine = spawn_on(
        listener,
        MockEngineArgs {
            models: vec!["llama".into()],
            ttft_ms: 0,
            tokens_per_sec: 20.0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let p = proxy::new()
        .to(engine.local_addr())
        .budget("per-key", 1, 10_000, |_| {})
        .start();
    let mut req = chat("llama", "0123456789abcdef", 200);
    req["stream"] = json!(true);
    let mut c = Client::connect(p.addr()).await;
    let resp = c
        .send(
            request(Method::POST, "/v1/chat/completions")
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-a")
                .body(full(req.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    about(
        resp.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
        10_000 - 204,
        "reserved",
    );
    let mut body = resp.into_body();
    let mut received = Vec::new();
    // The role chunk and a few tokens.
    while received.windows(5).filter(|w| *w == b"data:").count() < 5 {
        let frame = body.frame().await.expect("more events").expect("a frame");
        if let Ok(data) = frame.into_data() {
            received.extend_from_slice(&data);
        }
    }
    drop(body);
    drop(c);
    wait_for(DEADLINE, "the settlement", || async {
        p.stats().await["budgets"][0]["tokens_charged"].as_u64() > Some(0)
    })
    .await;
    let charged = p.stats().await["budgets"][0]["tokens_charged"]
        .as_u64()
        .unwrap();
    // The prompt estimate (4) plus the events that passed the proxy: at least those the client
    // saw, far fewer than the 200 reserved for the completion.
    assert!((4 + 5..100).contains(&charged), "charged {charged}");
    assert_eq!(p.stats().await["budgets"][0]["tokens_reserved"], 204);
}
