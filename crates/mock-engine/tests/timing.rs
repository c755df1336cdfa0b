//! Prefill time, batch slowdown and incremental token counting, on real sockets.
//! Only lower bounds are tight; upper bounds leave a wide margin.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use hyper::{Method, StatusCode};
use serde_json::json;
use switchyard_mock_engine::MockEngineArgs;

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn uncached_prompt_tokens_delay_the_first_token() {
    // 2000 tokens at 4000 tok/s: 500 ms of prefill; cached (125 blocks of 16): none.
    let engine = start(MockEngineArgs {
        prefill_tokens_per_sec: 4000.0,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let body = json!({"prompt": words(2000), "max_tokens": 1});
    let started = Instant::now();
    let a = post_json(addr, "/v1/completions", &body).await;
    let uncached = started.elapsed();
    assert_eq!(a.status, StatusCode::OK);
    assert!(uncached >= Duration::from_millis(500), "{uncached:?}");

    let started = Instant::now();
    post_json(addr, "/v1/completions", &body).await;
    let cached = started.elapsed();
    assert_eq!(engine.prefix_cache_hits(), 2000);
    assert!(
        cached < Duration::from_millis(250),
        "cached {cached:?}, uncached {uncached:?}"
    );

    // Only the tokens after the cached prefix are prefilled: 2000 more at 4000 tok/s.
    let longer = json!({"prompt": format!("{} {}", words(2000), words(2000).replace('w', "v")), "max_tokens": 1});
    let started = Instant::now();
    post_json(addr, "/v1/completions", &longer).await;
    let extended = started.elapsed();
    assert!(extended >= Duration::from_millis(500), "{extended:?}");
    assert_eq!(engine.prefix_cache_hits(), 4000);
    engine.shutdown().await;
}

#[tokio::test]
async fn prefill_comes_on_top_of_the_ttft_after_the_slot() {
    let engine = start(MockEngineArgs {
        ttft_ms: 200,
        tokens_per_sec: 0.0,
        prefill_tokens_per_sec: 1000.0,
        prefix_cache_blocks: 0,
        max_concurrent: 1,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    // 200 tokens: 200 ms of prefill + 200 ms of TTFT, twice in a row on one slot.
    let body = json!({"prompt": words(200), "max_tokens": 1});
    let started = Instant::now();
    let (a, b) = tokio::join!(
        post_json(addr, "/v1/completions", &body),
        post_json(addr, "/v1/completions", &body)
    );
    let elapsed = started.elapsed();
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn decoding_slows_as_the_batch_grows() {
    // 10 ms per token alone; four running: 10 x (1 + 3.0 x 3 / 4) = 32.5 ms per token.
    let args = MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 100.0,
        batch_slowdown: 3.0,
        max_concurrent: 4,
        ..Default::default()
    };
    let engine = start(args).await;
    let addr = engine.local_addr();
    let body = |i: usize| json!({"prompt": format!("p{i}"), "max_tokens": 21});

    let started = Instant::now();
    post_json(addr, "/v1/completions", &body(0)).await;
    let alone = started.elapsed();
    assert!(alone >= Duration::from_millis(200), "{alone:?}");

    let started = Instant::now();
    let timed = |i| async move {
        post_json(addr, "/v1/completions", &body(i)).await;
        started.elapsed()
    };
    let (a, b, c, d) = tokio::join!(timed(1), timed(2), timed(3), timed(4));
    // At least 20 intervals of ~32.5 ms each (650 ms) once all four run; well above the
    // 200 ms of a request alone.
    for t in [a, b, c, d] {
        assert!(
            t >= Duration::from_millis(450),
            "batch of 4: {t:?}, alone {alone:?}"
        );
    }
    engine.shutdown().await;
}

#[tokio::test]
async fn generation_tokens_are_counted_as_they_are_produced() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 20.0,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let resp = c
        .send(
            Method::POST,
            "/v1/completions",
            Some(
                json!({"prompt": "x", "max_tokens": 40, "stream": true})
                    .to_string()
                    .into(),
            ),
        )
        .await;
    // Mid-way (40 tokens take about 2 s), some but not all tokens are counted.
    wait_for(Duration::from_secs(10), "a few tokens", || async {
        scrape(addr, "vllm:generation_tokens_total").await >= 3.0
    })
    .await;
    let mid = engine.generation_tokens();
    assert!((3..40).contains(&mid), "{mid}");
    assert_eq!(engine.requests_running(), 1);
    resp.into_body().collect().await.unwrap();
    assert_eq!(engine.generation_tokens(), 40);
    engine.shutdown().await;
}
