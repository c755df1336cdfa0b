//! Graceful shutdown: new connections are refused, a response in progress finishes, idle
//! connections close, and `drain_timeout` bounds how long a stuck one is waited for.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::body::{channel, empty};
use support::client::{self, request, Client};
use support::server::{self, Backend};
use support::{proxy, wait_for, DEADLINE};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A backend whose responses send `part-1`, then wait for `release`, then send `part-2` and end.
async fn held_stream(release: Arc<Notify>) -> Backend {
    server::serve(move |_req| {
        let release = Arc::clone(&release);
        async move {
            let (tx, body) = channel();
            tokio::spawn(async move {
                tx.send(Bytes::from("part-1\n")).await.unwrap();
                release.notified().await;
                let _ = tx.send(Bytes::from("part-2\n")).await;
            });
            http::Response::new(body)
        }
    })
    .await
}

/// Waits until connecting to `addr` is refused.
async fn wait_until_refused(addr: SocketAddr) {
    wait_for(DEADLINE, "new connections to be refused", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_stream_finishes_during_drain() {
    let release = Arc::new(Notify::new());
    let backend = held_stream(Arc::clone(&release)).await;
    let proxy = proxy::new()
        .server(|s| s.drain_timeout = Duration::from_secs(10))
        .to(backend.addr())
        .start();
    let addr = proxy.addr();
    let mut c = Client::connect(addr).await;
    let resp = c
        .send(request(Method::GET, "/stream").body(empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    client::read_until(&mut body, &mut got, b"part-1\n").await;

    proxy.shutdown();
    wait_until_refused(addr).await;

    release.notify_one();
    tokio::time::timeout(DEADLINE, client::read_rest(&mut body, &mut got))
        .await
        .expect("rest of the stream");
    assert_eq!(got, b"part-1\npart-2\n");

    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), proxy.join())
        .await
        .expect("join within drain_timeout");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_at_shutdown() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .server(|s| s.drain_timeout = Duration::from_secs(10))
        .to(backend.addr())
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/").await.status, StatusCode::OK);
    proxy.shutdown();
    tokio::time::timeout(DEADLINE, c.closed())
        .await
        .expect("idle connection closed at shutdown");
    let start = Instant::now();
    proxy.join().await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_a_stuck_stream() {
    let release = Arc::new(Notify::new());
    let backend = held_stream(Arc::clone(&release)).await;
    let proxy = proxy::new()
        .server(|s| s.drain_timeout = Duration::from_secs(1))
        .to(backend.addr())
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    let resp = c
        .send(request(Method::GET, "/stuck").body(empty()).unwrap())
        .await;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    client::read_until(&mut body, &mut got, b"part-1\n").await;

    let start = Instant::now();
    proxy.shutdown();
    tokio::time::timeout(DEADLINE, proxy.join())
        .await
        .expect("join after drain_timeout");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "joined after only {took:?}"
    );
    assert!(took < Duration::from_secs(5), "joined after {took:?}");

    // The client sees its response cut short, not completed.
    let end = tokio::time::timeout(DEADLINE, async {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("stream ended");
    assert!(end.is_err(), "a cut stream must not look complete");
    release.notify_one();
}
