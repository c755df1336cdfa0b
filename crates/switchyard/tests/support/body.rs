//! Bodies for test clients and backends: fixed, fed from a channel, or generated chunk by chunk
//! from a deterministic pattern (never held whole), plus a running digest to check them.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;

/// The error type of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type every test client and backend sends.
pub type Body = BoxBody<Bytes, BoxError>;

/// A whole body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A body of unknown length (sent chunked) fed chunk by chunk through the returned sender;
/// dropping the sender ends it.
pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody { rx }.boxed())
}

struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A running FNV-1a digest and length of a byte stream, however it is split into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Bytes seen.
    pub len: u64,
    /// FNV-1a 64 of the bytes seen.
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.hash;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.hash = h;
        self.len += bytes.len() as u64;
    }
}

/// Reads `body` frame by frame to its end, keeping only a digest.
pub async fn digest_body<B>(body: B) -> Result<Digest, B::Error>
where
    B: HttpBody<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut digest = Digest::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            digest.update(&data);
        }
    }
    Ok(digest)
}

/// A body of `total` pattern bytes generated `chunk` bytes at a time, with an exact length.
/// The digest of what it generated so far is shared through [`Generated::digest`].
pub struct Generated {
    remaining: u64,
    chunk: usize,
    index: u64,
    digest: Arc<Mutex<Digest>>,
}

impl Generated {
    /// A generator of `total` bytes in chunks of `chunk` bytes (a multiple of 8).
    pub fn new(total: u64, chunk: usize) -> Self {
        assert!(chunk % 8 == 0 && chunk > 0);
        Generated {
            remaining: total,
            chunk,
            index: 0,
            digest: Arc::default(),
        }
    }

    /// The digest of the bytes generated so far (all of them once the body has ended).
    pub fn digest(&self) -> Arc<Mutex<Digest>> {
        Arc::clone(&self.digest)
    }

    /// As a boxed [`Body`].
    pub fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

/// Fills `buf` with the pattern of chunk number `index`: 64-bit words of a splitmix sequence.
fn pattern(index: u64, buf: &mut [u8]) {
    let mut x = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for word in buf.chunks_exact_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 31;
        word.copy_from_slice(&z.to_le_bytes());
    }
    let tail = buf.len() / 8 * 8;
    buf[tail..].fill(index as u8);
}

impl HttpBody for Generated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = (self.chunk as u64).min(self.remaining) as usize;
        let mut buf = vec![0u8; n];
        pattern(self.index, &mut buf);
        self.digest.lock().unwrap().update(&buf);
        self.index += 1;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
