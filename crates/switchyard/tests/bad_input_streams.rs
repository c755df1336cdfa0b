//! Hostile input past the request line, a case at a time: WebSocket frames that break RFC 6455
//! or `websocket_max_frame`, HTTP/2 header blocks that RFC 9113 calls malformed, a rapid-reset
//! burst, and a client that asks for a large response and never reads it. Each case states what
//! should become of it (the offending bytes never reach the backend), and well-behaved clients
//! (HTTP/1.1, HTTP/2 and an open WebSocket tunnel) are served after every case.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support::h2c::{self, get_fields, literal, Answer};
use support::raw::Raw;
use support::ws::{self, recording_backend};
use support::{client, proxy, server, wait_for, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The frame limit of the WebSocket cases.
const LIMIT: usize = 4096;

/// WebSocket cases: frames that reach the backend first (after a valid text frame), the bytes
/// the proxy must refuse, and the close status the client gets for them.
#[rustfmt::skip]
fn ws_cases() -> Vec<(&'static str, Vec<u8>, Vec<u8>, u16)> {
    let none = Vec::new;
    let top_bit = [&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1][..], &[1, 2, 3, 4]].concat();
    let unmasked = [ws::header(0x81, 5, false), b"hello".to_vec()].concat();
    vec![
        // Over the limit: 1009 (Message Too Big), known from the header alone.
        ("frame one byte over websocket_max_frame", none(), ws::frame(0x82, &[0; LIMIT + 1]), 1009),
        ("1 GiB announced, no payload sent", none(), ws::header(0x82, 1 << 30, true), 1009),
        ("last fragment over the limit", ws::frame(0x01, b"a"), ws::frame(0x80, &[0; LIMIT + 1]), 1009),
        // Protocol errors: 1002 (Protocol Error).
        ("unmasked client frame", none(), unmasked, 1002),
        ("64-bit length with the top bit set", none(), top_bit, 1002),
        ("ping of 126 bytes", none(), ws::frame(0x89, &[0; 126]), 1002),
        ("close of 200 bytes", none(), ws::frame(0x88, &[0; 200]), 1002),
        ("fragmented ping (no FIN)", none(), ws::frame(0x09, b"ping"), 1002),
        ("reserved data opcode 0x3", none(), ws::frame(0x83, b"x"), 1002),
        ("reserved control opcode 0xB", none(), ws::frame(0x8b, b"x"), 1002),
        ("continuation with no message", none(), ws::frame(0x80, b"x"), 1002),
        ("new message inside a fragmented one", ws::frame(0x01, b"a"), ws::frame(0x81, b"b"), 1002),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_that_break_the_rules_never_reach_the_backend() {
    let (ws_backend, received) = recording_backend().await;
    let http = server::fixed("fine").await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = LIMIT)
        .backend("ws", ws_backend)
        .route("ws", "/ws", &["ws"], "round_robin")
        .backend("http", http.addr())
        .route("http", "/", &["http"], "round_robin")
        .start();
    // A tunnel that stays open through every case (the backend's connection 0).
    let mut steady = ws::open(proxy.addr(), "/ws/steady").await;
    let ping = ws::frame(0x81, b"still there?");
    round_trip(&mut steady, &ping).await;
    let cases = ws_cases();
    for (i, (name, lead, bad, code)) in cases.iter().enumerate() {
        let mut c = ws::open(proxy.addr(), "/ws").await;
        let good = [ws::frame(0x81, b"good"), lead.clone()].concat();
        round_trip(&mut c, &good).await;
        // The proxy may close before taking every byte: a failed write is fine.
        let _ = c.write_all(bad).await;
        let (got, reason) = ws::expect_close(&mut c).await;
        assert_eq!(got, *code, "{name}: closed with {got} ({reason})");
        let seen = ws::ended(&received, i + 1).await;
        assert_eq!(
            seen, good,
            "{name}: the backend saw more than the valid frames"
        );
        round_trip(&mut steady, &ping).await;
        assert_eq!(
            client::get(proxy.addr(), "/after").await.status,
            200,
            "after {name}"
        );
    }
    let s = proxy.stats().await;
    let counts = &s["routes"][0]["websocket"];
    let too_large = cases.iter().filter(|c| c.3 == 1009).count();
    assert_eq!(counts["frames_too_large"], too_large, "{counts}");
    assert_eq!(
        counts["protocol_errors"],
        cases.len() - too_large,
        "{counts}"
    );
}

/// Sends `bytes` on a tunnel to the echoing backend and reads them back.
async fn round_trip(c: &mut TcpStream, bytes: &[u8]) {
    c.write_all(bytes).await.unwrap();
    let mut echo = vec![0u8; bytes.len()];
    tokio::time::timeout(DEADLINE, c.read_exact(&mut echo))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(echo, bytes);
}

/// RST_STREAM with PROTOCOL_ERROR: the request is refused, the connection serves on.
const RESET: Answer = Answer::Reset(1);
/// GOAWAY with PROTOCOL_ERROR: a field that cannot even be decoded ends the connection.
const GOAWAY: Answer = Answer::GoAway(1);

/// HTTP/2 header blocks (on a `GET`) that RFC 9113 section 8.2 makes malformed, and how the
/// proxy answers each; none reaches the backend.
#[rustfmt::skip]
fn h2_cases() -> Vec<(&'static str, Vec<u8>, Answer)> {
    let with = |name: &[u8], value: &[u8]| [get_fields(), literal(name, value)].concat();
    let authority = [&[0x01, 7][..], b"h2.test"].concat();
    vec![
        // Connection-specific fields (8.2.2).
        ("connection: keep-alive", with(b"connection", b"keep-alive"), RESET),
        ("transfer-encoding: chunked", with(b"transfer-encoding", b"chunked"), RESET),
        ("keep-alive: timeout=5", with(b"keep-alive", b"timeout=5"), RESET),
        ("proxy-connection: keep-alive", with(b"proxy-connection", b"keep-alive"), RESET),
        ("upgrade: h2c", with(b"upgrade", b"h2c"), RESET),
        ("te: gzip", with(b"te", b"gzip"), RESET),
        // Field names and values (8.2.1).
        ("uppercase field name", with(b"X-Upper", b"v"), GOAWAY),
        ("space in a field name", with(b"bad name", b"v"), GOAWAY),
        ("CRLF in a field value", with(b"x-a", b"b\r\nx-injected: 1"), GOAWAY),
        ("NUL in a field value", with(b"x-a", b"a\0b"), GOAWAY),
        // Pseudo-header fields (8.3).
        ("pseudo-header after a regular field", [literal(b"x-a", b"b"), get_fields()].concat(), RESET),
        ("unknown pseudo-header", with(b":evil", b"x"), GOAWAY),
        ("repeated :path", [get_fields(), vec![0x84]].concat(), RESET),
        ("no :path", [&[0x82, 0x86][..], &authority].concat(), RESET),
        ("empty :path", [vec![0x82, 0x86], authority.clone(), literal(b":path", b"")].concat(), RESET),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_header_blocks_never_reach_the_backend() {
    let backend = server::fixed("fine").await;
    let proxy = proxy::new().to(backend.addr()).start();
    let mut failures = Vec::new();
    for (name, block, expected) in h2_cases() {
        let before = backend.requests();
        let answer = h2c::raw_request(proxy.addr(), &block).await;
        // Give a forwarded request time to arrive.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reached = backend.requests() - before;
        if reached != 0 || answer != expected {
            failures.push(format!(
                "{name}: expected {expected:?}, answered {answer:?}, {reached} reached the backend"
            ));
        }
        assert_eq!(
            h2c::get_status(proxy.addr(), "/after").await,
            200,
            "after {name}"
        );
        assert_eq!(
            client::get(proxy.addr(), "/after").await.status,
            200,
            "after {name}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_burst_is_sent_away_and_others_are_served() {
    let backend = server::fixed("fine").await;
    let proxy = proxy::new()
        .server(|s| s.h2.max_reset_streams = 10)
        .to(backend.addr())
        .start();
    let (opened, err) = h2c::rapid_reset(proxy.addr()).await;
    // GOAWAY ENHANCE_YOUR_CALM, or the write that failed as the proxy closed right after it.
    let calm = err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
    assert!(calm || err.is_io(), "{err:?}");
    assert!(opened < 10_000, "the burst was never stopped");
    assert_eq!(h2c::get_status(proxy.addr(), "/after").await, 200);
    assert_eq!(client::get(proxy.addr(), "/after").await.status, 200);
}

/// The size of the response the slow reader asks for.
const BIG: u64 = 1 << 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_stalls_its_backend_while_others_are_served() {
    // `/big` streams 1 GiB in 64 KiB chunks made as the proxy asks for them, counted in
    // `produced`; anything else is a small answer.
    let produced = Arc::new(AtomicU64::new(0));
    let big_requests = Arc::new(AtomicU64::new(0));
    let backend = {
        let (produced, big_requests) = (Arc::clone(&produced), Arc::clone(&big_requests));
        server::serve(move |req: Request<Incoming>| {
            let (produced, big_requests) = (Arc::clone(&produced), Arc::clone(&big_requests));
            async move {
                if req.uri().path() != "/big" {
                    return server::respond(StatusCode::OK, "fine");
                }
                big_requests.fetch_add(1, SeqCst);
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = (0..BIG / chunk.len() as u64).map(move |_| {
                    produced.fetch_add(chunk.len() as u64, SeqCst);
                    Ok::<_, support::body::BoxError>(Frame::data(chunk.clone()))
                });
                let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
                let mut resp = http::Response::new(body);
                resp.headers_mut()
                    .insert("content-length", BIG.to_string().parse().unwrap());
                resp
            }
        })
        .await
    };
    let proxy = proxy::new().to(backend.addr()).start();
    // Fifty pipelined requests for 1 GiB each, and then not a byte read.
    let mut slow = Raw::connect(proxy.addr()).await;
    slow.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(50).as_bytes())
        .await;
    // The response fills the socket buffers and the proxy's, and then the backend is no
    // longer read: `produced` stops growing. Others are served meanwhile.
    let mut last = u64::MAX;
    wait_for(
        Duration::from_secs(30),
        "the slow reader's backend to stall",
        || {
            let now = produced.load(SeqCst);
            let stalled = now == last && now > 0;
            last = now;
            let addr = proxy.addr();
            async move {
                assert_eq!(client::get(addr, "/meanwhile").await.status, 200);
                tokio::time::sleep(Duration::from_millis(300)).await;
                stalled
            }
        },
    )
    .await;
    let held = produced.load(SeqCst);
    assert!(
        held < 64 << 20,
        "{held} bytes of the response left the backend"
    );
    // The other pipelined requests wait behind the first: none reached the backend.
    assert_eq!(big_requests.load(SeqCst), 1);
    // Well-behaved clients, on both protocols, while the slow reader is still stalled.
    assert_eq!(client::get(proxy.addr(), "/meanwhile").await.status, 200);
    assert_eq!(h2c::get_status(proxy.addr(), "/meanwhile").await, 200);
    drop(slow);
}
