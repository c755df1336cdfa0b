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
    /// Skipping to the end of the current line (its name can no longer match).
    skipping: bool,
    /// At least one line (the request line) has ended since arming.
    past_first_line: bool,
    /// Bytes of the current line's name matched so far.
    pos: usize,
    cl_ok: bool,
    te_ok: bool,
    seen: u8,
}

impl Default for HeadScanner {
    fn default() -> Self {
        HeadScanner {
            armed: true,
            line_start: true,
            skipping: false,
            past_first_line: false,
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

    fn end_line(&mut self) {
        self.line_start = true;
        self.skipping = false;
        self.past_first_line = true;
    }

    /// Feeds bytes read from the client. Returns a verdict when a head ended in `bytes`.
    ///
    /// Most lines are decided by their first byte (only `c` and `t` can begin a name of
    /// interest); the rest of such a line is skipped with a vectorised search for the newline,
    /// so a typical head costs a few operations per line, not per byte.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        if !self.armed {
            return None;
        }
        let mut i = 0;
        while i < bytes.len() {
            if self.skipping {
                match memchr::memchr(b'\n', &bytes[i..]) {
                    Some(off) => {
                        i += off + 1;
                        self.end_line();
                        continue;
                    }
                    None => return None,
                }
            }
            let b = bytes[i];
            i += 1;
            if self.line_start {
                match b {
                    b'\r' => continue,
                    b'\n' => {
                        // An empty line ends the head. Empty lines before the request line
                        // are allowed by RFC 9112 and end nothing.
                        if !self.past_first_line {
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
                self.end_line();
                continue;
            }
            let lb = b.to_ascii_lowercase();
            self.cl_ok = self.cl_ok && CL.get(self.pos) == Some(&lb);
            self.te_ok = self.te_ok && TE.get(self.pos) == Some(&lb);
            self.pos += 1;
            if self.cl_ok && self.pos == CL.len() {
                self.seen |= SAW_CL;
                self.skipping = true;
            } else if self.te_ok && self.pos == TE.len() {
                self.seen |= SAW_TE;
                self.skipping = true;
            } else if !self.cl_ok && !self.te_ok {
                self.skipping = true;
            }
        }
        None
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

    const NAMES: [&str; 7] = [
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "X-Content-Length",
        "Content-Lengths",
        "TE",
        "Transfer-Encodin",
    ];

    proptest! {
        /// The scanner agrees with a line-by-line reference on random heads split anywhere.
        #[test]
        fn agrees_with_reference(
            picks in prop::collection::vec((0usize..NAMES.len(), any::<bool>()), 0..8),
            cut in 0usize..400,
        ) {
            let mut head = String::from("POST /x HTTP/1.1\r\n");
            let mut cl = false;
            let mut te = false;
            for (i, upper) in &picks {
                let name = if *upper { NAMES[*i].to_ascii_uppercase() } else { NAMES[*i].to_ascii_lowercase() };
                cl |= *i == 0;
                te |= *i == 1;
                head.push_str(&format!("{name}: v\r\n"));
            }
            head.push_str("\r\nbody: Content-Length: 1\r\n");
            let bytes = head.as_bytes();
            let cut = cut.min(bytes.len());
            let expected = if cl && te { Verdict::Ambiguous } else { Verdict::Clean };
            prop_assert_eq!(scan(&[&bytes[..cut], &bytes[cut..]]), Some(expected));
        }

        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(data.len());
            let mut s = HeadScanner::default();
            let _ = s.feed(&data[..cut]);
            let _ = s.feed(&data[cut..]);
        }
    }
}
