//! WebSocket frame boundaries (RFC 6455 section 5.2), found in bytes passing through a tunnel
//! without buffering them: a [`FrameTracker`] reads each frame header as it goes by and then
//! skips the frame's payload by count, so a 1 MiB frame costs one subtraction per read.
//!
//! Sans-io: [`FrameTracker::scan`] is given the bytes at hand and says how many of them are whole
//! headers and payload. A header cut short by the end of the bytes is left for the caller to
//! present again, completed, at the start of the next call (a header is at most
//! [`MAX_HEADER`] bytes); a header that breaks the rules is reported with its position, so the
//! bytes before it can still be forwarded and the header itself never is.

use std::fmt;

/// The longest frame header: 2 bytes, a 64-bit extended length and a 4-byte mask key.
pub const MAX_HEADER: usize = 14;
/// The largest payload of a control frame (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Close status 1002: the peer broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close status 1009: a message too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// A frame header that breaks RFC 6455 or the configured limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A client frame without the mask bit (section 5.1: a client masks every frame).
    Unmasked,
    /// An opcode the protocol reserves (3-7, 0xB-0xF).
    ReservedOpcode(u8),
    /// A control frame (close, ping, pong) with a payload over 125 bytes.
    ControlTooLong(u64),
    /// A control frame without FIN (control frames cannot be fragmented).
    FragmentedControl,
    /// A 64-bit payload length with its most significant bit set.
    LengthTopBit,
    /// A continuation frame with no fragmented message to continue.
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    UnfinishedMessage,
    /// A payload longer than `websocket_max_frame`.
    FrameTooLarge {
        /// The frame's payload length.
        len: u64,
        /// The limit.
        max: u64,
    },
}

impl Violation {
    /// The close status a server answers it with: 1009 for a frame over the limit, 1002
    /// otherwise.
    pub fn close_code(self) -> u16 {
        match self {
            Violation::FrameTooLarge { .. } => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }

    /// The close reason sent with it (short, well under the 123 bytes a close frame allows).
    pub fn reason(self) -> &'static str {
        match self {
            Violation::FrameTooLarge { .. } => "frame too large",
            Violation::Unmasked => "client frame not masked",
            Violation::ReservedOpcode(_) => "reserved opcode",
            Violation::ControlTooLong(_) => "control frame too long",
            Violation::FragmentedControl => "fragmented control frame",
            Violation::LengthTopBit => "invalid payload length",
            Violation::UnexpectedContinuation => "unexpected continuation frame",
            Violation::UnfinishedMessage => "fragmented message not finished",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::FrameTooLarge { len, max } => write!(
                f,
                "WebSocket frame of {len} bytes is over the limit of {max} (websocket_max_frame)"
            ),
            Violation::ReservedOpcode(op) => {
                write!(f, "WebSocket frame with reserved opcode {op:#x}")
            }
            Violation::ControlTooLong(len) => {
                write!(f, "WebSocket control frame of {len} bytes (at most 125)")
            }
            other => write!(f, "WebSocket protocol error: {}", other.reason()),
        }
    }
}

/// Where a scan stopped on a bad header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The offset of the bad header in the scanned bytes: the bytes before it are fine.
    pub at: usize,
    /// What is wrong with it.
    pub violation: Violation,
}

/// Whose frames a tracker reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A client's: every rule is checked.
    Client,
    /// A server's: only the boundaries are followed; a header that cannot be read loses them.
    Server,
}

/// A header read as far as the bytes at hand allow.
enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A whole header: its size and the payload length that follows it.
    Header {
        size: usize,
        len: u64,
        fin: bool,
        opcode: u8,
    },
}

/// Follows the frame boundaries of one direction of a WebSocket connection.
#[derive(Debug, Clone)]
pub struct FrameTracker {
    role: Role,
    /// The largest payload accepted; 0 = no limit.
    max: u64,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// A fragmented text or binary message is open (its last frame had no FIN).
    in_message: bool,
    /// A server header could not be read: boundaries are unknown from here on.
    lost: bool,
}

impl FrameTracker {
    /// Checks a client's frames, with payloads of at most `max_frame` bytes (0: no limit).
    pub fn client(max_frame: u64) -> Self {
        FrameTracker {
            role: Role::Client,
            max: max_frame,
            remaining: 0,
            in_message: false,
            lost: false,
        }
    }

    /// Follows a server's frames, checking nothing.
    pub fn server() -> Self {
        FrameTracker {
            role: Role::Server,
            ..Self::client(0)
        }
    }

    /// Whether the bytes scanned so far end exactly at a frame boundary (no payload pending;
    /// the caller knows whether it holds the start of a header).
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.remaining == 0
    }

    /// Scans `buf`, which continues the bytes scanned before (starting with any header start
    /// the last call left over). `Ok(n)`: `buf[..n]` is whole headers and payload, and
    /// `buf[n..]`, shorter than [`MAX_HEADER`], is the start of a header to present again with
    /// the bytes that follow it. A server tracker always returns `Ok`.
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, Rejected> {
        if self.lost {
            return Ok(buf.len());
        }
        let mut at = 0;
        loop {
            let left = (buf.len() - at) as u64;
            if self.remaining >= left {
                self.remaining -= left;
                return Ok(buf.len());
            }
            // `remaining < left <= buf.len()`, so it fits a usize.
            at += self.remaining as usize;
            self.remaining = 0;
            match self.parse(&buf[at..]) {
                Ok(Parsed::Incomplete) => return Ok(at),
                Ok(Parsed::Header {
                    size,
                    len,
                    fin,
                    opcode,
                }) => {
                    if opcode < 8 {
                        self.in_message = !fin;
                    }
                    self.remaining = len;
                    at += size;
                }
                Err(_) if self.role == Role::Server => {
                    self.lost = true;
                    return Ok(buf.len());
                }
                Err(violation) => return Err(Rejected { at, violation }),
            }
        }
    }

    /// Reads the header at the start of `h`. The checks run in the order of the bytes they
    /// need, so the verdict does not depend on where the header was split.
    fn parse(&self, h: &[u8]) -> Result<Parsed, Violation> {
        let client = self.role == Role::Client;
        let Some(&b0) = h.first() else {
            return Ok(Parsed::Incomplete);
        };
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let control = opcode >= 8;
        if client {
            match opcode {
                0 if !self.in_message => return Err(Violation::UnexpectedContinuation),
                1 | 2 if self.in_message => return Err(Violation::UnfinishedMessage),
                0..=2 | 8..=10 => {}
                op => return Err(Violation::ReservedOpcode(op)),
            }
            if control && !fin {
                return Err(Violation::FragmentedControl);
            }
        }
        let Some(&b1) = h.get(1) else {
            return Ok(Parsed::Incomplete);
        };
        let masked = b1 & 0x80 != 0;
        if client && !masked {
            return Err(Violation::Unmasked);
        }
        let (ext, short) = match b1 & 0x7f {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        if client && control && short.is_none_or(|n| n > MAX_CONTROL_PAYLOAD) {
            return Err(Violation::ControlTooLong(short.unwrap_or(126)));
        }
        if ext == 8 && h.get(2).is_some_and(|b| b & 0x80 != 0) {
            return Err(Violation::LengthTopBit);
        }
        let len = match short {
            Some(n) => n,
            None => {
                let Some(bytes) = h.get(2..2 + ext) else {
                    return Ok(Parsed::Incomplete);
                };
                bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b))
            }
        };
        if client && self.max != 0 && len > self.max {
            return Err(Violation::FrameTooLarge { len, max: self.max });
        }
        let size = 2 + ext + if masked { 4 } else { 0 };
        if h.len() < size {
            return Ok(Parsed::Incomplete);
        }
        Ok(Parsed::Header {
            size,
            len,
            fin,
            opcode,
        })
    }
}

/// A server's close frame (unmasked) with `code` and `reason`, written into `out`; returns its
/// length. `reason` is cut to the 123 bytes a close frame allows.
pub fn close_frame(
    code: u16,
    reason: &str,
    out: &mut [u8; 2 + MAX_CONTROL_PAYLOAD as usize],
) -> usize {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let payload = 2 + reason.len();
    out[0] = 0x88; // FIN, close
    out[1] = payload as u8;
    out[2..4].copy_from_slice(&code.to_be_bytes());
    out[4..4 + reason.len()].copy_from_slice(reason);
    2 + payload
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked (with a fixed key) unless `unmasked`, the length in its shortest
    /// form unless `ext` forces the 16-bit (2) or 64-bit (8) form.
    fn frame(b0: u8, len: usize, ext: usize, unmasked: bool) -> Vec<u8> {
        let mask = if unmasked { 0 } else { 0x80 };
        let mut out = vec![b0];
        match (ext, len) {
            (0, 0..=125) => out.push(mask | len as u8),
            (0 | 2, 0..=65535) => {
                out.push(mask | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if !unmasked {
            out.extend_from_slice(&[1, 2, 3, 4]);
        }
        out.extend((0..len).map(|i| i as u8));
        out
    }

    fn masked(b0: u8, len: usize) -> Vec<u8> {
        frame(b0, len, 0, false)
    }

    /// Feeds `bytes` in reads of `chunk` bytes the way a tunnel does (a header cut short is
    /// kept at the front of the buffer); returns the bytes passed on, or the rejection with
    /// its offset in `bytes`.
    fn feed(t: &mut FrameTracker, bytes: &[u8], chunk: usize) -> Result<usize, Rejected> {
        let (mut held, mut passed) = (Vec::new(), 0);
        for piece in bytes.chunks(chunk) {
            held.extend_from_slice(piece);
            match t.scan(&held) {
                Ok(n) => {
                    assert!(held.len() - n < MAX_HEADER);
                    passed += n;
                    held.drain(..n);
                }
                Err(r) => {
                    return Err(Rejected {
                        at: passed + r.at,
                        ..r
                    })
                }
            }
        }
        Ok(passed)
    }

    #[test]
    fn follows_every_length_form_across_every_split() {
        let mut bytes = masked(0x82, 0);
        bytes.extend(masked(0x02, 125)); // a binary message in three fragments
        bytes.extend(masked(0x89, 4)); // a ping between fragments
        bytes.extend(frame(0x00, 300, 0, false));
        bytes.extend(frame(0x80, 70_000, 0, false));
        bytes.extend(frame(0x81, 5, 8, false)); // a needlessly long length form is allowed
        bytes.extend(masked(0x88, 2));
        for chunk in [1, 2, 3, 7, 13, 14, 100, 4096, bytes.len()] {
            let mut t = FrameTracker::client(1 << 20);
            assert_eq!(
                feed(&mut t, &bytes, chunk),
                Ok(bytes.len()),
                "chunk {chunk}"
            );
            assert!(t.at_boundary());
        }
    }

    #[test]
    fn a_payload_spans_reads_without_being_parsed() {
        let bytes = masked(0x82, 100);
        let mut t = FrameTracker::client(0);
        assert_eq!(t.scan(&bytes[..50]), Ok(50));
        assert!(!t.at_boundary());
        // What follows the frame is a header cut short: held back.
        let mut rest = bytes[50..].to_vec();
        rest.extend_from_slice(&[0x82]);
        assert_eq!(t.scan(&rest), Ok(rest.len() - 1));
        assert!(t.at_boundary());
    }

    #[test]
    fn each_violation_is_found_at_its_header() {
        let too_long_control = frame(0x89, 126, 2, false);
        let cases: Vec<(Vec<u8>, Violation)> = vec![
            (frame(0x82, 3, 0, true), Violation::Unmasked),
            (masked(0x83, 3), Violation::ReservedOpcode(3)),
            (masked(0x8b, 0), Violation::ReservedOpcode(0xb)),
            (too_long_control, Violation::ControlTooLong(126)),
            (masked(0x09, 1), Violation::FragmentedControl),
            (masked(0x80, 1), Violation::UnexpectedContinuation),
            (
                [masked(0x01, 1), masked(0x81, 1)].concat(),
                Violation::UnfinishedMessage,
            ),
            (
                [&[0x82, 0xff, 0x80][..], &[0; 11]].concat(),
                Violation::LengthTopBit,
            ),
            (
                frame(0x82, 1025, 0, false),
                Violation::FrameTooLarge {
                    len: 1025,
                    max: 1024,
                },
            ),
        ];
        let good = masked(0x82, 10);
        for (bad, violation) in cases {
            // The second frame of a message-opening pair is the bad one.
            let lead = if violation == Violation::UnfinishedMessage {
                7
            } else {
                0
            };
            let bytes = [&good[..], &bad[..]].concat();
            for chunk in [1, 5, bytes.len()] {
                let mut t = FrameTracker::client(1024);
                let r = feed(&mut t, &bytes, chunk).unwrap_err();
                assert_eq!(r.violation, violation, "chunk {chunk}");
                assert_eq!(r.at, good.len() + lead, "{violation:?} chunk {chunk}");
            }
            let code = violation.close_code();
            let too_big = matches!(violation, Violation::FrameTooLarge { .. });
            assert_eq!(code, if too_big { 1009 } else { 1002 });
        }
    }

    #[test]
    fn a_bad_header_is_found_before_it_is_complete() {
        // An unmasked frame is known from its second byte, an oversized one from its length.
        let mut t = FrameTracker::client(1024);
        assert_eq!(
            t.scan(&[0x82, 0x05]).unwrap_err().violation,
            Violation::Unmasked
        );
        let mut t = FrameTracker::client(1024);
        let r = t.scan(&[0x82, 0xfe, 0x10, 0x00]).unwrap_err();
        assert_eq!(
            r.violation,
            Violation::FrameTooLarge {
                len: 4096,
                max: 1024
            }
        );
    }

    #[test]
    fn no_limit_takes_any_length() {
        let mut t = FrameTracker::client(0);
        let header = [
            0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ];
        assert_eq!(t.scan(&header), Ok(header.len()));
        assert!(!t.at_boundary());
    }

    #[test]
    fn a_server_tracker_checks_nothing_but_loses_track_of_nonsense() {
        let mut t = FrameTracker::server();
        let bytes = [frame(0x81, 3, 0, true), frame(0x8a, 0, 0, true)].concat();
        assert_eq!(feed(&mut t, &bytes, 1), Ok(bytes.len()));
        assert!(t.at_boundary());
        assert_eq!(t.scan(&[0x82, 0xff, 0x80, 0, 0]), Ok(5));
        assert!(!t.at_boundary());
        assert_eq!(t.scan(&[0x82, 0x00]), Ok(2));
        assert!(!t.at_boundary());
    }

    #[test]
    fn close_frames_are_unmasked_with_the_code_first() {
        let mut out = [0; 2 + MAX_CONTROL_PAYLOAD as usize];
        let n = close_frame(1009, "frame too large", &mut out);
        assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xf1]);
        assert_eq!(&out[4..n], b"frame too large");
        let n = close_frame(1002, &"x".repeat(200), &mut out);
        assert_eq!((n, out[1]), (127, 125));
    }
}
