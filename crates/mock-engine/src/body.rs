//! Request body reading with a size cap, and the channel-backed streaming
//! response body.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::mpsc;

/// Extra bytes of an oversized body that are read and discarded before
/// answering 413, so that the client can finish sending and read the answer.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;
/// Time allowed for that draining.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body is larger than the cap.
    TooLarge,
    /// The connection failed while reading.
    Io(String),
}

/// Reads the whole body, failing with [`ReadError::TooLarge`] beyond `cap` bytes.
pub(crate) async fn read_capped(
    mut body: Incoming,
    declared_len: Option<u64>,
    cap: usize,
) -> Result<Bytes, ReadError> {
    let cap64 = cap as u64;
    if let Some(len) = declared_len {
        if len > cap64 {
            if len - cap64 <= DRAIN_LIMIT {
                drain(&mut body).await;
            }
            return Err(ReadError::TooLarge);
        }
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Io(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > cap {
                drain(&mut body).await;
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and discards up to [`DRAIN_LIMIT`] bytes within [`DRAIN_TIMEOUT`].
async fn drain(body: &mut Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }
    })
    .await;
}

/// A streaming response body fed by a channel: every message is sent to the
/// client as soon as it is received; the body ends when all senders are dropped.
#[derive(Debug)]
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender feeding it (`capacity` messages of buffering).
    pub(crate) fn channel(capacity: usize) -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, Self { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}
