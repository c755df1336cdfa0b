//! Retries on another backend: a 503 before any body byte is retried when the whole request can
//! be sent again, a streamed upload is not, and the retry budget caps how many retries a
//! failing fleet gets.

mod support;

use http::{Method, StatusCode};
use support::body::{channel, full};
use support::client::{request, Client};
use support::proxy;
use support::server::{self, respond};

async fn refusing() -> server::Backend {
    server::serve(|_req| async { respond(StatusCode::SERVICE_UNAVAILABLE, "busy") }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_on_another_backend() {
    let busy = refusing().await;
    let ok = server::fixed("ok").await;
    let proxy = proxy::new()
        .server(|s| s.retry_budget = 100)
        .backend("busy", busy.addr())
        .backend("ok", ok.addr())
        .route("r", "/", &["busy", "ok"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..10 {
        assert_eq!(c.get("/x").await.status, StatusCode::OK);
        let post = request(Method::POST, "/x")
            .body(full("small body"))
            .unwrap();
        assert_eq!(c.request(post).await.status, StatusCode::OK);
    }
    assert!(busy.requests() >= 5, "busy was never tried");
    assert_eq!(ok.requests(), 20);
    let retries = proxy.stats().await["totals"]["retries"].as_u64().unwrap();
    assert_eq!(retries as usize, busy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_is_not_sent_twice() {
    let busy = refusing().await;
    let ok = server::fixed("ok").await;
    let proxy = proxy::new()
        .backend("busy", busy.addr())
        .route("only-busy-first", "/", &["busy", "ok"], "round_robin")
        .backend("ok", ok.addr())
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    // Round robin sends the first request to busy; its body streams, so it cannot be resent.
    let (tx, body) = channel();
    let send = tokio::spawn(async move {
        tx.send(bytes::Bytes::from_static(b"part one "))
            .await
            .unwrap();
        tx.send(bytes::Bytes::from_static(b"part two"))
            .await
            .unwrap();
    });
    let answer = c
        .request(request(Method::POST, "/upload").body(body).unwrap())
        .await;
    send.await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert_eq!(ok.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries() {
    let busy = refusing().await;
    let also_busy = refusing().await;
    let proxy = proxy::new()
        .server(|s| s.retry_budget = 0)
        .backend("a", busy.addr())
        .backend("b", also_busy.addr())
        .route("r", "/", &["a", "b"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..40 {
        assert_eq!(c.get("/x").await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    // Only the initial burst of saved-up tokens (10) was spent; then no more retries.
    let retries = proxy.stats().await["totals"]["retries"].as_u64().unwrap();
    assert_eq!(retries, 10);
    assert_eq!(busy.requests() + also_busy.requests(), 50);
}
