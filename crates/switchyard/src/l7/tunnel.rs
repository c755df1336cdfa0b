//! The byte tunnel behind an upgraded HTTP/1.1 connection (WebSocket): both directions copied
//! through bounded buffers until each side has ended, with half-close passed on (a side that
//! reaches end of stream has the other side's write half shut down, and the other direction
//! keeps flowing), and an idle timeout (no byte either way for that long closes both).
//!
//! A WebSocket tunnel also follows the frames of both directions as they pass (see
//! [`crate::l7::ws_frames`]; nothing is buffered beyond the start of a header cut short by a
//! read). A client frame that breaks RFC 6455 or the frame limit ends the tunnel before its
//! header reaches the backend: the backend's connection is closed, and the client gets a close
//! frame (1009 for a frame too large, 1002 otherwise) if the backend's side is between frames,
//! then its connection is closed after a short wait for it to close first.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::l7::ws_frames::{close_frame, FrameTracker, Violation, MAX_CONTROL_PAYLOAD};

/// Bytes buffered per direction.
pub const BUFFER: usize = 16 * 1024;

/// After a rejected frame, how long the client may take to close its side (its bytes are read
/// and dropped meanwhile, so that closing does not reset the connection before it has read
/// the close frame).
pub const LINGER: Duration = Duration::from_secs(2);

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
    /// The client sent a WebSocket frame that breaks the protocol or the frame limit.
    Rejected(Violation),
}

/// What a tunnel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// Opaque bytes.
    Bytes,
    /// WebSocket frames, the client's payloads at most `max_frame` bytes (0: no limit).
    WebSocket {
        /// The largest client frame payload.
        max_frame: u64,
    },
}

/// Copies between `client` and `backend` until both directions end, one fails, nothing moves
/// for `idle`, or (WebSocket) the client breaks the protocol, which is told to `on_reject`
/// as soon as the backend's side is closed. `early` is what the backend sent after its
/// response head, written to the client first.
pub async fn splice<C, B>(
    client: C,
    backend: B,
    idle: Duration,
    carried: Carried,
    early: &[u8],
    on_reject: impl FnOnce(Violation),
) -> (Ended, Moved)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut br, mut bw) = tokio::io::split(backend);
    let (mut up_frames, mut down_frames) = match carried {
        Carried::Bytes => (None, None),
        Carried::WebSocket { max_frame } => (
            Some(FrameTracker::client(max_frame)),
            Some(FrameTracker::server()),
        ),
    };
    let mut up = vec![0u8; BUFFER];
    let mut down = vec![0u8; BUFFER];
    // The start of a client frame header cut short by a read, kept at the front of `up` and
    // not yet forwarded.
    let mut up_held = 0;
    // The start of a backend frame header cut short by a read, kept at the front of `down`
    // (already forwarded) to be parsed whole.
    let mut down_kept = 0;
    let mut moved = Moved::default();
    if !early.is_empty() {
        if cw.write_all(early).await.is_err() {
            return (Ended::Failed, moved);
        }
        moved.down += early.len() as u64;
        if let Some(t) = &mut down_frames {
            down_kept = keep_tail(t, early, &mut down);
        }
    }
    let (mut up_open, mut down_open) = (true, true);
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    while up_open || down_open {
        tokio::select! {
            r = cr.read(&mut up[up_held..]), if up_open => match r {
                Ok(0) => {
                    // A header cut short by the client's end is dropped.
                    up_open = false;
                    let _ = bw.shutdown().await;
                }
                Ok(n) => {
                    let filled = up_held + n;
                    let (pass, rejected) = match &mut up_frames {
                        None => (filled, None),
                        Some(t) => match t.scan(&up[..filled]) {
                            Ok(pass) => (pass, None),
                            Err(r) => (r.at, Some(r.violation)),
                        },
                    };
                    if pass > 0 && bw.write_all(&up[..pass]).await.is_err() {
                        return (Ended::Failed, moved);
                    }
                    moved.up += pass as u64;
                    if let Some(violation) = rejected {
                        drop((br, bw));
                        on_reject(violation);
                        let between_frames = down_open
                            && down_kept == 0
                            && down_frames.as_ref().is_some_and(FrameTracker::at_boundary);
                        refuse(cr, cw, violation, between_frames, idle.min(LINGER), &mut up).await;
                        return (Ended::Rejected(violation), moved);
                    }
                    up.copy_within(pass..filled, 0);
                    up_held = filled - pass;
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ended::Failed, moved),
            },
            r = br.read(&mut down[down_kept..]), if down_open => match r {
                Ok(0) => {
                    down_open = false;
                    let _ = cw.shutdown().await;
                }
                Ok(n) => {
                    let filled = down_kept + n;
                    if cw.write_all(&down[down_kept..filled]).await.is_err() {
                        return (Ended::Failed, moved);
                    }
                    moved.down += n as u64;
                    if let Some(t) = &mut down_frames {
                        let pass = t.scan(&down[..filled]).unwrap_or(filled);
                        down.copy_within(pass..filled, 0);
                        down_kept = filled - pass;
                    }
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                Err(_) => return (Ended::Failed, moved),
            },
            _ = &mut timer => return (Ended::Idle, moved),
        }
    }
    (Ended::Done, moved)
}

/// Scans `bytes` (already forwarded) with `t` and copies the start of a header they end with
/// to the front of `buf`; returns its length.
fn keep_tail(t: &mut FrameTracker, bytes: &[u8], buf: &mut [u8]) -> usize {
    let pass = t.scan(bytes).unwrap_or(bytes.len());
    let tail = &bytes[pass..];
    buf[..tail.len()].copy_from_slice(tail);
    tail.len()
}

/// Ends a tunnel whose client broke the protocol: a close frame if `between_frames` (the
/// client is not in the middle of a frame from the backend), the client's write side shut,
/// then its bytes read and dropped until it closes or `linger` passes.
async fn refuse<R, W>(
    mut cr: R,
    mut cw: W,
    violation: Violation,
    between_frames: bool,
    linger: Duration,
    scratch: &mut [u8],
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if between_frames {
        let mut frame = [0u8; 2 + MAX_CONTROL_PAYLOAD as usize];
        let n = close_frame(violation.close_code(), violation.reason(), &mut frame);
        if cw.write_all(&frame[..n]).await.is_err() {
            return;
        }
    }
    let _ = cw.shutdown().await;
    let _ = tokio::time::timeout(linger, async {
        while let Ok(1..) = cr.read(scratch).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (backend, mut backend_far) = tokio::io::duplex(64);
        let task = tokio::spawn(async move {
            let idle = Duration::from_secs(5);
            splice(client, backend, idle, Carried::Bytes, &[], |_| {}).await
        });
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
        let (ended, moved) = splice(
            client,
            backend,
            Duration::from_millis(50),
            Carried::Bytes,
            &[],
            |_| {},
        )
        .await;
        assert_eq!((ended, moved), (Ended::Idle, Moved::default()));
    }
}
