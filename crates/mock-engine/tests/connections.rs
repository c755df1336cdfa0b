//! Connection handling: keep-alive reuse, counting, spawn and shutdown.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use serde_json::json;
use switchyard_mock_engine::{spawn, MockEngine, MockEngineArgs};

#[tokio::test]
async fn keep_alive_reuses_one_connection() {
    let engine = start(fast_args()).await;
    let addr = engine.local_addr();
    assert_eq!(engine.connections_accepted(), 0);
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/health").await.status, StatusCode::OK);
    assert_eq!(c.get("/v1/models").await.status, StatusCode::OK);
    for stream in [false, true, false] {
        let a = c
            .post_json("/v1/chat/completions", &chat("reuse", 3, stream))
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = c
        .post_json("/v1/completions", &json!({"prompt": "x"}))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(c.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(engine.connections_accepted(), 1);
    assert_eq!(engine.requests_served(), 4);

    let mut c2 = Client::connect(addr).await;
    assert_eq!(c2.get("/health").await.status, StatusCode::OK);
    assert_eq!(engine.connections_accepted(), 2);
    engine.shutdown().await;
}

#[tokio::test]
async fn spawn_binds_the_listen_address() {
    let engine = spawn(MockEngineArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        name: Some("bound".into()),
        ..fast_args()
    })
    .await
    .unwrap();
    assert_ne!(engine.local_addr().port(), 0);
    let a = get(engine.local_addr(), "/health").await;
    assert_eq!(a.header("x-mock-engine"), Some("bound"));
    engine.shutdown().await;

    let engine = MockEngine::spawn(MockEngineArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..fast_args()
    })
    .await
    .unwrap();
    assert_eq!(get(engine.local_addr(), "/health").await.text(), "ok");
    engine.shutdown().await;
}

#[tokio::test]
async fn spawn_reports_bind_errors() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = spawn(MockEngineArgs {
        listen: taken.local_addr().unwrap(),
        ..fast_args()
    })
    .await;
    assert!(result.is_err());
}

#[tokio::test]
async fn shutdown_stops_accepting_and_ends_streams() {
    let engine = start(MockEngineArgs {
        ttft_ms: 0,
        tokens_per_sec: 10.0,
        ..Default::default()
    })
    .await;
    let addr = engine.local_addr();
    let mut c = Client::connect(addr).await;
    let resp = c
        .send(
            hyper::Method::POST,
            "/v1/chat/completions",
            Some(chat("endless", 100_000, true).to_string().into()),
        )
        .await;
    let reader = tokio::spawn(async move {
        use http_body_util::BodyExt;
        let mut body = resp.into_body();
        while let Some(Ok(_)) = body.frame().await {}
    });
    tokio::time::timeout(Duration::from_secs(10), engine.shutdown())
        .await
        .expect("shutdown finishes");
    tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the stream ends after shutdown")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_handle_keeps_serving() {
    let engine = start(fast_args()).await;
    let addr = engine.local_addr();
    drop(engine);
    assert_eq!(get(addr, "/health").await.status, StatusCode::OK);
}
