//! `upstream_response_timeout`: a backend that sends no response head in time gets a 504; the
//! timer starts once the request body has been sent, so a slow upload is not a slow backend.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use support::body::channel;
use support::client::{request, Client};
use support::proxy::{self, Proxy};
use support::server::{self, respond};
use support::DEADLINE;

const TIMEOUT: Duration = Duration::from_millis(500);

fn proxy_to(addr: std::net::SocketAddr) -> Proxy {
    proxy::new()
        .server(|s| s.upstream_response_timeout = TIMEOUT)
        .to(addr)
        .start()
}

/// Asserts a 504 from the proxy that came after about `TIMEOUT`.
fn assert_timed_out(a: &support::client::Answer, took: Duration) {
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT, "{}", a.text());
    assert_eq!(a.proxy_error(), Some("upstream_timeout"));
    assert!(
        took >= Duration::from_millis(400),
        "504 after only {took:?}"
    );
    assert!(took < Duration::from_secs(5), "504 after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_is_504_after_the_response_timeout() {
    let silent = server::silent().await;
    let proxy = proxy_to(silent.addr());
    let mut c = Client::connect(proxy.addr()).await;
    let start = Instant::now();
    let a = c.get("/").await;
    assert_timed_out(&a, start.elapsed());
    assert_eq!(silent.accepted(), 1);
    assert_eq!(proxy.errors("upstream_timeout").await, 1);
    // A timeout is not a connect failure: the backend stays up.
    assert_eq!(proxy.backend_stats(0).await["up"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_to_silent_backend_is_504() {
    let silent = server::silent().await;
    let proxy = proxy_to(silent.addr());
    let mut c = Client::connect(proxy.addr()).await;
    let (tx, body) = channel();
    let start = Instant::now();
    let pending = tokio::spawn(async move {
        c.request(request(Method::POST, "/").body(body).unwrap())
            .await
    });
    tx.send(Bytes::from("hello")).await.unwrap();
    drop(tx);
    let a = tokio::time::timeout(DEADLINE, pending)
        .await
        .expect("an answer")
        .unwrap();
    assert_timed_out(&a, start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_with_content_length_to_silent_backend_is_504() {
    let silent = server::silent().await;
    let proxy = proxy_to(silent.addr());
    let mut c = Client::connect(proxy.addr()).await;
    let start = Instant::now();
    let a = tokio::time::timeout(DEADLINE, c.post("/", "hello"))
        .await
        .expect("no answer: the response timeout never fired");
    assert_timed_out(&a, start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upload_is_not_a_slow_backend() {
    // The echo backend answers as soon as it has the whole body, which takes ~3x the timeout.
    let backend = server::echo().await;
    let proxy = proxy_to(backend.addr());
    let mut c = Client::connect(proxy.addr()).await;
    let (tx, body) = channel();
    let pending = tokio::spawn(async move {
        c.request(request(Method::POST, "/").body(body).unwrap())
            .await
    });
    for i in 0..5 {
        tx.send(Bytes::from(format!("part{i};"))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(tx);
    let a = tokio::time::timeout(DEADLINE, pending)
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["body"], "part0;part1;part2;part3;part4;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_within_the_timeout_is_served() {
    let backend = server::serve(|_req| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        respond(StatusCode::OK, "late but in time")
    })
    .await;
    let proxy = proxy_to(backend.addr());
    let a = Client::connect(proxy.addr()).await.get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, "late but in time");
}
