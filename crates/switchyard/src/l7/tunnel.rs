//! The byte tunnel behind an upgraded HTTP/1.1 connection (WebSocket): both directions copied
//! through bounded buffers until each side has ended, with half-close passed on (a side that
//! reaches end of stream has the other side's write half shut down, and the other direction
//! keeps flowing), and an idle timeout (no byte either way for that long closes both).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes buffered per direction.
pub const BUFFER: usize = 16 * 1024;

/// Bytes moved by a tunnel: client to backend, backend to client.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// From the client to the backend.
    pub up: u64,
    /// From the backend to the client.
    pub down: u64,
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides finished.
    Done,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A read or write failed.
    Failed,
}

/// Copies between `client` and `backend` until both directions end, one fails, or nothing
/// moves for `idle`.
pub async fn splice<C, B>(client: C, backend: B, idle: Duration) -> (Ended, Moved)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut br, mut bw) = tokio::io::split(backend);
    let mut up = vec![0u8; BUFFER];
    let mut down = vec![0u8; BUFFER];
    let (mut up_open, mut down_open) = (true, true);
    let mut moved = Moved::default();
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    while up_open || down_open {
        tokio::select! {
            r = cr.read(&mut up), if up_open => match r {
                Ok(0) => {
                    up_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => {
                    if bw.write_all(&up[..n]).await.is_err() {
                        return (Ended::Failed, moved);
                    }
                    moved.up += n as u64;
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ended::Failed, moved),
            },
            r = br.read(&mut down), if down_open => match r {
                Ok(0) => {
                    down_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    if cw.write_all(&down[..n]).await.is_err() {
                        return (Ended::Failed, moved);
                    }
                    moved.down += n as u64;
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ended::Failed, moved),
            },
            _ = &mut timer => return (Ended::Idle, moved),
        }
    }
    (Ended::Done, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (backend, mut backend_far) = tokio::io::duplex(64);
        let task = tokio::spawn(splice(client, backend, Duration::from_secs(5)));
        client_far.write_all(b"hello").await.unwrap();
        client_far.shutdown().await.unwrap(); // the client is done sending
        let mut got = Vec::new();
        backend_far.read_to_end(&mut got).await.unwrap(); // EOF passed on
        assert_eq!(got, b"hello");
        backend_far.write_all(b"still talking").await.unwrap();
        drop(backend_far);
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"still talking");
        let (ended, moved) = task.await.unwrap();
        assert_eq!(ended, Ended::Done);
        assert_eq!(moved, Moved { up: 5, down: 13 });
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed() {
        let (client, _c) = tokio::io::duplex(64);
        let (backend, _b) = tokio::io::duplex(64);
        let (ended, moved) = splice(client, backend, Duration::from_millis(50)).await;
        assert_eq!((ended, moved), (Ended::Idle, Moved::default()));
    }
}
