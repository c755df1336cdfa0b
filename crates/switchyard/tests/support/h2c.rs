//! HTTP/2 clients: the `h2` crate's (well-behaved, or opening and cancelling streams in a burst),
//! and a raw one that writes hand-made frames (header blocks no HTTP/2 library would send).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens an h2c (prior knowledge) connection, driven in the background.
pub async fn connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// A GET request for `path`.
pub fn get(path: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://h2.test{path}"))
        .body(())
        .unwrap()
}

/// Sends one GET on a new connection; the response status.
pub async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    let sender = connect(addr).await;
    let mut ready = sender.ready().await.unwrap();
    let (resp, _) = ready.send_request(get(path), true).unwrap();
    resp.await.unwrap().status().as_u16()
}

/// Opens streams and cancels each at once, as fast as the connection allows (rapid reset,
/// CVE-2023-44487), until the proxy ends the connection or 10,000 streams were opened; how
/// many were, and the error the connection ended with.
pub async fn rapid_reset(addr: SocketAddr) -> (usize, h2::Error) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut opened = 0;
    for i in 0..10_000 {
        let Ok(ready) = sender.clone().ready().await else {
            break;
        };
        sender = ready;
        let Ok((_resp, mut stream)) = sender.send_request(get(&format!("/burst/{i}")), false)
        else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        opened += 1;
        if conn.is_finished() {
            break;
        }
    }
    let ended = tokio::time::timeout(super::DEADLINE, conn)
        .await
        .expect("the proxy ends the connection")
        .unwrap();
    (
        opened,
        ended.expect_err("the connection ends with an error"),
    )
}

/// The client connection preface.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types.
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const GOAWAY: u8 = 7;

/// A frame: type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK literal field without indexing, with a new name (plain strings under 127 bytes).
pub fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00, name.len() as u8];
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out
}

/// The pseudo-header fields of `GET http://h2.test/` (`:method`, `:scheme`, `:path` from the
/// static table, `:authority` a literal with an indexed name).
pub fn get_fields() -> Vec<u8> {
    let mut out = vec![0x82, 0x86, 0x84, 0x01, 7];
    out.extend_from_slice(b"h2.test");
    out
}

/// How the proxy answered a raw request on stream 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// RST_STREAM on stream 1, with this error code.
    Reset(u32),
    /// GOAWAY, with this error code.
    GoAway(u32),
    /// HEADERS on stream 1 (a response), the first byte of its block (`0x8c`: 400 from the
    /// static table).
    Headers(u8),
    /// The connection closed with no answer.
    Closed,
}

/// Sends the preface, empty SETTINGS and `block` as one HEADERS frame (END_STREAM,
/// END_HEADERS) on stream 1; reads frames until the proxy answers stream 1 (SETTINGS are
/// acknowledged meanwhile). Panics if nothing comes within 10 s.
pub async fn raw_request(addr: SocketAddr, block: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let out = [
        PREFACE,
        &frame(SETTINGS, 0, 0, &[]),
        &frame(HEADERS, 0x5, 1, block),
    ]
    .concat();
    s.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return Answer::Closed;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return Answer::Closed;
            }
            let code = |at: usize| {
                payload
                    .get(at..at + 4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            match (kind, stream) {
                (SETTINGS, _) if flags & 1 == 0 => {
                    let _ = s.write_all(&frame(SETTINGS, 1, 0, &[])).await;
                }
                (RST_STREAM, 1) => return Answer::Reset(code(0)),
                (GOAWAY, _) => return Answer::GoAway(code(4)),
                (HEADERS, 1) => return Answer::Headers(payload.first().copied().unwrap_or(0)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer to the raw request within 10 s")
}
