//! Backend failures: refused connections (502, passive health, retry on another backend), a
//! backend closing before or during its response, no backend up (503).

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use support::body::empty;
use support::client::{self, request, Client};
use support::server;
use support::{proxy, wait_for, DEADLINE};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_502_then_marked_down() {
    let dead = server::dead_addr();
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 2;
            s.fail_timeout = Duration::from_secs(60);
            s.max_ejected_percent = 100; // a group of one may be emptied
        })
        .to(dead)
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for i in 0..2 {
        let a = c.get("/").await;
        assert_eq!(
            a.status,
            StatusCode::BAD_GATEWAY,
            "request {i}: {}",
            a.text()
        );
        assert_eq!(a.proxy_error(), Some("connect_failed"));
        if i == 0 {
            assert_eq!(proxy.backend_stats(0).await["up"], true);
        }
    }
    let b = proxy.backend_stats(0).await;
    assert_eq!(b["up"], false, "{b:#}");
    assert_eq!(proxy.errors("connect_failed").await, 2);

    // Marked down: no connect is even tried.
    let a = c.get("/").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.proxy_error(), Some("no_healthy_backend"));
    assert_eq!(proxy.errors("connect_failed").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_retried_on_another_backend() {
    let alive = server::fixed("alive").await;
    let dead = server::dead_addr();
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 2;
            s.fail_timeout = Duration::from_secs(60);
        })
        .backend("dead", dead)
        .backend("alive", alive.addr())
        .route("default", "/", &["dead", "alive"], "round_robin")
        .start();
    let mut c = Client::connect(proxy.addr()).await;
    for i in 0..20 {
        let a = c.get("/").await;
        assert_eq!(a.status, StatusCode::OK, "request {i}: {}", a.text());
        assert_eq!(a.body, "alive");
    }
    assert_eq!(alive.requests(), 20);
    let s = proxy.stats().await;
    assert_eq!(s["backends"][0]["up"], false, "{s:#}");
    assert_eq!(s["backends"][1]["up"], true);
    assert_eq!(s["totals"]["responses"]["2xx"], 20);
    assert_eq!(s["totals"]["responses"]["5xx"], 0);
    // The failed connects count against the dead backend, not as client-visible errors.
    assert_eq!(s["backends"][0]["errors"], 2);
    assert_eq!(s["backends"][0]["requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backend_up_is_503() {
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 1;
            s.fail_timeout = Duration::from_secs(60);
            s.max_ejected_percent = 100; // a group of one may be emptied
        })
        .to(server::dead_addr())
        .start();
    let first = client::get(proxy.addr(), "/").await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    for _ in 0..3 {
        let a = client::get(proxy.addr(), "/").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
        assert_eq!(a.proxy_error(), Some("no_healthy_backend"));
    }
    assert_eq!(proxy.errors("no_healthy_backend").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_closing_without_response_is_502() {
    let backend = server::serve_raw(|mut stream| async move {
        server::read_head(&mut stream).await;
    })
    .await;
    let proxy = proxy::new().to(backend.addr()).start();
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
    assert_eq!(a.proxy_error(), Some("upstream_error"));
    assert_eq!(proxy.errors("upstream_error").await, 1);
}

/// A backend that sends `head` and `partial` body bytes, then closes the connection.
async fn cut_backend(head: &'static [u8], partial: &'static [u8]) -> server::RawBackend {
    server::serve_raw(move |mut stream| async move {
        if server::read_head(&mut stream).await {
            let _ = stream.write_all(head).await;
            let _ = stream.write_all(partial).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_cut_mid_body_is_not_a_clean_end() {
    let cases: [(&[u8], &[u8]); 2] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            b"0123456789",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"a\r\n0123456789\r\n",
        ),
    ];
    for (head, partial) in cases {
        let backend = cut_backend(head, partial).await;
        let proxy = proxy::new().to(backend.addr()).start();
        let mut c = Client::connect(proxy.addr()).await;
        let resp = c
            .send(request(Method::GET, "/").body(empty()).unwrap())
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = tokio::time::timeout(support::DEADLINE, resp.into_body().collect())
            .await
            .expect("body ended");
        assert!(
            body.is_err(),
            "a cut body looked complete to the client ({:?})",
            String::from_utf8_lossy(head)
        );
        assert_eq!(proxy.errors("upstream_error").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_down_backend_is_tried_again_after_fail_timeout() {
    let addr = server::dead_addr();
    let proxy = proxy::new()
        .server(|s| {
            s.fail_threshold = 1;
            s.fail_timeout = Duration::from_millis(500);
            s.max_ejected_percent = 100; // a group of one may be emptied
        })
        .to(addr)
        .start();
    assert_eq!(
        client::get(proxy.addr(), "/").await.status,
        StatusCode::BAD_GATEWAY
    );
    let down_at = Instant::now();
    assert_eq!(
        client::get(proxy.addr(), "/").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The backend comes (back) up on the same address.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let backend = server::serve_on(listener, |_req| async {
        server::respond(StatusCode::OK, "back")
    });
    wait_for(DEADLINE, "backend up again", || async {
        client::get(proxy.addr(), "/").await.status == StatusCode::OK
    })
    .await;
    assert!(down_at.elapsed() >= Duration::from_millis(400));
    assert_eq!(proxy.backend_stats(0).await["up"], true);
    assert!(backend.requests() >= 1);
}
