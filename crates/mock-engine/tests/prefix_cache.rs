//! The simulated prefix cache, observed through the handle and `/metrics`.

mod common;

use common::*;
use hyper::StatusCode;
use serde_json::{json, Value};
use switchyard_mock_engine::MockEngineArgs;

fn words(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| format!("{tag}{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn complete(addr: std::net::SocketAddr, body: &Value) -> Value {
    let a = post_json(addr, "/v1/completions", body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    a.json()
}

#[tokio::test]
async fn repeated_prompt_hits_its_full_blocks() {
    let engine = start(MockEngineArgs {
        prefix_block_tokens: 4,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    // 10 tokens: two full blocks of 4 and a partial one (never cached).
    let body = json!({"prompt": words(10, "w"), "max_tokens": 2});
    complete(addr, &body).await;
    assert_eq!(
        (engine.prefix_cache_queries(), engine.prefix_cache_hits()),
        (10, 0)
    );
    assert_eq!(engine.prefix_cache_blocks(), 2);
    complete(addr, &body).await;
    assert_eq!(
        (engine.prefix_cache_queries(), engine.prefix_cache_hits()),
        (20, 8)
    );
    assert_eq!(scrape(addr, "vllm:prefix_cache_queries_total").await, 20.0);
    assert_eq!(scrape(addr, "vllm:prefix_cache_hits_total").await, 8.0);

    // A different first word changes every block's hash.
    let other = json!({"prompt": format!("x {}", words(9, "w")), "max_tokens": 2});
    complete(addr, &other).await;
    assert_eq!(engine.prefix_cache_hits(), 8);
    engine.shutdown().await;
}

#[tokio::test]
async fn models_do_not_share_blocks() {
    let engine = start(MockEngineArgs {
        models: vec!["a".into(), "b".into()],
        prefix_block_tokens: 4,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let prompt = words(8, "w");
    complete(
        addr,
        &json!({"model": "a", "prompt": prompt, "max_tokens": 1}),
    )
    .await;
    complete(
        addr,
        &json!({"model": "b", "prompt": prompt, "max_tokens": 1}),
    )
    .await;
    assert_eq!(engine.prefix_cache_hits(), 0);
    complete(
        addr,
        &json!({"model": "b", "prompt": prompt, "max_tokens": 1}),
    )
    .await;
    assert_eq!(engine.prefix_cache_hits(), 8);
    engine.shutdown().await;
}

#[tokio::test]
async fn next_turn_of_a_conversation_hits_the_shared_prefix() {
    let engine = start(MockEngineArgs {
        prefix_block_tokens: 4,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    // Turn 1 renders as "system: ...\nuser: ...", 6 + 6 = 12 tokens: 3 blocks.
    let mut messages = vec![
        json!({"role": "system", "content": "be brief and kind please"}),
        json!({"role": "user", "content": "tell me about old trains"}),
    ];
    let a = post_json(
        addr,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 6}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let reply = a.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(engine.prefix_cache_queries(), 12);
    assert_eq!(engine.prefix_cache_hits(), 0);

    // Turn 2: turn 1, the reply and a new question: 12 + (1 + 6) + (1 + 3) = 23 tokens.
    messages.push(json!({"role": "assistant", "content": reply}));
    messages.push(json!({"role": "user", "content": "and about wagons"}));
    let turn2 = json!({"messages": messages, "max_tokens": 3});
    let a = post_json(addr, "/v1/chat/completions", &turn2).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["usage"]["prompt_tokens"], 23);
    assert_eq!(engine.prefix_cache_queries(), 12 + 23);
    assert_eq!(engine.prefix_cache_hits(), 12, "turn 1's three blocks");

    // Turn 2 again: its five full blocks are all cached now.
    post_json(addr, "/v1/chat/completions", &turn2).await;
    assert_eq!(engine.prefix_cache_hits(), 12 + 20);
    engine.shutdown().await;
}

#[tokio::test]
async fn least_recently_used_blocks_are_evicted() {
    let engine = start(MockEngineArgs {
        prefix_block_tokens: 2,
        prefix_cache_blocks: 4,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let a = json!({"prompt": words(4, "a"), "max_tokens": 1});
    let b = json!({"prompt": words(4, "b"), "max_tokens": 1});
    let c = json!({"prompt": words(4, "c"), "max_tokens": 1});
    complete(addr, &a).await;
    complete(addr, &b).await;
    assert_eq!(engine.prefix_cache_blocks(), 4);
    complete(addr, &a).await; // a is now the most recent
    assert_eq!(engine.prefix_cache_hits(), 4);
    complete(addr, &c).await; // evicts b
    assert_eq!(engine.prefix_cache_blocks(), 4);
    complete(addr, &a).await;
    assert_eq!(engine.prefix_cache_hits(), 8);
    complete(addr, &b).await;
    assert_eq!(engine.prefix_cache_hits(), 8, "b was evicted");
    engine.shutdown().await;
}

#[tokio::test]
async fn zero_blocks_disables_the_cache() {
    let engine = start(MockEngineArgs {
        prefix_cache_blocks: 0,
        ..fast_args()
    })
    .await;
    let addr = engine.local_addr();
    let body = json!({"prompt": words(64, "w"), "max_tokens": 1});
    complete(addr, &body).await;
    complete(addr, &body).await;
    assert_eq!(
        (engine.prefix_cache_queries(), engine.prefix_cache_hits()),
        (0, 0)
    );
    assert_eq!(engine.prefix_cache_blocks(), 0);
    engine.shutdown().await;
}
