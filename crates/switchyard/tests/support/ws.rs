//! WebSocket at the byte level: client frames (masked, as RFC 6455 requires of clients), frame
//! headers with any length and mask bit, reading a server's frame, and a backend that records
//! every byte it receives after its 101 and echoes it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// A WebSocket handshake request for `path`.
pub fn handshake(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The mask key of every test frame.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame header: first byte `b0` (FIN and opcode), payload length `len` in its shortest
/// form, with the test mask key if `masked`.
pub fn header(b0: u8, len: u64, masked: bool) -> Vec<u8> {
    let bit = if masked { 0x80 } else { 0 };
    let mut out = vec![b0];
    match len {
        0..=125 => out.push(bit | len as u8),
        126..=65535 => {
            out.push(bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&KEY);
    }
    out
}

/// A whole masked client frame carrying `payload`.
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = header(b0, payload.len() as u64, true);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// Reads until the end of a head; the head (lowercase), and any bytes after it.
pub async fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let (head, rest) = read_head_as_sent(s).await;
    (head.to_lowercase(), rest)
}

/// Reads until the end of a head; the head as sent, and any bytes after it.
async fn read_head_as_sent(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the end of the head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to `addr` and completes a WebSocket handshake for `path` (a 101 is asserted).
pub async fn open(addr: SocketAddr, path: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&handshake(path)).await.unwrap();
    let (head, early) = read_head(&mut c).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(early.is_empty(), "{early:?}");
    c
}

/// Reads one unmasked frame with a payload under 64 KiB: its first byte and payload, or `None`
/// if the connection ends (or fails) first.
pub async fn read_frame(s: &mut (impl AsyncRead + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    assert_eq!(h[1] & 0x80, 0, "a server frame is never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).await.ok()?;
            usize::from(u16::from_be_bytes(l))
        }
        127 => panic!("a test frame over 64 KiB"),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((h[0], payload))
}

/// Reads the server's close frame: its status code and reason; then asserts the connection
/// ends.
pub async fn expect_close(s: &mut TcpStream) -> (u16, String) {
    let (b0, payload) = tokio::time::timeout(Duration::from_secs(10), read_frame(s))
        .await
        .expect("a close frame within 10 s")
        .expect("a frame before the connection ends");
    assert_eq!(b0, 0x88, "a close frame");
    assert!(payload.len() >= 2, "{payload:?}");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        ended.is_ok(),
        "the connection stays open after the close frame"
    );
    (code, reason)
}

/// What one connection of a [`recording_backend`] received.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// Every byte after the handshake.
    pub bytes: Vec<u8>,
    /// Whether the connection has ended.
    pub ended: bool,
}

/// What a [`recording_backend`] received, one entry per connection in accept order.
pub type Received = Arc<Mutex<Vec<Conn>>>;

/// Waits until connection `i` of a recording backend has ended; returns what it received.
pub async fn ended(received: &Received, i: usize) -> Vec<u8> {
    super::wait_for(super::DEADLINE, "the backend connection to end", || async {
        received.lock().unwrap().get(i).is_some_and(|c| c.ended)
    })
    .await;
    received.lock().unwrap()[i].bytes.clone()
}

/// A WebSocket backend: answers every handshake with a 101 (with the right
/// `Sec-WebSocket-Accept`, so real clients take it) and nothing after it, then records what it
/// receives (appending to its connection's entry) and echoes it.
pub async fn recording_backend() -> (SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let log = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let (head, _) = read_head_as_sent(&mut s).await;
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("sec-websocket-key")
                            .then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                let accept = derive_accept_key(key.as_bytes());
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                // The connection has its entry before the client can see the 101.
                let slot = {
                    let mut log = log.lock().unwrap();
                    log.push(Conn::default());
                    log.len() - 1
                };
                s.write_all(answer.as_bytes()).await.unwrap();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            log.lock().unwrap()[slot].bytes.extend_from_slice(&buf[..n]);
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                log.lock().unwrap()[slot].ended = true;
            });
        }
    });
    (addr, received)
}
