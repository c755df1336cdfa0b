//! The hang switch: generation stalls while the engine keeps answering health checks.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard_mock_engine::{MockEngineArgs, MockEngineHandle};

/// Reads a streamed completion, counting the tokens of its complete SSE events.
struct Stream {
    body: Incoming,
    buf: BytesMut,
    tokens: u64,
    done: bool,
}

impl Stream {
    fn new(body: Incoming) -> Self {
        Self {
            body,
            buf: BytesMut::new(),
            tokens: 0,
            done: false,
        }
    }

    /// Reads one frame; false at the end of the body.
    async fn read_frame(&mut self) -> bool {
        let Some(frame) = self.body.frame().await else {
            return false;
        };
        if let Ok(data) = frame.unwrap().into_data() {
            self.buf.extend_from_slice(&data);
        }
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event = self.buf.split_to(end + 2);
            let event = std::str::from_utf8(&event).unwrap().trim_end();
            let data = event.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data).unwrap();
            if v["choices"][0]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
            {
                self.tokens += 1;
            }
        }
        true
    }

    /// Reads until `tokens` tokens arrived.
    async fn read_tokens(&mut self, tokens: u64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.tokens < tokens {
                assert!(self.read_frame().await, "stream ended at {}", self.tokens);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} of {tokens} tokens after 10 s", self.tokens));
    }

    /// Reads to the end of the body.
    async fn read_to_end(&mut self) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.read_frame().await {}
        })
        .await
        .expect("stream did not end within 10 s");
    }
}

async fn open_stream(c: &mut Client, max_tokens: u32) -> Stream {
    let body = json!({"prompt": "hang on", "max_tokens": max_tokens, "stream": true});
    let resp = c
        .send(
            Method::POST,
            "/v1/completions",
            Some(body.to_string().into()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    Stream::new(resp.into_body())
}

/// `/health` and `/v1/models` answer, `/metrics` shows `running` requests and
/// `generated` tokens.
async fn assert_looks_alive(engine: &MockEngineHandle, running: f64, generated: u64) {
    let addr = engine.local_addr();
    assert_eq!(get(addr, "/health").await.status, StatusCode::OK);
    assert_eq!(get(addr, "/v1/models").await.status, StatusCode::OK);
    let text = get(addr, "/metrics").await.text();
    assert_eq!(
        metric(&text, "vllm:num_requests_running"),
        Some(running),
        "{text}"
    );
    assert_eq!(
        metric(&text, "vllm:generation_tokens_total"),
        Some(generated as f64),
        "{text}"
    );
}

#[tokio::test]
async fn a_running_stream_stalls_while_hung_and_completes_once_unhung() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 50.0,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let mut stream = open_stream(&mut c, 40).await;
    stream.read_tokens(3).await;

    engine.set_hung(true);
    assert!(engine.is_hung());
    // Tokens counted before the switch may still be on their way; nothing after them.
    let frozen = engine.generation_tokens();
    assert!((3..40).contains(&frozen), "{frozen}");
    stream.read_tokens(frozen).await;
    assert_eq!(stream.tokens, frozen);
    let next = tokio::time::timeout(Duration::from_millis(500), stream.read_frame()).await;
    assert!(next.is_err(), "a chunk arrived while hung");
    assert_eq!(engine.generation_tokens(), frozen);
    assert_eq!(engine.requests_running(), 1);
    assert_looks_alive(&engine, 1.0, frozen).await;

    let a = Client::connect(addr)
        .await
        .request(Method::POST, "/mock/unhang", None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.body.is_empty());
    assert!(!engine.is_hung());
    stream.read_to_end().await;
    assert!(stream.done);
    assert_eq!(stream.tokens, 40);
    assert_eq!(engine.generation_tokens(), 40);
    assert_eq!(engine.requests_served(), 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn requests_arriving_while_hung_take_a_slot_or_queue_and_wait() {
    let engine = start(MockEngineArgs {
        max_concurrent: 2,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let e = &engine;
    let a = Client::connect(addr)
        .await
        .request(Method::POST, "/mock/hang", None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(engine.is_hung());

    // One non-streamed request and one stream take the two slots; a third one queues.
    let body = json!({"prompt": "still there", "max_tokens": 5});
    let b = body.clone();
    let first = tokio::spawn(async move { post_json(addr, "/v1/completions", &b).await });
    wait_for(
        Duration::from_secs(10),
        "a running request",
        || async move { e.requests_running() == 1 },
    )
    .await;
    let mut c = Client::connect(addr).await;
    let mut second = open_stream(&mut c, 5).await;
    assert_eq!(engine.requests_running(), 2);
    let third = tokio::spawn(async move { post_json(addr, "/v1/completions", &body).await });
    wait_for(
        Duration::from_secs(10),
        "a waiting request",
        || async move { e.requests_waiting() == 1 },
    )
    .await;

    let next = tokio::time::timeout(Duration::from_millis(500), second.read_frame()).await;
    assert!(next.is_err(), "a chunk arrived while hung");
    assert!(!first.is_finished() && !third.is_finished());
    assert_eq!(engine.generation_tokens(), 0);
    assert_looks_alive(&engine, 2.0, 0).await;
    assert_eq!(scrape(addr, "vllm:num_requests_waiting").await, 1.0);

    engine.set_hung(false);
    for task in [first, third] {
        let a = task.await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["usage"]["completion_tokens"], 5);
    }
    second.read_to_end().await;
    assert!(second.done);
    assert_eq!(second.tokens, 5);
    assert_eq!(engine.generation_tokens(), 15);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_stalled_stream_frees_its_slot_when_the_client_leaves() {
    let engine = start(fast_args()).await;
    let addr = engine.local_addr();
    let e = &engine;
    engine.set_hung(true);
    let mut c = Client::connect(addr).await;
    let stream = open_stream(&mut c, 5).await;
    assert_eq!(engine.requests_running(), 1);
    drop(stream);
    c.close();
    wait_for(Duration::from_secs(10), "the slot freed", || async move {
        e.requests_running() == 0
    })
    .await;
    assert_eq!(engine.generation_tokens(), 0);
    engine.shutdown().await;
}

#[tokio::test]
async fn hang_controls_are_post_only() {
    let engine = start(fast_args()).await;
    let addr = engine.local_addr();
    for path in ["/mock/hang", "/mock/unhang"] {
        let a = get(addr, path).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(a.header("allow"), Some("POST"));
    }
    assert!(!engine.is_hung());
    engine.shutdown().await;
}
