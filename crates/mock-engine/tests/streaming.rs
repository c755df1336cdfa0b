//! Server-sent-event streaming: pacing, chunk shapes, terminator, usage, disconnects.

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_mock_engine::tokens::{chat_prompt, generate_text};
use switchyard_mock_engine::MockEngineArgs;

fn parse(data: &[String]) -> Vec<Value> {
    data.iter()
        .take_while(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn chunks_arrive_over_time() {
    let engine = start(MockEngineArgs {
        ttft_ms: 200,
        tokens_per_sec: 20.0,
        ..Default::default()
    })
    .await;
    let mut c = Client::connect(engine.local_addr()).await;
    let started = Instant::now();
    let resp = c
        .send(
            Method::POST,
            "/v1/chat/completions",
            Some(chat("stream please", 10, true).to_string().into()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert!(resp.headers().get("content-length").is_none());
    assert_eq!(
        resp.headers()["transfer-encoding"].to_str().unwrap(),
        "chunked"
    );
    let mut body = resp.into_body();
    let mut all = BytesMut::new();
    let mut first_at = None;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            if first_at.is_none() {
                first_at = Some(started.elapsed());
                assert!(
                    !body.is_end_stream(),
                    "first chunk must come before the end"
                );
                assert!(!String::from_utf8_lossy(&data).contains("[DONE]"));
            }
            all.extend_from_slice(&data);
        }
    }
    let total = started.elapsed();
    let first_at = first_at.unwrap();
    // 10 tokens at 20 tok/s: the decode alone takes about 0.45 s after the TTFT.
    assert!(total >= Duration::from_millis(400), "total {total:?}");
    assert!(
        first_at >= Duration::from_millis(150),
        "first chunk before the TTFT: {first_at:?}"
    );
    assert!(
        first_at + Duration::from_millis(200) <= total,
        "first chunk at {first_at:?}, end at {total:?}"
    );
    let data = sse_data(&all);
    assert_eq!(data.last().unwrap(), "[DONE]");
    // role chunk + 10 token chunks + finish chunk + [DONE]
    assert_eq!(data.len(), 13, "{data:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn chat_stream_shape() {
    let engine = start(fast_args()).await;
    let a = post_json(
        engine.local_addr(),
        "/v1/chat/completions",
        &chat("shape test", 4, true),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let data = sse_data(&a.body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
    let chunks = parse(&data);
    assert_eq!(chunks.len(), 6);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "mock-llama");
        assert!(c.get("usage").is_none(), "{c}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let expected = generate_text(&chat_prompt([("user", "shape test")]), 4);
    let mut content = String::new();
    for c in &chunks[1..5] {
        let choice = &c["choices"][0];
        assert!(choice["finish_reason"].is_null());
        let piece = choice["delta"]["content"].as_str().unwrap();
        assert_eq!(piece.split_whitespace().count(), 1);
        content.push_str(piece);
    }
    assert_eq!(content, expected);
    let last = &chunks[5]["choices"][0];
    assert_eq!(last["finish_reason"], "length");
    assert_eq!(last["delta"], json!({}));
    assert_eq!(engine.requests_served(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn include_usage_adds_a_usage_chunk() {
    let engine = start(fast_args()).await;
    let mut body = chat("count my tokens", 3, true);
    body["stream_options"] = json!({"include_usage": true});
    let a = post_json(engine.local_addr(), "/v1/chat/completions", &body).await;
    let data = sse_data(&a.body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = parse(&data);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(
        usage_chunk["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );
    assert_eq!(
        chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
        "length"
    );
    engine.shutdown().await;
}

#[tokio::test]
async fn completions_stream() {
    let engine = start(fast_args()).await;
    let a = post_json(
        engine.local_addr(),
        "/v1/completions",
        &json!({"prompt": "p q", "max_tokens": 3, "stream": true,
                "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(a.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&a.body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = parse(&data);
    // 3 token chunks, the finish chunk, the usage chunk.
    assert_eq!(chunks.len(), 5);
    let text: String = chunks[..3]
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "text_completion");
            c["choices"][0]["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(text, generate_text("p q", 3));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "length");
    assert_eq!(chunks[3]["choices"][0]["text"], "");
    assert_eq!(chunks[4]["usage"]["total_tokens"], 5);
    engine.shutdown().await;
}

#[tokio::test]
async fn streamed_bytes_are_deterministic() {
    let engine = start(fast_args()).await;
    let mut c = Client::connect(engine.local_addr()).await;
    let a = c
        .post_json("/v1/chat/completions", &chat("again", 6, true))
        .await;
    let b = c
        .post_json("/v1/chat/completions", &chat("again", 6, true))
        .await;
    assert_eq!(a.body, b.body);
    engine.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_frees_the_slot() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 20.0,
        max_concurrent: 1,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let resp = c
        .send(
            Method::POST,
            "/v1/chat/completions",
            Some(chat("a very long answer", 100_000, true).to_string().into()),
        )
        .await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    assert_eq!(engine.requests_running(), 1);
    drop(body);
    c.close();
    wait_for(Duration::from_secs(10), "the slot to be freed", || async {
        engine.requests_running() == 0 && engine.kv_cache_usage() == 0.0
    })
    .await;
    // The single slot is usable again.
    let a = post_json(
        addr,
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 1}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(engine.requests_served(), 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_on_a_multi_thread_runtime() {
    let engine = start(MockEngineArgs {
        ttft_ms: 10,
        tokens_per_sec: 500.0,
        ..Default::default()
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = engine.local_addr();
        tasks.push(tokio::spawn(async move {
            let a = post_json(
                addr,
                "/v1/chat/completions",
                &chat(&format!("n{i}"), 10, true),
            )
            .await;
            sse_data(&a.body).len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 13);
    }
    assert_eq!(engine.requests_served(), 8);
    engine.shutdown().await;
}
