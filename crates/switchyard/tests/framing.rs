//! Request framing the proxy must refuse before anything reaches a backend: Content-Length
//! together with Transfer-Encoding (request smuggling), invalid Content-Length, duplicate Host.

mod support;

use support::raw::{self, End, Raw};
use support::server;
use support::{proxy, DEADLINE};

/// Sends `head` on a new connection; asserts a 400 followed by the connection closing.
async fn expect_400_and_close(addr: std::net::SocketAddr, head: &[u8]) -> String {
    let mut c = Raw::connect(addr).await;
    c.write(head).await;
    let text = c.read_response(DEADLINE).await;
    assert_eq!(raw::status(text.as_bytes()), 400, "{text}");
    let (rest, end) = c.read_to_close(DEADLINE).await;
    assert!(rest.is_empty(), "more after the 400: {rest:?}");
    assert_eq!(end, End::Closed, "connection left open after: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_is_400_in_either_order() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let heads: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    ];
    for head in heads {
        let text = expect_400_and_close(proxy.addr(), head).await;
        assert!(
            text.to_ascii_lowercase()
                .contains("x-switchyard-error: bad_request"),
            "{text}"
        );
    }
    assert_eq!(
        backend.requests(),
        0,
        "an ambiguous request reached the backend"
    );
    proxy.expect_errors("bad_request", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding_on_a_reused_connection_is_400() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let first = c.read_response(DEADLINE).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    c.write(
        b"POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let (resp, end) = c.read_to_close(DEADLINE).await;
    assert_eq!(
        raw::status(&resp),
        400,
        "{}",
        String::from_utf8_lossy(&resp)
    );
    assert_eq!(end, End::Closed);
    assert_eq!(
        backend.requests(),
        1,
        "only the first request may reach the backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_content_length_is_400() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let heads: [&[u8]; 3] = [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello",
    ];
    for head in heads {
        expect_400_and_close(proxy.addr(), head).await;
    }
    assert_eq!(backend.requests(), 0);
    proxy.expect_errors("bad_request", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_host_headers_are_400() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    expect_400_and_close(
        proxy.addr(),
        b"GET / HTTP/1.1\r\nHost: public.example\r\nHost: internal.example\r\n\r\n",
    )
    .await;
    assert_eq!(backend.requests(), 0);
}
