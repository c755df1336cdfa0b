//! Hostile and malformed HTTP/1.1 input, a case at a time, against a proxy whose backend records
//! every request that reaches it whole: nothing malformed gets through (a request is refused,
//! or reaches the backend only in the well-formed shape the proxy writes), and a well-behaved
//! client is served after every case. Hostile WebSocket frames, HTTP/2 header blocks and slow
//! readers are in `bad_input_streams.rs`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use support::raw::{self, End, Raw};
use support::server;
use support::{client, proxy};

/// What should become of a case.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answered with a status of this class (400..=499 or 500..=599 as given), or the
    /// connection closed without an answer; the backend sees nothing.
    Refused,
    /// Either refused, or forwarded: the backend then received a well-formed request (it
    /// parsed it), with this body.
    RefusedOrForwarded(&'static str),
    /// Forwarded with this path and `Host` (absolute-form made origin-form).
    Forwarded {
        path: &'static str,
        host: &'static str,
    },
}

/// A request as the backend received it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    host: String,
    body: Vec<u8>,
}

fn cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let b = |s: &str| s.as_bytes().to_vec();
    let long_path = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let long_header = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(40_000)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    vec![
        // Request smuggling: framing that two parsers could read differently.
        ("CL.TE", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"), Refused),
        ("TE.CL", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"), Refused),
        ("duplicate Content-Length, different", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello"), Refused),
        ("duplicate Content-Length, same", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"), RefusedOrForwarded("hello")),
        ("Content-Length list", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 3\r\n\r\nhello"), Refused),
        ("Content-Length negative", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nhello"), Refused),
        ("Content-Length with a sign", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"), Refused),
        ("Content-Length overflowing", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 184467440737095516160\r\n\r\nhello"), Refused),
        ("Content-Length hex", b("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\nhello"), Refused),
        ("Transfer-Encoding not ending in chunked", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Refused),
        ("Transfer-Encoding unknown", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Refused),
        ("Transfer-Encoding chunked twice", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Refused),
        ("space before the colon", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), Refused),
        ("obs-fold continuation line", b("GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"), Refused),
        ("obs-fold hiding Transfer-Encoding", b("POST / HTTP/1.1\r\nHost: x\r\nX: y\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"), Refused),
        ("bare LF line endings", b("POST / HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello"), RefusedOrForwarded("hello")),
        ("bare CR in a header value", b("GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n"), Refused),
        ("lone CR as line end", b("GET / HTTP/1.1\rHost: x\r\n\r\n"), Refused),
        // Chunked bodies that do not decode.
        ("chunk size not hex", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), Refused),
        ("chunk size overflowing", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), Refused),
        ("chunk size negative", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"), Refused),
        ("chunk data longer than its size", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"), Refused),
        ("chunk without CRLF after its data", b("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"), Refused),
        // Extensions are dropped as the body is re-framed (hyper bounds their total size).
        ("chunk extension of 8 KiB", format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(8192)).into_bytes(), RefusedOrForwarded("hello")),
        // Sizes past the limits.
        ("request line of 70 KB", long_path.into_bytes(), Refused),
        ("one header of 40 KB", long_header.into_bytes(), Refused),
        ("300 headers", many_headers.into_bytes(), Refused),
        // Bytes that have no place in a head.
        ("NUL in a header value", b("GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n"), Refused),
        ("NUL in the path", b("GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("invalid UTF-8 in the path", [b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".as_slice()].concat(), Refused),
        ("space in the path", b("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("control character in the path", b("GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("header name with a space", b("GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"), Refused),
        ("header line without a colon", b("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), Refused),
        ("empty header name", b("GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n"), Refused),
        ("method with a separator", b("G@T / HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("unknown HTTP version", b("GET / HTTP/3.7\r\nHost: x\r\n\r\n"), Refused),
        ("HTTP/2.0 in a request line", b("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), Refused),
        // Host and target abuse.
        ("HTTP/1.1 without Host", b("GET / HTTP/1.1\r\n\r\n"), Refused),
        ("two Host headers", b("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Refused),
        ("absolute-form overrides Host", b("GET http://other.example/p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n"), Forwarded { path: "/p?q=1", host: "other.example" }),
        ("absolute-form with a non-HTTP scheme", b("GET ftp://other.example/ HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("CONNECT to a third party", b("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"), Refused),
        // CONNECT abuse: the proxy opens no tunnels, whatever follows the head.
        ("CONNECT with a TLS ClientHello behind it", [b("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"), vec![0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00]].concat(), Refused),
        ("CONNECT to a loopback SSH port", b("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\nSSH-2.0-OpenSSH_9.6\r\n"), Refused),
        ("CONNECT with an origin-form target", b("CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("CONNECT with a body", b("CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\nContent-Length: 5\r\n\r\nhello"), Refused),
        ("CONNECT over HTTP/1.0", b("CONNECT evil.example:443 HTTP/1.0\r\n\r\n"), Refused),
        ("CONNECT with a request hidden behind it", b("CONNECT x:80 HTTP/1.1\r\nHost: x:80\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
        ("asterisk-form with GET", b("GET * HTTP/1.1\r\nHost: x\r\n\r\n"), Refused),
    ]
}

/// A backend that records each request it reads whole.
async fn recording_backend() -> (server::Backend, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let backend = server::serve(move |req: Request<Incoming>| {
        let log = Arc::clone(&log);
        async move {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let host = req
                .headers()
                .get("host")
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
                .unwrap_or_default();
            if let Ok(body) = req.into_body().collect().await {
                log.lock().unwrap().push(Seen {
                    path,
                    host,
                    body: body.to_bytes().to_vec(),
                });
            }
            server::respond(http::StatusCode::OK, "fine")
        }
    })
    .await;
    (backend, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_requests_never_reach_the_backend_malformed() {
    let (backend, seen) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.client_header_timeout = Duration::from_millis(500))
        .to(backend.addr())
        .start();
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, bytes, expect) in &cases {
        let before = seen.lock().unwrap().len();
        let mut c = Raw::connect(proxy.addr()).await;
        // The peer may close before taking every byte: a failed write is an answer too.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut c.stream, bytes).await;
        let (reply, _end) = c.read_to_close(Duration::from_secs(3)).await;
        let status = if reply.starts_with(b"HTTP/1.1 ") {
            Some(raw::status(&reply))
        } else {
            None
        };
        // Give a forwarded request time to be recorded.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reached: Vec<Seen> = seen.lock().unwrap()[before..].to_vec();
        let refused = reached.is_empty() && status.is_none_or(|s| s >= 400);
        let ok = match expect {
            Expect::Refused => refused,
            Expect::RefusedOrForwarded(body) => {
                refused
                    || (status == Some(200)
                        && reached.len() == 1
                        && reached[0].body == body.as_bytes())
            }
            Expect::Forwarded { path, host } => {
                status == Some(200)
                    && reached.len() == 1
                    && reached[0].path == *path
                    && reached[0].host == *host
            }
        };
        if !ok {
            failures.push(format!(
                "{name}: expected {expect:?}, got status {status:?}, backend saw {reached:?}, reply {:?}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            ));
        }
        // A well-behaved client is served after every case.
        let a = client::get(proxy.addr(), "/after").await;
        assert_eq!(a.status, 200, "after {name}: {}", a.text());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_is_cut_off_while_others_are_served() {
    let (backend, seen) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.client_header_timeout = Duration::from_millis(400))
        .to(backend.addr())
        .start();
    let mut slow = Raw::connect(proxy.addr()).await;
    let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    slow.write(head).await;
    let mut end = End::StillOpen;
    for _ in 0..40 {
        let a = client::get(proxy.addr(), "/meanwhile").await;
        assert_eq!(a.status, 200);
        if tokio::io::AsyncWriteExt::write_all(&mut slow.stream, b"a")
            .await
            .is_err()
        {
            end = End::Closed;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if end == End::StillOpen {
        end = slow.read_to_close(Duration::from_secs(3)).await.1;
    }
    assert_eq!(end, End::Closed, "the slow head was never cut off");
    assert!(seen.lock().unwrap().iter().all(|s| s.path != "/slow"));
}
