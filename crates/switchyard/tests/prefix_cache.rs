//! `balancer = prefix_cache`: every turn of a conversation (the same messages plus new ones)
//! goes back to the engine that served its first turn; different conversations spread; the
//! body read to hash the prompt still reaches the engine whole.

mod support;

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use support::body::full;
use support::client::{request, Client};
use support::proxy;
use support::server::{self, respond, Backend};

/// An engine that answers with its name and the length of the body it received.
async fn engine(name: &'static str) -> Backend {
    server::serve(
        move |req: http::Request<hyper::body::Incoming>| async move {
            let len = req.into_body().collect().await.unwrap().to_bytes().len();
            respond(StatusCode::OK, format!("{name} {len}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_return_to_their_engine() {
    let engines = [engine("e0").await, engine("e1").await, engine("e2").await];
    let proxy = proxy::new()
        .backend("e0", engines[0].addr())
        .backend("e1", engines[1].addr())
        .backend("e2", engines[2].addr())
        .route("chat", "/", &["e0", "e1", "e2"], "prefix_cache")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    let mut homes = std::collections::BTreeSet::new();
    for conv in 0..9 {
        let mut messages = vec![
            json!({"role": "system", "content": format!("You are assistant number {conv}. {}", "Be helpful. ".repeat(60))}),
        ];
        let mut home: Option<String> = None;
        for turn in 0..4 {
            messages.push(json!({"role": "user", "content": format!("question {turn} of conversation {conv}")}));
            let body = json!({"model": "m", "messages": messages}).to_string();
            let req = request(Method::POST, "/v1/chat/completions")
                .header("content-type", "application/json")
                .body(full(body.clone()))
                .unwrap();
            let answer = c.request(req).await;
            assert_eq!(answer.status, StatusCode::OK);
            let text = answer.text();
            let (name, len) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), body.len(), "body not intact");
            match &home {
                None => home = Some(name.to_string()),
                Some(h) => assert_eq!(h, name, "conversation {conv} turn {turn} moved"),
            }
            messages.push(json!({"role": "assistant", "content": format!("answer {turn}")}));
        }
        homes.insert(home.unwrap());
    }
    assert!(homes.len() >= 2, "all conversations on {homes:?}");
    let stats = proxy.stats().await;
    assert!(stats["routes"][0]["prefix_index_entries"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_on_connections_of_other_threads_find_their_engine() {
    let engines = [engine("e0").await, engine("e1").await, engine("e2").await];
    let proxy = proxy::new()
        .server(|s| s.threads = 2)
        .backend("e0", engines[0].addr())
        .backend("e1", engines[1].addr())
        .backend("e2", engines[2].addr())
        .route("chat", "/", &["e0", "e1", "e2"], "prefix_cache")
        .start();
    // Every turn on a new connection: the kernel spreads them over both reactor threads, whose
    // balancers share one prefix index.
    for conv in 0..8 {
        let mut messages = vec![
            json!({"role": "system", "content": format!("Assistant {conv}. {}", "Be brief. ".repeat(80))}),
        ];
        let mut home: Option<String> = None;
        for turn in 0..5 {
            messages.push(json!({"role": "user", "content": format!("question {turn}")}));
            let body = json!({"model": "m", "messages": messages}).to_string();
            let mut c = Client::connect(proxy.addr()).await;
            let answer = c.post("/v1/chat/completions", body).await;
            let name = answer.text().split(' ').next().unwrap().to_string();
            match &home {
                None => home = Some(name),
                Some(h) => assert_eq!(*h, name, "conversation {conv} turn {turn} moved"),
            }
            messages.push(json!({"role": "assistant", "content": format!("answer {turn}")}));
        }
    }
    // One index: every thread reports the same count, not a sum over threads.
    let entries = proxy.stats().await["routes"][0]["prefix_index_entries"]
        .as_u64()
        .unwrap();
    assert!(entries > 0 && entries < 8 * 5 * 20, "{entries}");
}
