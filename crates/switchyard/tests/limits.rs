//! Request head limits: `max_header_bytes` and `max_headers` give 431 and are counted.

mod support;

use support::raw::{self, End, Raw};
use support::server;
use support::{proxy, DEADLINE};

/// Sends `head` on a new connection and returns the status, after checking the close.
async fn status_then_close(addr: std::net::SocketAddr, head: &[u8]) -> u16 {
    let mut c = Raw::connect(addr).await;
    c.write(head).await;
    let (resp, end) = c.read_to_close(DEADLINE).await;
    assert_eq!(end, End::Closed, "{}", String::from_utf8_lossy(&resp));
    raw::status(&resp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_431() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.max_header_bytes = 16 * 1024)
        .to(backend.addr())
        .start();

    // A head just under the limit passes.
    let mut ok = Raw::connect(proxy.addr()).await;
    let small = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(12 * 1024)
    );
    ok.write(small.as_bytes()).await;
    let resp = ok.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..100]);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    assert_eq!(status_then_close(proxy.addr(), big.as_bytes()).await, 431);
    assert_eq!(backend.requests(), 1);
    proxy.expect_errors("header_too_large", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.max_headers = 10)
        .to(backend.addr())
        .start();

    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..8 {
        head.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    let mut ok = Raw::connect(proxy.addr()).await;
    ok.write(head.as_bytes()).await;
    let resp = ok.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "9 headers: {resp}");

    let mut head = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..20 {
        head.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(status_then_close(proxy.addr(), head.as_bytes()).await, 431);
    assert_eq!(backend.requests(), 1);
    proxy.expect_errors("header_too_large", 1).await;
}
