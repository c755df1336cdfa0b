//! Non-streamed completions, models, health and error handling.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_mock_engine::tokens::{chat_prompt, count_prompt_tokens, generate_text};
use switchyard_mock_engine::MockEngineArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_openai_error(answer: &Answer, status: StatusCode, code: &str) -> String {
    assert_eq!(answer.status, status, "body: {}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let v = answer.json();
    let err = &v["error"];
    assert!(err["type"].is_string(), "{v}");
    assert_eq!(err["code"], code, "{v}");
    err["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn chat_completion_shape_and_usage() {
    let engine = start(MockEngineArgs {
        name: Some("engine-a".into()),
        ..fast_args()
    })
    .await;
    let a = post_json(
        engine.local_addr(),
        "/v1/chat/completions",
        &chat("hello there world", 5, false),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("x-mock-engine"), Some("engine-a"));
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 0);
    assert_eq!(v["model"], "mock-llama");
    assert_eq!(v["system_fingerprint"], "engine-a");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap();
    let prompt = chat_prompt([("user", "hello there world")]);
    assert_eq!(content, generate_text(&prompt, 5));
    assert_eq!(content.split_whitespace().count(), 5);
    let prompt_tokens = count_prompt_tokens(&prompt);
    assert_eq!(prompt_tokens, 4);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9})
    );
    assert_eq!(engine.requests_served(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn text_completion_shape_and_defaults() {
    let engine = start(MockEngineArgs {
        models: vec!["first".into(), "second".into()],
        default_max_tokens: 7,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    // No model: the first one; no max_tokens: the default.
    let a = post_json(addr, "/v1/completions", &json!({"prompt": "one two three"})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-mock-engine"), Some(addr.to_string().as_str()));
    let v = a.json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "first");
    assert_eq!(v["choices"][0]["text"], generate_text("one two three", 7));
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10})
    );

    // Several prompts: one choice each.
    let a = post_json(
        addr,
        "/v1/completions",
        &json!({"model": "second", "prompt": ["a b", "c"], "max_tokens": 2}),
    )
    .await;
    let v = a.json();
    assert_eq!(v["model"], "second");
    assert_eq!(v["choices"][0]["text"], generate_text("a b", 2));
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["choices"][1]["text"], generate_text("c", 2));
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
    );
    assert_eq!(engine.requests_served(), 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn responses_are_deterministic() {
    let engine = start(fast_args()).await;
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let a = c
        .post_json("/v1/chat/completions", &chat("the same prompt", 12, false))
        .await;
    let b = c
        .post_json("/v1/chat/completions", &chat("the same prompt", 12, false))
        .await;
    assert_eq!(a.body, b.body, "same prompt, same bytes");
    let other = c
        .post_json("/v1/chat/completions", &chat("another prompt", 12, false))
        .await;
    let content = |a: &Answer| a.json()["choices"][0]["message"]["content"].clone();
    assert_ne!(content(&a), content(&other));

    let p = json!({"prompt": "x y", "max_tokens": 9});
    let a = c.post_json("/v1/completions", &p).await;
    let b = c.post_json("/v1/completions", &p).await;
    assert_eq!(a.body, b.body);

    // A second engine with the same configuration answers the same bytes too.
    let engine2 = start(MockEngineArgs {
        name: engine.local_addr().to_string().into(),
        ..fast_args()
    })
    .await;
    let b2 = post_json(engine2.local_addr(), "/v1/completions", &p).await;
    assert_eq!(a.body, b2.body);
    engine.shutdown().await;
    engine2.shutdown().await;
}

#[tokio::test]
async fn models_and_health() {
    let engine = start(MockEngineArgs {
        models: vec!["m1".into(), "m2".into()],
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let a = get(addr, "/v1/models").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"object": "list", "data": [
            {"id": "m1", "object": "model", "created": 0, "owned_by": "switchyard-mock"},
            {"id": "m2", "object": "model", "created": 0, "owned_by": "switchyard-mock"},
        ]})
    );
    let h = get(addr, "/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.text(), "ok");
    assert!(h.header("x-mock-engine").is_some());

    let m = get(addr, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.text();
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:request_success_total",
    ] {
        assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        assert!(text.contains(&format!("# TYPE {name} ")), "{text}");
        assert!(
            text.contains(&format!("{name}{{model_name=\"m1\"}} 0\n")),
            "{text}"
        );
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn unknown_model_is_404_listing_models() {
    let engine = start(MockEngineArgs {
        models: vec!["alpha".into(), "beta".into()],
        ..fast_args()
    })
    .await;
    let mut body = chat("hi", 1, false);
    body["model"] = json!("gamma");
    let a = post_json(engine.local_addr(), "/v1/chat/completions", &body).await;
    let msg = assert_openai_error(&a, StatusCode::NOT_FOUND, "model_not_found");
    assert!(
        msg.contains("gamma") && msg.contains("alpha") && msg.contains("beta"),
        "{msg}"
    );
    assert!(a.header("x-mock-engine").is_some());
    assert_eq!(engine.requests_served(), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_400() {
    let engine = start(fast_args()).await;
    let mut c = Client::connect(engine.local_addr()).await;
    let a = c
        .request(
            Method::POST,
            "/v1/chat/completions",
            Some("{not json".into()),
        )
        .await;
    assert_openai_error(&a, StatusCode::BAD_REQUEST, "invalid_json");
    let a = c.request(Method::POST, "/v1/completions", None).await;
    assert_openai_error(&a, StatusCode::BAD_REQUEST, "invalid_json");
    for (path, body) in [
        ("/v1/chat/completions", json!({"model": "mock-llama"})),
        ("/v1/chat/completions", json!({"messages": []})),
        ("/v1/chat/completions", json!({"messages": "hi"})),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}),
        ),
        ("/v1/completions", json!({"max_tokens": 3})),
        ("/v1/completions", json!({"prompt": 42})),
        ("/v1/completions", json!([1, 2])),
    ] {
        let a = c.post_json(path, &body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text());
        assert!(a.json()["error"]["message"].is_string());
    }
    // The connection is still usable after all these errors.
    assert_eq!(c.get("/health").await.status, StatusCode::OK);
    assert_eq!(engine.connections_accepted(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn unknown_path_and_wrong_method() {
    let engine = start(fast_args()).await;
    let mut c = Client::connect(engine.local_addr()).await;
    let a = c.get("/v2/nothing").await;
    assert_openai_error(&a, StatusCode::NOT_FOUND, "not_found");
    assert!(a.header("x-mock-engine").is_some());

    let a = c.get("/v1/chat/completions").await;
    assert_openai_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("POST"));
    let a = c
        .request(Method::POST, "/v1/models", Some("{}".into()))
        .await;
    assert_openai_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(a.header("allow"), Some("GET, HEAD"));
    let a = c.request(Method::DELETE, "/health", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    engine.shutdown().await;
}

#[tokio::test]
async fn huge_bodies_are_413() {
    let engine = start(MockEngineArgs {
        max_body_bytes: 1024,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let big = json!({"prompt": "word ".repeat(2000)});
    let a = post_json(addr, "/v1/completions", &big).await;
    assert_openai_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large");

    // Chunked body (no Content-Length), over the cap.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = "x".repeat(800);
    let raw = format!(
        "POST /v1/completions HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut tmp = [0u8; 4096];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    if String::from_utf8_lossy(&buf).contains("request_too_large") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");

    // Under the cap is fine.
    let a = post_json(addr, "/v1/completions", &json!({"prompt": "small"})).await;
    assert_eq!(a.status, StatusCode::OK);
    engine.shutdown().await;
}

#[tokio::test]
async fn streamed_content_matches_non_streamed() {
    let engine = start(fast_args()).await;
    let mut c = Client::connect(engine.local_addr()).await;
    let whole = c
        .post_json("/v1/chat/completions", &chat("compare me", 8, false))
        .await;
    let streamed = c
        .post_json("/v1/chat/completions", &chat("compare me", 8, true))
        .await;
    let mut content = String::new();
    for data in sse_data(&streamed.body) {
        if data == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(piece);
        }
    }
    assert_eq!(whole.json()["choices"][0]["message"]["content"], content);
    engine.shutdown().await;
}
