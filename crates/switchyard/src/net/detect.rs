//! Protocol detection on a new client connection: which protocol its first bytes speak.
//!
//! The bytes are looked at with `MSG_PEEK` and left in the socket, so whatever serves the
//! connection next reads them itself: nothing is buffered here and nothing can be lost. The
//! decision is a small, sans-io function of the bytes seen so far ([`classify`]):
//!
//! - `0x16 0x03` (a TLS handshake record): TLS;
//! - the 24-byte HTTP/2 connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`: HTTP/2 with
//!   prior knowledge (h2c);
//! - an HTTP/1 method followed by a space: HTTP/1.x;
//! - anything else: unknown.
//!
//! Trade-off, as in linkerd2-proxy's detection: a client that connects and says nothing (a
//! server-speaks-first protocol) cannot be told apart; it is given up on at the detection
//! deadline (`client_header_timeout`). A prefix that could still become the preface or a
//! method (`PRI * HT`, `GE`) waits for more bytes until that deadline; peeking again after a
//! short pause, since a peek does not consume what wakes the socket.

use std::time::Duration;

use tokio::net::TcpStream;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Methods recognised as the start of an HTTP/1 request.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Bytes peeked at most: enough for the preface and any method.
pub const PEEK_BYTES: usize = H2_PREFACE.len();

/// How long to wait before peeking again at a connection whose first bytes are incomplete.
const REPEEK_PAUSE: Duration = Duration::from_millis(5);

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A TLS handshake.
    Tls,
    /// The HTTP/2 preface: h2c with prior knowledge.
    H2,
    /// An HTTP/1 request line.
    Http1,
    /// Not a protocol served here.
    Unknown,
}

/// The verdict on the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// Decided.
    Is(Protocol),
    /// The bytes so far could still begin more than one thing, or nothing yet: peek again.
    NeedMore,
}

/// Classifies the first bytes of a connection.
pub fn classify(first: &[u8]) -> Detect {
    if first.is_empty() {
        return Detect::NeedMore;
    }
    if first[0] == 0x16 {
        return match first.get(1) {
            None => Detect::NeedMore,
            Some(0x03) => Detect::Is(Protocol::Tls),
            Some(_) => Detect::Is(Protocol::Unknown),
        };
    }
    let n = first.len().min(H2_PREFACE.len());
    if first[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Detect::Is(Protocol::H2)
        } else {
            Detect::NeedMore
        };
    }
    let mut could_be = false;
    for m in METHODS {
        let k = first.len().min(m.len());
        if first[..k] == m[..k] {
            if k == m.len() {
                return Detect::Is(Protocol::Http1);
            }
            could_be = true;
        }
    }
    if could_be {
        Detect::NeedMore
    } else {
        Detect::Is(Protocol::Unknown)
    }
}

/// Why detection ended without a protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undetected {
    /// The client closed before saying enough.
    Closed,
    /// Not enough bytes arrived before the deadline.
    Timeout,
}

/// Peeks at `stream` until its first bytes decide the protocol, the client closes, or
/// `timeout` passes. The bytes stay in the socket.
pub async fn detect(stream: &TcpStream, timeout: Duration) -> Result<Protocol, Undetected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; PEEK_BYTES];
    let mut seen = 0;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        let n = match peeked {
            Err(_) => return Err(Undetected::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => return Err(Undetected::Closed),
            Ok(Ok(n)) => n,
        };
        match classify(&buf[..n]) {
            Detect::Is(p) => return Ok(p),
            Detect::NeedMore if n == PEEK_BYTES => return Ok(Protocol::Unknown),
            Detect::NeedMore => {
                if n == seen {
                    // Nothing new yet: the socket stays readable while bytes wait in it.
                    if tokio::time::Instant::now() + REPEEK_PAUSE >= deadline {
                        return Err(Undetected::Timeout);
                    }
                    tokio::time::sleep(REPEEK_PAUSE).await;
                }
                seen = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(b""), Detect::NeedMore);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Detect::Is(Protocol::Http1));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Detect::Is(Protocol::Http1));
        assert_eq!(classify(b"GE"), Detect::NeedMore);
        assert_eq!(classify(b"P"), Detect::NeedMore); // POST, PUT, PATCH or the preface
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Detect::NeedMore);
        assert_eq!(classify(H2_PREFACE), Detect::Is(Protocol::H2));
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Detect::Is(Protocol::Tls));
        assert_eq!(classify(b"\x16"), Detect::NeedMore);
        assert_eq!(classify(b"\x16\x99"), Detect::Is(Protocol::Unknown));
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Detect::Is(Protocol::Unknown));
        assert_eq!(classify(b"get / HTTP/1.1"), Detect::Is(Protocol::Unknown));
        assert_eq!(classify(b"GETX"), Detect::Is(Protocol::Unknown));
        assert_eq!(classify(b"\0\0\0\0"), Detect::Is(Protocol::Unknown));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_extending_a_decision_keeps_it(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut decided = None;
            for k in 0..=bytes.len() {
                match classify(&bytes[..k]) {
                    Detect::Is(p) => {
                        if let Some(d) = decided {
                            proptest::prop_assert_eq!(d, p);
                        }
                        decided = Some(p);
                    }
                    Detect::NeedMore => proptest::prop_assert!(decided.is_none()),
                }
            }
        }
    }
}
