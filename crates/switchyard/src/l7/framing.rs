//! Spotting request heads that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper resolves such a request the RFC 9112 way (Transfer-Encoding wins, Content-Length is
//! dropped, the connection closes afterwards), which is safe for hyper itself but hides the
//! ambiguity from the proxy. A request a front end and a back end could frame differently is
//! the root of request smuggling, so switchyard refuses it outright with 400, as HAProxy does.
//! hyper does not say whether it dropped a Content-Length, so this scanner watches the raw bytes
//! of each request head as they are read from the client socket, and the proxy checks its
//! verdict before routing.
//!
//! The scanner is sans-io and byte-at-a-time: it keeps a few bytes of state across reads, so a
//! header split over two reads is still seen. It is armed at the start of a connection and again
//! when a request/response exchange has finished, and it disarms itself at the empty line that
//! ends a head, so body bytes are not scanned. A head that arrives pipelined while an earlier
//! exchange is still in progress is not scanned; hyper's own handling (Transfer-Encoding wins,
//! connection closed) still applies to it.

const CL: &[u8] = b"content-length:";
const TE: &[u8] = b"transfer-encoding:";

/// Saw a `Content-Length` header.
const SAW_CL: u8 = 1;
/// Saw a `Transfer-Encoding` header.
const SAW_TE: u8 = 2;

/// The scanner's state between reads.
#[derive(Debug, Clone)]
pub struct HeadScanner {
    armed: bool,
    line_start: bool,
    /// Bytes of the current line's name matched so far; `u8::MAX` skips to the end of line.
    pos: u8,
    cl_ok: bool,
    te_ok: bool,
    seen: u8,
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            armed: true,
            line_start: true,
            pos: 0,
            cl_ok: true,
            te_ok: true,
            seen: 0,
        }
    }
}

/// What a head scan found, reported once per head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The head ended and did not carry both framing headers.
    Clean,
    /// The head ended and carried both `Content-Length` and `Transfer-Encoding`.
    Ambiguous,
}

impl HeadScanner {
    /// Whether the scanner is looking at a head right now.
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Starts scanning again at the next byte, expected to begin a new request head.
    pub fn arm(&mut self) {
        *self = HeadScanner::default();
    }

    /// Feeds bytes read from the client. Returns a verdict when a head ended in `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        if !self.armed {
            return None;
        }
        for &b in bytes {
            if self.line_start {
                match b {
                    b'\r' => continue,
                    b'\n' => {
                        // An empty line: the head ends here. Leading empty lines before a
                        // request line are allowed by RFC 9112 and end nothing.
                        if self.pos == 0 && self.seen == 0 && !self.after_first_line() {
                            continue;
                        }
                        self.armed = false;
                        return Some(if self.seen == SAW_CL | SAW_TE {
                            Verdict::Ambiguous
                        } else {
                            Verdict::Clean
                        });
                    }
                    _ => {
                        self.line_start = false;
                        self.pos = 0;
                        self.cl_ok = true;
                        self.te_ok = true;
                    }
                }
            }
            if b == b'\n' {
                self.line_start = true;
                self.pos = 1; // marks "a line has ended": past the request line
                continue;
            }
            if self.pos == u8::MAX {
                continue;
            }
            let i = self.pos as usize;
            let lb = b.to_ascii_lowercase();
            self.cl_ok = self.cl_ok && CL.get(i) == Some(&lb);
            self.te_ok = self.te_ok && TE.get(i) == Some(&lb);
            if self.cl_ok && i + 1 == CL.len() {
                self.seen |= SAW_CL;
                self.pos = u8::MAX;
            } else if self.te_ok && i + 1 == TE.len() {
                self.seen |= SAW_TE;
                self.pos = u8::MAX;
            } else if !self.cl_ok && !self.te_ok {
                self.pos = u8::MAX;
            } else {
                self.pos += 1;
            }
        }
        None
    }

    /// Whether at least one line (the request line) has ended since arming.
    fn after_first_line(&self) -> bool {
        self.pos != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(parts: &[&[u8]]) -> Option<Verdict> {
        let mut s = HeadScanner::default();
        parts.iter().find_map(|p| s.feed(p))
    }

    #[test]
    fn clean_heads() {
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]),
            Some(Verdict::Clean)
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"]),
            Some(Verdict::Clean)
        );
        assert_eq!(
            scan(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"]),
            Some(Verdict::Clean)
        );
    }

    #[test]
    fn both_headers_in_either_order_and_case() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n",
            b"POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\nCONTENT-LENGTH: 3\n\n",
        ] {
            assert_eq!(scan(&[head]), Some(Verdict::Ambiguous), "{head:?}");
        }
    }

    #[test]
    fn split_across_reads() {
        let head = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        for cut in 1..head.len() {
            assert_eq!(
                scan(&[&head[..cut], &head[cut..]]),
                Some(Verdict::Ambiguous),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn lookalike_names_are_not_matches() {
        assert_eq!(
            scan(&[
                b"POST / HTTP/1.1\r\nX-Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            ]),
            Some(Verdict::Clean)
        );
        assert_eq!(
            scan(&[
                b"POST / HTTP/1.1\r\nContent-Length-X: 3\r\nTransfer-Encodings: chunked\r\n\r\n"
            ]),
            Some(Verdict::Clean)
        );
    }

    #[test]
    fn disarmed_after_head_until_rearmed() {
        let mut s = HeadScanner::default();
        assert_eq!(
            s.feed(b"POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\n"),
            Some(Verdict::Clean)
        );
        assert!(!s.is_armed());
        // Body bytes that look like headers are ignored.
        assert_eq!(
            s.feed(b"Transfer-Encoding: x\r\nContent-Length: 1\r\n\r\n"),
            None
        );
        s.arm();
        assert_eq!(
            s.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(Verdict::Clean)
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(data.len());
            let mut s = HeadScanner::default();
            let _ = s.feed(&data[..cut]);
            let _ = s.feed(&data[cut..]);
        }
    }
}
