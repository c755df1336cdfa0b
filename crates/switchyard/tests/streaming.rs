//! Streaming responses: server-sent events reach the client event by event, each as the backend
//! sends it, not when the response ends; a client leaving mid-stream releases the backend.

mod support;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::body::{channel, empty};
use support::client::{self, request, Client};
use support::server;
use support::{proxy, wait_for, DEADLINE};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_are_delivered_one_by_one() {
    let release = Arc::new(Notify::new());
    let backend = {
        let release = Arc::clone(&release);
        server::serve(move |_req| {
            let release = Arc::clone(&release);
            async move {
                let (tx, body) = channel();
                tokio::spawn(async move {
                    for n in 0..4 {
                        tx.send(Bytes::from(format!("data: {n}\n\n")))
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    release.notified().await;
                    tx.send(Bytes::from("data: 4\n\n")).await.unwrap();
                });
                let mut r = http::Response::new(body);
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/event-stream"),
                );
                r
            }
        })
        .await
    };
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    let resp = c
        .send(request(Method::GET, "/events").body(empty()).unwrap())
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut got = Vec::new();

    // The first event arrives while the backend is still holding the last one back...
    tokio::time::timeout(
        DEADLINE,
        client::read_until(&mut body, &mut got, b"data: 0\n\n"),
    )
    .await
    .expect("first event in time");
    // ...and so do all the others it has sent.
    tokio::time::timeout(
        DEADLINE,
        client::read_until(&mut body, &mut got, b"data: 3\n\n"),
    )
    .await
    .expect("fourth event in time");
    assert_eq!(got, b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n");

    release.notify_one();
    tokio::time::timeout(DEADLINE, client::read_rest(&mut body, &mut got))
        .await
        .expect("rest of the stream");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_leaving_mid_stream_releases_the_backend() {
    let backend_saw_close = Arc::new(AtomicBool::new(false));
    let backend = {
        let flag = Arc::clone(&backend_saw_close);
        server::serve(move |_req| {
            let flag = Arc::clone(&flag);
            async move {
                let (tx, body) = channel();
                tokio::spawn(async move {
                    // Streams until nobody listens any more.
                    while tx.send(Bytes::from("data: tick\n\n")).await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    flag.store(true, SeqCst);
                });
                http::Response::new(body)
            }
        })
        .await
    };
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    let resp = c
        .send(request(Method::GET, "/events").body(empty()).unwrap())
        .await;
    let mut body = resp.into_body();
    let mut got = Vec::new();
    client::read_until(&mut body, &mut got, b"data: tick\n\n").await;
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 1);

    drop(body);
    drop(c);
    wait_for(DEADLINE, "the backend stream to be abandoned", || async {
        backend_saw_close.load(SeqCst)
    })
    .await;
    wait_for(DEADLINE, "in_flight back to 0", || async {
        proxy.backend_stats(0).await["in_flight"] == 0
    })
    .await;
}
