//! HTTP/2 from clients with prior knowledge (h2c), detected on the same port as HTTP/1.1:
//! requests on many concurrent streams of one connection, bodies both ways, curl; and first
//! bytes that are no protocol, or a preface that never completes, closed with nothing forwarded.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::raw::{End, Raw};
use support::server;
use support::{proxy, wait_for, DEADLINE};

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_client(addr: std::net::SocketAddr) -> H2Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

fn request(method: Method, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("http://test.local{path}"))
        .body(Full::new(body.into()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let backend = server::fixed("over h2").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let sender = h2_client(proxy.addr()).await;
    let streams: Vec<_> = (0..100)
        .map(|i| {
            let mut s = sender.clone();
            tokio::spawn(async move {
                let resp = s
                    .send_request(request(Method::GET, &format!("/stream/{i}"), ""))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.version(), http::Version::HTTP_2);
                resp.into_body().collect().await.unwrap().to_bytes()
            })
        })
        .collect();
    for s in streams {
        assert_eq!(s.await.unwrap(), "over h2");
    }
    assert_eq!(backend.requests(), 100);
    let s = proxy.stats().await;
    assert_eq!(s["totals"]["connections"]["accepted"], 1);
    assert_eq!(s["totals"]["responses"]["2xx"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_both_ways() {
    let backend = server::echo().await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut sender = h2_client(proxy.addr()).await;
    let body: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let resp = sender
        .send_request(request(Method::POST, "/upload", body.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["uri"], "/upload");
    assert_eq!(doc["body"].as_str().unwrap().len(), body.len());
    assert!(doc["body"].as_str().unwrap() == body);
    // The backend got an ordinary HTTP/1.1 request with the client's authority as Host.
    assert_eq!(server::echoed_headers(&doc, "host"), ["test.local"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_prior_knowledge() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl not installed: skipped");
        return;
    }
    let backend = server::fixed("hello curl").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let url = format!("http://{}/", proxy.addr());
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            " %{http_version}",
            &url,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello curl 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_stalled_prefaces_are_closed_with_nothing_forwarded() {
    let backend = server::fixed("never").await;
    let proxy = proxy::new()
        .server(|s| s.client_header_timeout = Duration::from_millis(300))
        .to(backend.addr())
        .start();
    // Bytes that are no protocol: closed at once, counted.
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"\x00\x01\x02garbage\r\n\r\n").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty(), "{bytes:?}");
    assert_eq!(end, End::Closed);
    proxy.expect_errors("unknown_protocol", 1).await;
    // A TLS ClientHello on a plain listener: closed too (TLS is not configured here).
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"\x16\x03\x01\x00\x05hello").await;
    let (bytes, _) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty());
    proxy.expect_errors("unknown_protocol", 2).await;
    // Half an HTTP/2 preface: closed when the detection deadline passes.
    let started = tokio::time::Instant::now();
    let mut c = Raw::connect(proxy.addr()).await;
    c.write(b"PRI * HTTP/2.0\r\n").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty());
    assert_eq!(end, End::Closed);
    assert!(started.elapsed() >= Duration::from_millis(250));
    proxy.expect_errors("client_header_timeout", 1).await;
    wait_for(DEADLINE, "connections counted closed", || async {
        let s = proxy.stats().await;
        s["totals"]["connections"]["active"] == 0
    })
    .await;
    assert_eq!(backend.requests(), 0);
}
