//! HTTP/2 to backends (`protocol = h2c`): HTTP/1.1 and HTTP/2 clients reach an HTTP/2
//! backend over one multiplexed connection, bodies pass whole both ways, a backend that
//! restarts gets a new connection, and one that is down answers 502 like any other.

mod support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::client::{self, Client};
use support::server::{self, dead_addr, echoed_headers};
use support::{proxy, DEADLINE};

fn h2_backend_proxy(addr: std::net::SocketAddr) -> proxy::Proxy {
    proxy::new()
        .backend("h2", addr)
        .protocol("h2c")
        .route("default", "/", &["h2"], "round_robin")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_reaches_an_http2_backend() {
    let backend = server::echo_h2().await;
    let proxy = h2_backend_proxy(backend.addr());
    let mut c = Client::connect(proxy.addr()).await;
    let a = c
        .request(
            client::request(Method::POST, "/v1/echo?x=1")
                .header("x-custom", "kept")
                .body(support::body::full("hello h2"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let doc = a.json();
    assert_eq!(doc["version"], "HTTP/2.0");
    assert_eq!(doc["method"], "POST");
    // The Host header became the :authority of an absolute URI.
    assert_eq!(doc["uri"], "http://test.local/v1/echo?x=1");
    assert_eq!(doc["body"], "hello h2");
    assert_eq!(echoed_headers(&doc, "x-custom"), ["kept"]);
    assert!(echoed_headers(&doc, "host").is_empty(), "{doc:#}");
    assert_eq!(echoed_headers(&doc, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_upstream_connection() {
    let backend = server::echo_h2().await;
    let proxy = h2_backend_proxy(backend.addr());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let a = c.post(&format!("/n/{i}"), format!("body {i}")).await;
                assert_eq!(a.status, 200);
                assert_eq!(a.json()["body"], format!("body {i}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(backend.requests(), 50);
    assert_eq!(backend.accepted(), 1, "one multiplexed connection");
    let s = proxy.backend_stats(0).await;
    assert_eq!(s["connections_opened"], 1, "{s:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_whole_both_ways_between_http2_peers() {
    // The backend answers with the request body reversed, so every byte is checked.
    let backend = server::serve_h2(|req: Request<hyper::body::Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut v = body.to_vec();
        v.reverse();
        server::respond(StatusCode::OK, v)
    })
    .await;
    let proxy = h2_backend_proxy(backend.addr());
    let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut s = sender.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri("http://big.example/upload")
                .body(Full::new(Bytes::from(sent.clone())))
                .unwrap();
            let resp = s.send_request(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            let mut want = sent;
            want.reverse();
            assert!(got == want, "body of {} bytes differs", got.len());
        }));
    }
    for t in tasks {
        tokio::time::timeout(DEADLINE * 3, t)
            .await
            .expect("in time")
            .unwrap();
    }
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_backend_gets_a_new_connection() {
    // The first backend serves one connection on a task whose abort closes it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let first = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(server::respond(StatusCode::OK, "first"))
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });
    let proxy = h2_backend_proxy(addr);
    assert_eq!(client::get(proxy.addr(), "/").await.text(), "first");
    first.abort();
    let _ = first.await;
    let second = server::serve_h2_on(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
        |_req| async { server::respond(StatusCode::OK, "second") },
    );
    support::wait_for(DEADLINE, "the new backend to answer", || async {
        client::get(proxy.addr(), "/").await.text() == "second"
    })
    .await;
    assert_eq!(second.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_http2_backend_is_a_502() {
    let proxy = h2_backend_proxy(dead_addr());
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 502);
    assert_eq!(a.proxy_error(), Some("connect_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_does_not_speak_http2_is_a_502() {
    // An HTTP/1.1-only backend configured as h2c: the handshake fails, reported as such.
    let backend = server::fixed("http/1.1 only").await;
    let proxy = h2_backend_proxy(backend.addr());
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 502, "{}", a.text());
}

/// An HTTP/2 backend (the h2 crate, to control resets) that refuses the first `refuse`
/// streams it sees with REFUSED_STREAM and answers the others with "ok"; it counts its
/// connections.
async fn refusing_backend(
    refuse: usize,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&conns);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counted.fetch_add(1, SeqCst);
            let refused = Arc::clone(&refused);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    if refused.fetch_add(1, SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    let mut body = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    body.send_data(Bytes::from_static(b"ok"), true).unwrap();
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_stream_is_sent_again_on_a_new_connection() {
    let (addr, conns) = refusing_backend(1).await;
    let proxy = h2_backend_proxy(addr);
    // REFUSED_STREAM means the backend did nothing with the request: safe to send again.
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.text(), "ok");
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_keeps_refusing_is_a_502() {
    let (addr, _) = refusing_backend(usize::MAX).await;
    let proxy = h2_backend_proxy(addr);
    let a = client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 502, "{}", a.text());
}
