//! A raw TCP client for requests no well-behaved HTTP client would send.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a read-until-close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (EOF) or reset it.
    Closed,
    /// The connection was still open when the wait ended.
    StillOpen,
}

/// A raw connection.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
        }
    }

    /// Writes all of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until the server closes the connection or `wait` has passed; returns what was read
    /// and how it ended.
    pub async fn read_to_close(&mut self, wait: Duration) -> (Vec<u8>, End) {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Err(_) => return (out, End::StillOpen),
                Ok(Ok(0)) | Ok(Err(_)) => return (out, End::Closed),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads one response with a `Content-Length` (head and body); returns it as text.
    pub async fn read_response(&mut self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(end) = response_end(&out) {
                assert_eq!(end, out.len(), "more than one response");
                return String::from_utf8_lossy(&out).into_owned();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
                Err(_) => panic!(
                    "no whole response within {wait:?}: {:?}",
                    String::from_utf8_lossy(&out)
                ),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    panic!("closed mid-response: {:?}", String::from_utf8_lossy(&out))
                }
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// Where a response with a Content-Length (or none: no body) ends in `bytes`, if it is whole.
fn response_end(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    (bytes.len() >= head_end + len).then_some(head_end + len)
}

/// The status code of a raw response.
pub fn status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 response: {text:?}"))
}
