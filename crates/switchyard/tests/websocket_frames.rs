//! The proxy follows the client's WebSocket frames: a frame over `websocket_max_frame` (the
//! server's, or its route's) ends the tunnel with close status 1009 before the frame's header
//! reaches the backend; frames split anywhere across reads, or sent along with the handshake,
//! are followed the same; the backend's frames are passed on unlimited, and the proxy's close
//! frame never lands inside one of them. Protocol errors (1002) are in `bad_input_streams.rs`.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::proxy;
use support::ws::{self, recording_backend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// Sends `bytes` and reads the backend's echo of them.
async fn round_trip(c: &mut TcpStream, bytes: &[u8]) {
    c.write_all(bytes).await.unwrap();
    let mut echo = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut echo))
        .await
        .expect("the echo within 10 s")
        .unwrap();
    assert_eq!(echo, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_with_1009_before_the_backend_sees_it() {
    let (backend, received) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 1024)
        .to(backend)
        .start();
    let mut c = ws::open(proxy.addr(), "/chat").await;
    let at_limit = ws::frame(0x82, &[7; 1024]);
    round_trip(&mut c, &at_limit).await;
    let _ = c.write_all(&ws::frame(0x82, &[9; 1025])).await;
    let (code, reason) = ws::expect_close(&mut c).await;
    assert_eq!((code, reason.as_str()), (1009, "frame too large"));
    assert_eq!(ws::ended(&received, 0).await, at_limit);
    let s = proxy.stats().await;
    let counts = &s["routes"][0]["websocket"];
    assert_eq!(counts["frames_too_large"], 1, "{counts}");
    assert_eq!(counts["protocol_errors"], 0, "{counts}");
    assert_eq!(counts["max_frame"], 1024, "{counts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_sets_its_own_limit_and_zero_lifts_it() {
    let (backend, received) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 1024)
        .backend("ws", backend)
        .route("open", "/open", &["ws"], "round_robin")
        .websocket_max_frame(0)
        .route("tight", "/", &["ws"], "round_robin")
        .websocket_max_frame(16)
        .start();
    let mut open = ws::open(proxy.addr(), "/open").await;
    let big = ws::frame(0x82, &vec![1; 200_000]);
    round_trip(&mut open, &big).await;
    let mut tight = ws::open(proxy.addr(), "/tight").await;
    round_trip(&mut tight, &ws::frame(0x81, b"sixteen bytes ok")).await;
    let _ = tight
        .write_all(&ws::frame(0x81, b"seventeen bytes!!"))
        .await;
    assert_eq!(ws::expect_close(&mut tight).await.0, 1009);
    // The other tunnel carries on.
    round_trip(&mut open, &big).await;
    assert!(!received.lock().unwrap()[0].ended);
    let s = proxy.stats().await;
    assert_eq!(s["routes"][0]["websocket"]["frames_too_large"], 0);
    assert_eq!(s["routes"][0]["websocket"]["max_frame"], 0);
    assert_eq!(s["routes"][1]["websocket"]["frames_too_large"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_byte_by_byte_arrive_whole_and_a_split_bad_header_never_does() {
    let (backend, received) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 100_000)
        .to(backend)
        .start();
    let mut c = ws::open(proxy.addr(), "/chat").await;
    c.set_nodelay(true).unwrap();
    let frames: Vec<u8> = [
        ws::frame(0x01, b"frag"),
        ws::frame(0x89, b"ping in between"),
        ws::frame(0x80, &[5; 300]),
        ws::frame(0x82, &[6; 70_000]),
    ]
    .concat();
    // One byte per write (with pauses, so reads see pieces) for the headers; payloads whole.
    for (i, b) in frames.iter().enumerate() {
        c.write_all(std::slice::from_ref(b)).await.unwrap();
        if i < 40 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut echo = vec![0u8; frames.len()];
    c.read_exact(&mut echo).await.unwrap();
    assert_eq!(echo, frames);
    // A frame whose 64-bit length is over the limit, a byte at a time.
    for b in ws::header(0x82, 1 << 20, true) {
        if c.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(ws::expect_close(&mut c).await.0, 1009);
    assert_eq!(ws::ended(&received, 0).await, frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_sent_with_the_handshake_is_checked_too() {
    let (backend, received) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 64)
        .to(backend)
        .start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    let good = ws::frame(0x81, b"early");
    let bytes = [
        ws::handshake("/chat"),
        good.clone(),
        ws::frame(0x82, &[0; 65]),
    ]
    .concat();
    c.write_all(&bytes).await.unwrap();
    let (head, early) = ws::read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The tunnel ends as it starts: the close frame is all the client gets.
    let mut rest = early;
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert_eq!(&rest[..4], &[0x88, 17, 0x03, 0xf1], "{rest:?}");
    assert_eq!(&rest[4..], b"frame too large");
    assert_eq!(ws::ended(&received, 0).await, good);
}

/// A backend whose 101 is followed by `early` (server frames, or the start of one), then
/// silence until the client leaves.
async fn greeting_backend(early: Vec<u8>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let early = early.clone();
            tokio::spawn(async move {
                ws::read_head(&mut s).await;
                let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                             Connection: Upgrade\r\n\r\n";
                s.write_all(&[&head[..], &early].concat()).await.unwrap();
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_frames_are_not_limited_and_a_close_never_lands_inside_one() {
    // A whole server frame of 4 KiB, over the 1 KiB limit: it reaches the client.
    let mut whole = ws::header(0x82, 4096, false);
    whole.extend_from_slice(&[3; 4096]);
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 1024)
        .to(greeting_backend(whole.clone()).await)
        .start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(&ws::handshake("/chat")).await.unwrap();
    let (_, early) = ws::read_head(&mut c).await;
    let mut got = early;
    while got.len() < whole.len() {
        let mut b = [0u8; 8192];
        let n = c.read(&mut b).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(got, whole);
    // Between backend frames, an oversized client frame gets its close frame.
    let _ = c.write_all(&ws::header(0x82, 2048, true)).await;
    assert_eq!(ws::expect_close(&mut c).await.0, 1009);

    // A backend frame announced at 4 KiB of which 100 bytes came: the proxy closes the
    // connection without writing a close frame into the middle of it.
    let mut partial = ws::header(0x82, 4096, false);
    partial.extend_from_slice(&[4; 100]);
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 1024)
        .to(greeting_backend(partial.clone()).await)
        .start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(&ws::handshake("/chat")).await.unwrap();
    let (_, mut got) = ws::read_head(&mut c).await;
    while got.len() < partial.len() {
        let mut b = [0u8; 8192];
        let n = c.read(&mut b).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    let _ = c.write_all(&ws::header(0x82, 2048, true)).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("closed within 10 s")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(got, partial);
    let s = proxy.stats().await;
    assert_eq!(s["routes"][0]["websocket"]["frames_too_large"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_gets_close_1009_for_a_message_over_the_limit() {
    let (backend, _received) = recording_backend().await;
    let proxy = proxy::new()
        .server(|s| s.websocket_max_frame = 4096)
        .to(backend)
        .start();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", proxy.addr()))
        .await
        .expect("handshake");
    ws.send(Message::binary(vec![1u8; 5000])).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer within 10 s");
    match close {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Size);
            assert_eq!(frame.reason.as_str(), "frame too large");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echo_larger_than_the_socket_buffers_flows_both_ways_at_once() {
    // 64 MiB in frames at the 1 MiB default limit, echoed while it is still being sent: more
    // than every socket buffer on the way holds, so neither direction may wait on the other.
    let (backend, _received) = recording_backend().await;
    let proxy = proxy::new().to(backend).start();
    let c = ws::open(proxy.addr(), "/chat").await;
    let frame = ws::frame(0x82, &vec![5u8; 1 << 20]);
    let total = 64 * frame.len();
    let (mut r, mut w) = c.into_split();
    let sent = frame.clone();
    let writer = tokio::spawn(async move {
        for _ in 0..64 {
            w.write_all(&sent).await.unwrap();
        }
        w
    });
    let read = async {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            let n = r.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {got} bytes");
            got += n;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the whole echo within 60 s");
    let _w = writer.await.unwrap();
}
