//! WebSocket through the proxy: the HTTP/1.1 upgrade handshake reaches the backend with its
//! `Upgrade` and `Connection` headers, the backend's 101 reaches the client, and then bytes
//! flow both ways (including what the backend sent right after its 101), half-close passes,
//! and an idle tunnel is closed. The client sends WebSocket frames (the proxy checks them; see
//! `websocket_frames.rs`); the backend's bytes are passed on whatever they are. A backend that refuses the upgrade answers normally.

mod support;

use std::time::Duration;

use support::{proxy, ws};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HANDSHAKE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Reads until the end of a head (`\r\n\r\n`); the head, and any bytes after it.
async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).to_lowercase(), rest);
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before the end of the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A WebSocket-ish backend: accepts the upgrade (or refuses it with 400 when `accept` is
/// false), greets, echoes until the client half-closes, then says goodbye and closes.
async fn backend(accept: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (head, _) = read_head(&mut s).await;
                if !accept {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\nno")
                        .await;
                    return;
                }
                assert!(head.contains("upgrade: websocket"), "{head}");
                assert!(head.contains("connection: upgrade"), "{head}");
                assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
                s.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhello",
                )
                .await
                .unwrap();
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => s.write_all(&buf[..n]).await.unwrap(),
                    }
                }
                let _ = s.write_all(b"bye").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_both_ways_and_half_close_passes() {
    let proxy = proxy::new().to(backend(true).await).start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let (head, mut early) = read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    // The greeting the backend sent right behind its 101.
    while early.len() < 5 {
        let mut b = [0u8; 16];
        let n = c.read(&mut b).await.unwrap();
        early.extend_from_slice(&b[..n]);
    }
    assert_eq!(early, b"hello");
    // 256 KiB each way, interleaved: frames of up to 64 KiB (the echo sends them back as
    // they are).
    let data: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    let payload: Vec<u8> = data
        .chunks(64 * 1024 - 7)
        .flat_map(|c| ws::frame(0x82, c))
        .collect();
    let (mut r, mut w) = c.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap(); // half-close: the backend sees EOF
        w
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(got.len(), payload.len() + 3);
    assert_eq!(&got[..payload.len()], &payload[..]);
    assert_eq!(&got[payload.len()..], b"bye");
    let s = proxy.stats().await;
    assert_eq!(s["totals"]["responses"]["1xx"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upgrade_is_an_ordinary_response() {
    let proxy = proxy::new().to(backend(false).await).start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let (head, _) = read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed() {
    let proxy = proxy::new()
        .server(|s| s.client_keepalive_timeout = Duration::from_millis(300))
        .to(backend(true).await)
        .start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let (head, _) = read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // Say nothing: the tunnel closes after the idle timeout (the greeting arrives first).
    let started = tokio::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest))
        .await
        .expect("closed within the deadline")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_open_tunnel_finish() {
    let proxy = proxy::new().to(backend(true).await).start();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(HANDSHAKE).await.unwrap();
    let (head, mut early) = read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    proxy.shutdown();
    // Draining: the tunnel still carries bytes both ways.
    let message = ws::frame(0x81, b"after shutdown");
    c.write_all(&message).await.unwrap();
    let want = [&b"hello"[..], &message].concat();
    while early.len() < want.len() {
        let mut b = [0u8; 64];
        let n = c.read(&mut b).await.unwrap();
        assert!(n > 0, "tunnel closed during the drain");
        early.extend_from_slice(&b[..n]);
    }
    assert_eq!(early, want);
    // The client leaves; the server's threads then end (well before the 5 s drain timeout).
    drop(c);
    let started = tokio::time::Instant::now();
    proxy.join().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_holds_at_most_max_websockets_tunnels() {
    let proxy = proxy::new()
        .to(backend(true).await)
        .max_websockets(1)
        .start();
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    first.write_all(HANDSHAKE).await.unwrap();
    let (head, _) = read_head(&mut first).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // The route is full: the next handshake is refused before reaching a backend.
    let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
    second.write_all(HANDSHAKE).await.unwrap();
    let (head, _) = read_head(&mut second).await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(
        head.contains("x-switchyard-error: websocket_limit"),
        "{head}"
    );
    proxy.expect_errors("websocket_limit", 1).await;
    // The first one closes: its slot is free again.
    drop(first);
    support::wait_for(support::DEADLINE, "a new tunnel to be accepted", || async {
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(HANDSHAKE).await.unwrap();
        read_head(&mut c).await.0.starts_with("http/1.1 101")
    })
    .await;
}
