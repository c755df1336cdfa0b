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

use std::cell::Cell;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

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
/// response head, written to the client first. The two directions run concurrently, so a
/// peer that stops reading stalls only the direction towards it.
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
    let (mut up_frames, down_frames) = match carried {
        Carried::Bytes => (None, None),
        Carried::WebSocket { max_frame } => (
            Some(FrameTracker::client(max_frame)),
            Some(FrameTracker::server()),
        ),
    };
    let mut up = vec![0u8; BUFFER];
    let mut down = Down {
        buf: vec![0u8; BUFFER],
        frames: down_frames,
        kept: 0,
        open: true,
        writing: false,
    };
    let mut moved = Moved::default();
    if !early.is_empty() {
        if cw.write_all(early).await.is_err() {
            return (Ended::Failed, moved);
        }
        moved.down += early.len() as u64;
        if let Some(t) = &mut down.frames {
            down.kept = keep_tail(t, early, &mut down.buf);
        }
    }
    let last = Cell::new(Instant::now());
    let ended = {
        let up_pump = pump_up(
            &mut cr,
            &mut bw,
            &mut up,
            up_frames.as_mut(),
            &last,
            &mut moved.up,
        );
        let down_pump = pump_down(&mut br, &mut cw, &mut down, &last, &mut moved.down);
        let idle_watch = idle_watch(&last, idle);
        tokio::pin!(up_pump, down_pump, idle_watch);
        let (mut up_open, mut down_open) = (true, true);
        loop {
            tokio::select! {
                p = &mut up_pump, if up_open => match p {
                    Pumped::Ended => up_open = false,
                    Pumped::Rejected(v) => break Ended::Rejected(v),
                    Pumped::Failed => break Ended::Failed,
                },
                p = &mut down_pump, if down_open => match p {
                    Pumped::Ended => down_open = false,
                    Pumped::Rejected(v) => break Ended::Rejected(v),
                    Pumped::Failed => break Ended::Failed,
                },
                () = &mut idle_watch => break Ended::Idle,
            }
            if !up_open && !down_open {
                break Ended::Done;
            }
        }
    };
    if let Ended::Rejected(violation) = ended {
        drop((br, bw));
        on_reject(violation);
        // Not while a backend frame (or a write of one) is half done.
        let between_frames = down.open
            && !down.writing
            && down.kept == 0
            && down.frames.as_ref().is_some_and(FrameTracker::at_boundary);
        refuse(cr, cw, violation, between_frames, idle.min(LINGER), &mut up).await;
    }
    (ended, moved)
}

/// How one direction ended.
enum Pumped {
    /// Its reader reached end of stream (passed on as a shutdown of its writer).
    Ended,
    /// The client sent a frame that breaks the rules (the bytes before it were passed on).
    Rejected(Violation),
    /// A read or write failed.
    Failed,
}

/// The backend-to-client direction's state, looked at after a rejection.
struct Down {
    buf: Vec<u8>,
    /// Follows the backend's frames (WebSocket).
    frames: Option<FrameTracker>,
    /// The start of a backend frame header cut short by a read, kept at the front of `buf`
    /// (already forwarded) to be parsed whole.
    kept: usize,
    /// The backend has not ended its stream.
    open: bool,
    /// A write to the client is under way.
    writing: bool,
}

/// Client to backend: reads, checks frames (WebSocket), writes what passes. The start of a
/// client frame header cut short by a read is kept at the front of `buf`, not yet forwarded.
async fn pump_up<R, W>(
    from: &mut R,
    to: &mut W,
    buf: &mut [u8],
    mut frames: Option<&mut FrameTracker>,
    last: &Cell<Instant>,
    moved: &mut u64,
) -> Pumped
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut held = 0;
    loop {
        let n = match from.read(&mut buf[held..]).await {
            // A header cut short by the client's end is dropped.
            Ok(0) => {
                let _ = to.shutdown().await;
                return Pumped::Ended;
            }
            Ok(n) => n,
            Err(_) => return Pumped::Failed,
        };
        last.set(Instant::now());
        let filled = held + n;
        let (pass, rejected) = match frames.as_deref_mut() {
            None => (filled, None),
            Some(t) => match t.scan(&buf[..filled]) {
                Ok(pass) => (pass, None),
                Err(r) => (r.at, Some(r.violation)),
            },
        };
        if pass > 0 && to.write_all(&buf[..pass]).await.is_err() {
            return Pumped::Failed;
        }
        *moved += pass as u64;
        last.set(Instant::now());
        if let Some(violation) = rejected {
            return Pumped::Rejected(violation);
        }
        buf.copy_within(pass..filled, 0);
        held = filled - pass;
    }
}

/// Backend to client: reads, writes, follows frame boundaries (WebSocket).
async fn pump_down<R, W>(
    from: &mut R,
    to: &mut W,
    down: &mut Down,
    last: &Cell<Instant>,
    moved: &mut u64,
) -> Pumped
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let kept = down.kept;
        let n = match from.read(&mut down.buf[kept..]).await {
            Ok(0) => {
                down.open = false;
                let _ = to.shutdown().await;
                return Pumped::Ended;
            }
            Ok(n) => n,
            Err(_) => return Pumped::Failed,
        };
        last.set(Instant::now());
        let filled = kept + n;
        down.writing = true;
        if to.write_all(&down.buf[kept..filled]).await.is_err() {
            return Pumped::Failed;
        }
        down.writing = false;
        *moved += n as u64;
        last.set(Instant::now());
        if let Some(t) = &mut down.frames {
            let pass = t.scan(&down.buf[..filled]).unwrap_or(filled);
            down.buf.copy_within(pass..filled, 0);
            down.kept = filled - pass;
        }
    }
}

/// Resolves once `idle` has passed since `last` without `last` moving.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let deadline = last.get() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
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
        // The tunnel is not Send (it runs on its reactor thread's LocalSet).
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (client, mut client_far) = tokio::io::duplex(64);
                let (backend, mut backend_far) = tokio::io::duplex(64);
                let task = tokio::task::spawn_local(async move {
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
            })
            .await;
    }

    /// A masked client frame with a zero mask key (the payload reads as sent).
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn a_websocket_tunnel_refuses_a_frame_before_the_backend_sees_it() {
        // The tunnel is not Send (it runs on its reactor thread's LocalSet).
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (client, mut client_far) = tokio::io::duplex(1024);
                let (backend, mut backend_far) = tokio::io::duplex(1024);
                let carried = Carried::WebSocket { max_frame: 8 };
                let refused = std::sync::Arc::new(std::sync::Mutex::new(None));
                let seen = std::sync::Arc::clone(&refused);
                let task = tokio::task::spawn_local(async move {
                    let idle = Duration::from_secs(5);
                    let on_reject = move |v| *seen.lock().unwrap() = Some(v);
                    splice(client, backend, idle, carried, &[], on_reject).await
                });
                let good = client_frame(0x81, b"12345678");
                let bad = client_frame(0x81, b"123456789");
                client_far
                    .write_all(&[&good[..], &bad[..]].concat())
                    .await
                    .unwrap();
                let mut got = Vec::new();
                backend_far.read_to_end(&mut got).await.unwrap();
                assert_eq!(got, good);
                let mut back = Vec::new();
                client_far.shutdown().await.unwrap();
                client_far.read_to_end(&mut back).await.unwrap();
                assert_eq!(&back[..4], &[0x88, 17, 0x03, 0xf1]);
                let too_large = Violation::FrameTooLarge { len: 9, max: 8 };
                let (ended, moved) = task.await.unwrap();
                assert_eq!(
                    (ended, moved.up),
                    (Ended::Rejected(too_large), good.len() as u64)
                );
                assert_eq!(*refused.lock().unwrap(), Some(too_large));
            })
            .await;
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
