//! The mock inference engine behind the proxy: completions come through byte for byte, streamed
//! or not, and the engine's own queue shows requests held beyond `max_concurrent`.

mod support;

use std::net::SocketAddr;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::body::full;
use support::client::{self, request, Answer, Client};
use support::{proxy, wait_for, DEADLINE};
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine(args: MockEngineArgs) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some("engine-1".into()),
            ..args
        },
    )
    .await
    .unwrap()
}

fn chat(content: &str, max_tokens: u32, stream: bool) -> Value {
    json!({
        "model": "mock-llama",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    })
}

async fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Answer {
    Client::connect(addr)
        .await
        .request(
            request(Method::POST, path)
                .header("content-type", "application/json")
                .body(full(body.to_string()))
                .unwrap(),
        )
        .await
}

/// The value of the Prometheus sample `name` (any labels) in `text`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = match rest.strip_prefix('{') {
            Some(r) => r.split_once('}')?.1,
            None => rest,
        };
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_are_byte_identical_through_the_proxy() {
    let engine = engine(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 0.0,
        ..Default::default()
    })
    .await;
    let proxy = proxy::new().to(engine.local_addr()).start();
    for stream in [false, true] {
        let req = chat("tell me about proxies", 24, stream);
        let direct = post_json(engine.local_addr(), "/v1/chat/completions", &req).await;
        let proxied = post_json(proxy.addr(), "/v1/chat/completions", &req).await;
        assert_eq!(direct.status, StatusCode::OK, "{}", direct.text());
        assert_eq!(proxied.status, StatusCode::OK, "{}", proxied.text());
        assert_eq!(proxied.header("x-mock-engine"), Some("engine-1"));
        assert_eq!(
            proxied.header("content-type"),
            direct.header("content-type"),
            "stream={stream}"
        );
        assert!(!direct.body.is_empty());
        assert_eq!(proxied.body, direct.body, "stream={stream}");
        if stream {
            assert!(proxied.text().ends_with("data: [DONE]\n\n"));
        }
    }
    let models = client::get(proxy.addr(), "/v1/models").await;
    assert_eq!(models.status, StatusCode::OK);
    assert_eq!(models.json()["data"][0]["id"], "mock-llama");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_queue_fills_beyond_max_concurrent() {
    // One slot; each request decodes 8 tokens at 10 tokens/s (about 0.8 s).
    let engine = engine(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        max_concurrent: 1,
        ..Default::default()
    })
    .await;
    let engine_addr = engine.local_addr();
    let proxy = proxy::new().to(engine_addr).start();
    let requests: Vec<_> = (0..3)
        .map(|i| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                post_json(
                    addr,
                    "/v1/chat/completions",
                    &chat(&format!("q{i}"), 8, false),
                )
                .await
            })
        })
        .collect();

    wait_for(DEADLINE, "requests waiting in the engine", || async {
        let text = client::get(engine_addr, "/metrics").await.text();
        metric(&text, "vllm:num_requests_waiting").unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(engine.requests_running() <= 1);
    let in_flight = proxy.backend_stats(0).await["in_flight"].as_u64().unwrap();
    assert!(in_flight >= 2, "proxy in_flight {in_flight}");

    for r in requests {
        let a = r.await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.json()["usage"]["completion_tokens"], 8);
    }
    assert_eq!(engine.requests_served(), 3);
    engine.shutdown().await;
}
