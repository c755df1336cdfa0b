//! The upstream connection pool: keep-alive reuse, backends that close connections (announced
//! or not), and many concurrent clients over two reactor threads.

use std::time::Duration;
mod support;

use http::StatusCode;
use support::client::Client;
use support::server::{self, respond};
use support::{proxy, DEADLINE};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_upstream_connections() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut clients = [
        Client::connect(proxy.addr()).await,
        Client::connect(proxy.addr()).await,
    ];
    for i in 0..200 {
        let a = clients[i % 2].get("/ka").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "ok");
    }
    assert_eq!(backend.requests(), 200);
    assert!(
        backend.accepted() <= 4,
        "backend accepted {} connections for 200 requests",
        backend.accepted()
    );
    let b = proxy.backend_stats(0).await;
    assert_eq!(b["requests"], 200);
    assert!(b["connections_reused"].as_u64().unwrap() >= 190, "{b:#}");
    assert!(b["connections_opened"].as_u64().unwrap() <= 4, "{b:#}");
    assert_eq!(b["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connection_close_is_honoured_upstream_only() {
    let backend = server::serve(|_req| async {
        let mut r = respond(StatusCode::OK, "bye");
        r.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        r
    })
    .await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    for _ in 0..5 {
        let a = c.get("/").await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, "bye");
        assert!(a.header("connection").is_none(), "{:?}", a.headers);
    }
    assert!(!c.is_closed(), "the client connection must stay open");
    assert_eq!(backend.accepted(), 5);
    assert_eq!(proxy.backend_stats(0).await["connections_reused"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connection_is_retried() {
    // Answers the first request of each connection, then closes when the second one arrives:
    // what a backend whose idle timeout fires just as the proxy reuses the connection does.
    // The proxy keeps a retry copy only for connections idle for a while (a backend's idle
    // timeout cannot fire on a connection used a moment ago), hence the pause before reuse.
    let backend = server::serve_raw(|mut stream| async move {
        if server::read_head(&mut stream).await {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            server::read_head(&mut stream).await;
        }
    })
    .await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        let a = c.get("/").await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.text());
        assert_eq!(a.body, "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_over_two_threads() {
    let backend = server::fixed("ok").await;
    let proxy = proxy::new()
        .server(|s| s.threads = 2)
        .to(backend.addr())
        .start();
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for _ in 0..10 {
                    let a = c.get("/").await;
                    assert_eq!((a.status, a.body.as_ref()), (StatusCode::OK, &b"ok"[..]));
                }
            })
        })
        .collect();
    for c in clients {
        tokio::time::timeout(DEADLINE, c).await.unwrap().unwrap();
    }
    assert_eq!(backend.requests(), 200);
    let s = proxy.stats().await;
    assert_eq!(s["process"]["threads"], 2);
    assert_eq!(s["totals"]["requests"], 200);
    assert_eq!(s["totals"]["responses"]["2xx"], 200);
    assert_eq!(s["backends"][0]["requests"], 200);
}
