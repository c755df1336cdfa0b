//! Plain HTTP/1.1 proxying: methods and bodies, forwarding and hop-by-hop headers both ways,
//! chunked uploads, `Expect: 100-continue`, absolute-form targets, bodiless responses.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use support::body::{channel, empty, full};
use support::client::{request, Client};
use support::raw::{End, Raw};
use support::server::{self, echoed_headers, respond};
use support::{proxy, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_post_with_bodies_are_forwarded() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;

    let a = c.get("/v1/models?x=1").await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["uri"], "/v1/models?x=1");
    assert_eq!(doc["body"], "");
    assert_eq!(echoed_headers(&doc, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_headers(&doc, "host"), ["test.local"]);

    let a = c
        .post("/v1/chat/completions", "{\"hello\":\"world\"}")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["uri"], "/v1/chat/completions");
    assert_eq!(doc["body"], "{\"hello\":\"world\"}");
    assert_eq!(echoed_headers(&doc, "content-length"), ["17"]);

    let a = c
        .request(
            request(Method::PUT, "/put")
                .body(full(vec![b'z'; 100_000]))
                .unwrap(),
        )
        .await;
    let doc = a.json();
    assert_eq!(doc["method"], "PUT");
    assert_eq!(doc["body"].as_str().unwrap().len(), 100_000);
    assert_eq!(backend.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_added_and_hop_by_hop_removed() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    let req = http::Request::get("/h")
        .header("host", "api.example.test:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "named in Connection")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("upgrade", "websocket")
        .header("x-kept", "yes")
        .body(empty())
        .unwrap();
    let a = c.request(req).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();

    assert_eq!(
        echoed_headers(&doc, "x-forwarded-for"),
        ["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(echoed_headers(&doc, "x-forwarded-proto"), ["http"]);
    let via = echoed_headers(&doc, "via");
    assert!(
        via.len() == 1 && via[0].contains("switchyard"),
        "via: {via:?}"
    );
    assert_eq!(echoed_headers(&doc, "host"), ["api.example.test:8443"]);
    assert_eq!(echoed_headers(&doc, "x-kept"), ["yes"]);
    for hop in [
        "x-secret",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            echoed_headers(&doc, hop).is_empty(),
            "{hop} reached the backend: {doc:#}"
        );
    }
    // `Connection` itself may be set by the proxy's own client, but not to the client's value.
    for v in echoed_headers(&doc, "connection") {
        assert!(!v.contains("x-secret"), "connection: {v}");
    }
    // The response carries Via too.
    assert!(a.header("via").unwrap().contains("switchyard"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_body_reaches_backend_intact() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();

    // A streamed body of unknown length: the client sends it chunked.
    let mut c = Client::connect(proxy.addr()).await;
    let (tx, body) = channel();
    let pending = tokio::spawn(async move {
        c.request(request(Method::POST, "/chunked").body(body).unwrap())
            .await
    });
    for part in ["first ", "second ", "", "third"] {
        if !part.is_empty() {
            tx.send(Bytes::from(part)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(tx);
    let doc = pending.await.unwrap().json();
    assert_eq!(doc["body"], "first second third");
    assert!(echoed_headers(&doc, "content-length").is_empty());

    // Hand-written chunked framing, with a chunk extension and a trailer-less end.
    let mut raw = Raw::connect(proxy.addr()).await;
    raw.write(
        b"POST /raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n",
    )
    .await;
    let resp = raw.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"body\":\"hello, world\""), "{resp}");
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_hop_by_hop_headers_are_removed() {
    let backend = server::serve(|_req| async {
        let mut r = respond(StatusCode::OK, "ok");
        let h = r.headers_mut();
        h.insert("connection", "x-internal".parse().unwrap());
        h.insert("x-internal", "secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-public", "1".parse().unwrap());
        h.insert("via", "1.0 engine".parse().unwrap());
        r
    })
    .await;
    let proxy = proxy::new().to(backend.addr()).start();
    let a = Client::connect(proxy.addr()).await.get("/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-public"), Some("1"));
    assert_eq!(a.header("via"), Some("1.0 engine, 1.1 switchyard"));
    for hop in ["x-internal", "keep-alive", "proxy-authenticate"] {
        assert!(a.header(hop).is_none(), "{hop} reached the client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered_by_the_proxy() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await;
    // Wait (without sending the body) until the interim response arrives.
    let mut interim = Vec::new();
    let mut buf = [0u8; 256];
    while !interim.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(
            DEADLINE,
            tokio::io::AsyncReadExt::read(&mut c.stream, &mut buf),
        )
        .await
        .expect("100 Continue in time")
        .unwrap();
        assert!(n > 0, "closed before 100 Continue");
        interim.extend_from_slice(&buf[..n]);
    }
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write(b"hello").await;
    let resp = c.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let doc: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(doc["body"], "hello");
    assert!(echoed_headers(&doc, "expect").is_empty(), "{doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_target_is_sent_in_origin_form() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(
        b"GET http://api.example.test:81/abs?q=1 HTTP/1.1\r\nHost: api.example.test:81\r\n\r\n",
    )
    .await;
    let resp = c.read_response(DEADLINE).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let doc: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(doc["uri"], "/abs?q=1");
    assert_eq!(echoed_headers(&doc, "host"), ["api.example.test:81"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_keep_both_connections_usable() {
    let backend = server::serve(|req| async move {
        match req.uri().path() {
            "/204" => respond(StatusCode::NO_CONTENT, ""),
            "/304" => respond(StatusCode::NOT_MODIFIED, ""),
            _ => respond(StatusCode::OK, vec![b'x'; 1234]),
        }
    })
    .await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Client::connect(proxy.addr()).await;
    let head = c
        .request(request(Method::HEAD, "/doc").body(empty()).unwrap())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("1234"));
    assert!(head.body.is_empty());
    assert_eq!(c.get("/204").await.status, StatusCode::NO_CONTENT);
    assert_eq!(c.get("/304").await.status, StatusCode::NOT_MODIFIED);
    let a = c.get("/doc").await;
    assert_eq!((a.status, a.body.len()), (StatusCode::OK, 1234));
    assert_eq!(
        backend.accepted(),
        1,
        "the upstream connection was not reused"
    );
    assert_eq!(proxy.backend_stats(0).await["connections_reused"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_request_without_host_is_400() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"GET /nohost HTTP/1.1\r\n\r\n").await;
    let resp = c.read_response(DEADLINE).await;
    assert_eq!(support::raw::status(resp.as_bytes()), 400, "{resp}");
    assert_eq!(c.read_to_close(DEADLINE).await.1, End::Closed);
    assert_eq!(backend.requests(), 0);
}
