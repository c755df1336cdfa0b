//! Concurrency slots, the waiting queue, overflow and KV-cache accounting,
//! observed through `/metrics`.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use switchyard_mock_engine::MockEngineArgs;

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_queue_behind_busy_slots() {
    // One slot; each request decodes 25 tokens at 25 tok/s (about 1 s).
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 25.0,
        max_concurrent: 1,
        kv_cache_tokens: 1000,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let requests: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(async move {
                post_json(
                    addr,
                    "/v1/completions",
                    &json!({"prompt": format!("four words prompt {i}"), "max_tokens": 25}),
                )
                .await
            })
        })
        .collect();

    wait_for(DEADLINE, "1 running and 2 waiting", || async {
        let text = get(addr, "/metrics").await.text();
        metric(&text, "vllm:num_requests_running") == Some(1.0)
            && metric(&text, "vllm:num_requests_waiting") == Some(2.0)
    })
    .await;
    let kv = scrape(addr, "vllm:kv_cache_usage_perc").await;
    assert!(kv > 0.0 && kv <= 1.0, "kv usage while running: {kv}");

    for r in requests {
        let a = r.await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json()["usage"]["completion_tokens"], 25);
    }
    let text = get(addr, "/metrics").await.text();
    assert_eq!(metric(&text, "vllm:num_requests_running"), Some(0.0));
    assert_eq!(metric(&text, "vllm:num_requests_waiting"), Some(0.0));
    assert_eq!(metric(&text, "vllm:kv_cache_usage_perc"), Some(0.0));
    assert_eq!(metric(&text, "vllm:request_success_total"), Some(3.0));
    assert_eq!(metric(&text, "vllm:prompt_tokens_total"), Some(12.0));
    assert_eq!(metric(&text, "vllm:generation_tokens_total"), Some(75.0));
    assert_eq!(engine.requests_served(), 3);
    engine.shutdown().await;
}

#[tokio::test]
async fn full_queue_is_503_with_retry_after() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        max_concurrent: 1,
        max_waiting: 1,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let slow = json!({"prompt": "slow", "max_tokens": 1000});
    let _busy: Vec<_> = (0..2)
        .map(|_| {
            let slow = slow.clone();
            tokio::spawn(async move { post_json(addr, "/v1/completions", &slow).await })
        })
        .collect();
    wait_for(DEADLINE, "1 running and 1 waiting", || async {
        engine.requests_running() == 1 && engine.requests_waiting() == 1
    })
    .await;

    let a = post_json(addr, "/v1/chat/completions", &chat("one too many", 1, true)).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(a.header("x-mock-engine").is_some());
    let v = a.json();
    assert_eq!(v["error"]["code"], "queue_full");
    assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string());
    assert_eq!(scrape(addr, "vllm:num_requests_waiting").await, 1.0);
    // Shutting down aborts the in-flight requests.
    tokio::time::timeout(DEADLINE, engine.shutdown())
        .await
        .expect("shutdown with requests in flight");
}

#[tokio::test]
async fn no_queue_when_max_waiting_is_zero() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        max_concurrent: 1,
        max_waiting: 0,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let _busy = tokio::spawn(async move {
        post_json(
            addr,
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 1000}),
        )
        .await
    });
    wait_for(DEADLINE, "1 running", || async {
        engine.requests_running() == 1
    })
    .await;
    let a = post_json(addr, "/v1/completions", &json!({"prompt": "y"})).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    engine.shutdown().await;
}

#[tokio::test]
async fn kv_usage_tracks_running_requests() {
    // Prompt of 10 words, 1000-token KV: usage grows from 1% as tokens are produced.
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 50.0,
        kv_cache_tokens: 1000,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let prompt = "one two three four five six seven eight nine ten";
    let req = tokio::spawn(async move {
        post_json(
            addr,
            "/v1/completions",
            &json!({"prompt": prompt, "max_tokens": 40}),
        )
        .await
    });
    wait_for(DEADLINE, "KV usage above the prompt alone", || async {
        let kv = scrape(addr, "vllm:kv_cache_usage_perc").await;
        kv > 0.01 && kv <= 0.05
    })
    .await;
    assert_eq!(req.await.unwrap().status, StatusCode::OK);
    assert_eq!(scrape(addr, "vllm:kv_cache_usage_perc").await, 0.0);
    assert_eq!(engine.kv_cache_usage(), 0.0);
    engine.shutdown().await;
}

#[tokio::test]
async fn kv_usage_is_capped_at_one() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        kv_cache_tokens: 4,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let _busy = tokio::spawn(async move {
        post_json(
            addr,
            "/v1/completions",
            &json!({"prompt": "a b c d e f g h", "max_tokens": 1000}),
        )
        .await
    });
    wait_for(DEADLINE, "KV usage at 1", || async {
        scrape(addr, "vllm:kv_cache_usage_perc").await == 1.0
    })
    .await;
    engine.shutdown().await;
}

#[tokio::test]
async fn abandoned_requests_leave_the_queue_and_free_their_slot() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        max_concurrent: 1,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let slow = json!({"prompt": "slow", "max_tokens": 1000});
    let mut running = Client::connect(addr).await;
    let mut queued = Client::connect(addr).await;
    let running_req = tokio::spawn({
        let slow = slow.clone();
        async move {
            running.post_json("/v1/completions", &slow).await;
        }
    });
    wait_for(DEADLINE, "1 running", || async {
        engine.requests_running() == 1
    })
    .await;
    let queued_req = tokio::spawn(async move {
        queued.post_json("/v1/completions", &slow).await;
    });
    wait_for(DEADLINE, "1 waiting", || async {
        engine.requests_waiting() == 1
    })
    .await;
    // Clients give up: the waiting one leaves the queue, the running one frees its slot.
    queued_req.abort();
    wait_for(DEADLINE, "0 waiting", || async {
        engine.requests_waiting() == 0
    })
    .await;
    running_req.abort();
    wait_for(DEADLINE, "0 running", || async {
        engine.requests_running() == 0 && engine.kv_cache_usage() == 0.0
    })
    .await;
    assert_eq!(engine.requests_served(), 0);
    engine.shutdown().await;
}
