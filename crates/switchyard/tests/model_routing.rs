//! Routing by model: a request reaches only the engines that serve its model (from the JSON
//! body, wherever `model` sits in it, or the `x-model` header); an unknown model gets an
//! OpenAI-style 404 listing what is served; `GET /v1/models` lists the union.

mod support;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::body::{empty, full};
use support::client::{request, Client};
use support::proxy;
use switchyard_mock_engine::{spawn_on, MockEngineArgs, MockEngineHandle};

async fn engine(name: &str, model: &str) -> MockEngineHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_on(
        listener,
        MockEngineArgs {
            name: Some(name.into()),
            models: vec![model.into()],
            ttft_ms: 0,
            tokens_per_sec: 10_000.0,
            ..MockEngineArgs::default()
        },
    )
    .await
    .unwrap()
}

struct Setup {
    llama: MockEngineHandle,
    qwen: MockEngineHandle,
    proxy: proxy::Proxy,
}

async fn setup() -> Setup {
    let llama = engine("llama-engine", "llama-3-8b").await;
    let qwen = engine("qwen-engine", "qwen2").await;
    let proxy = proxy::new()
        .backend("llama", llama.local_addr())
        .models(&["llama-3-8b@v1"])
        .backend("qwen", qwen.local_addr())
        .models(&["qwen2"])
        .route("openai", "/", &["llama", "qwen"], "round_robin")
        .start();
    Setup { llama, qwen, proxy }
}

async fn post(c: &mut Client, body: &Value) -> (StatusCode, Value, Option<String>) {
    let req = request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap();
    let a = c.request(req).await;
    let engine = a.header("x-mock-engine").map(str::to_string);
    (a.status, a.json(), engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_only_engines_serving_their_model() {
    let s = setup().await;
    let mut c = Client::connect(s.proxy.addr()).await;
    for _ in 0..6 {
        let body = json!({"model": "qwen2", "messages": [{"role": "user", "content": "hi"}]});
        let (status, doc, engine) = post(&mut c, &body).await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert_eq!(engine.as_deref(), Some("qwen-engine"));
        assert_eq!(doc["model"], "qwen2");
        // Pinned version and bare name both reach the llama engine.
        for model in ["llama-3-8b@v1", "llama-3-8b"] {
            let body = json!({"messages": [{"role": "user", "content": "hi"}], "model": model});
            let (_, _, engine) = post(&mut c, &body).await;
            assert_eq!(engine.as_deref(), Some("llama-engine"), "{model}");
        }
    }
    assert_eq!(s.qwen.requests_served(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_after_a_large_prompt_and_the_body_arrives_intact() {
    let s = setup().await;
    let big = "word ".repeat(40_000); // 200 KB before `model`
    let body =
        json!({"messages": [{"role": "user", "content": big}], "max_tokens": 3, "model": "qwen2"});
    let mut c = Client::connect(s.proxy.addr()).await;
    let (status, doc, engine) = post(&mut c, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(engine.as_deref(), Some("qwen-engine"));
    // The engine counted every word of the prompt: nothing was lost on the way.
    let direct = {
        let mut d = Client::connect(s.qwen.local_addr()).await;
        post(&mut d, &body).await.1
    };
    assert_eq!(doc["usage"], direct["usage"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_an_openai_404_listing_models() {
    let s = setup().await;
    let mut c = Client::connect(s.proxy.addr()).await;
    let body = json!({"model": "gpt-9", "messages": []});
    let (status, doc, engine) = post(&mut c, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(engine, None);
    assert_eq!(doc["error"]["code"], "model_not_found");
    assert_eq!(doc["error"]["models"], json!(["llama-3-8b@v1", "qwen2"]));
    assert_eq!(s.llama.requests_served() + s.qwen.requests_served(), 0);
    assert_eq!(s.proxy.errors("unknown_model").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_model_and_model_list() {
    let s = setup().await;
    let mut c = Client::connect(s.proxy.addr()).await;
    for _ in 0..4 {
        let req = request(Method::GET, "/health")
            .header("x-model", "qwen2")
            .body(empty())
            .unwrap();
        let a = c.request(req).await;
        assert_eq!(a.header("x-mock-engine"), Some("qwen-engine"));
    }
    let list = c.get("/v1/models").await;
    assert_eq!(list.status, StatusCode::OK);
    let doc = list.json();
    let ids: Vec<&str> = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["llama-3-8b@v1", "qwen2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_named_by_the_path() {
    let s = setup().await;
    let mut c = Client::connect(s.proxy.addr()).await;
    // KServe v2 (with a version), Azure OpenAI deployments, and OpenAI's model retrieval.
    for (path, engine) in [
        ("/v2/models/llama-3-8b/versions/v1/infer", "llama-engine"),
        ("/v2/models/qwen2/infer", "qwen-engine"),
        ("/openai/deployments/qwen2/chat/completions", "qwen-engine"),
        ("/v1/models/llama-3-8b", "llama-engine"),
    ] {
        for _ in 0..3 {
            let a = c.get(path).await;
            assert_eq!(a.header("x-mock-engine"), Some(engine), "{path}");
        }
    }
    let a = c.get("/v2/models/gpt-9/infer").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["error"]["code"], "model_not_found");
}
