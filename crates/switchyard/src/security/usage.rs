//! Reading an OpenAI-style response's token usage as its body streams past (sans-io).
//!
//! The scanner never holds the body: it looks for a `"usage": {...}` object in a window of at
//! most [`WINDOW`] bytes (what is left of one chunk, plus an object cut across chunks), so the
//! usage is found wherever it is (a JSON body's end, an SSE stream's last chunk) and however the
//! body is split. For an event stream it also counts `data:` events other than `[DONE]`, the
//! fallback when the stream carries no usage (one event is about one token).

/// The most bytes the scanner holds.
pub const WINDOW: usize = 16 * 1024;

/// The largest usage object read (a real one is well under 1 KiB).
const MAX_OBJECT: usize = 4096;

const MARKER: &[u8] = b"\"usage\"";

/// Bytes kept from the start of an SSE line: enough for `data: [DONE]`.
const LINE_HEAD: usize = 16;

/// What a response body has said about its token usage so far.
#[derive(Debug, Default)]
pub struct UsageScanner {
    sse: bool,
    window: Vec<u8>,
    total: Option<u64>,
    events: u64,
    line: [u8; LINE_HEAD],
    line_len: usize,
    line_classified: bool,
}

/// What the bytes after a `"usage"` key are.
enum Parsed {
    /// A usage object ending at this offset, with its total if it has one.
    Done(Option<u64>, usize),
    /// Cut off: more bytes are needed.
    NeedMore,
    /// Not a usage object (`null`, or something else).
    Invalid,
}

impl UsageScanner {
    /// A scanner for a body that is an event stream (`text/event-stream`) or not.
    pub fn new(sse: bool) -> Self {
        UsageScanner {
            sse,
            ..Default::default()
        }
    }

    /// Whether the body is an event stream.
    pub fn is_sse(&self) -> bool {
        self.sse
    }

    /// The last usage's total tokens (`total_tokens`, else prompt plus completion).
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// SSE `data:` events other than `[DONE]` seen so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Bytes held (at most about [`WINDOW`] plus [`MAX_OBJECT`]).
    pub fn held(&self) -> usize {
        self.window.len()
    }

    /// Takes the next bytes of the body.
    pub fn feed(&mut self, data: &[u8]) {
        if self.sse {
            self.count_events(data);
        }
        for piece in data.chunks(WINDOW) {
            self.window.extend_from_slice(piece);
            self.scan();
        }
    }

    fn scan(&mut self) {
        let mut from = 0;
        loop {
            let Some(i) = memchr::memmem::find(&self.window[from..], MARKER).map(|i| from + i)
            else {
                // Keep what could be the start of a marker cut in two.
                let keep = self.window.len().min(MARKER.len() - 1);
                self.window.drain(..self.window.len() - keep);
                return;
            };
            let start = i + MARKER.len();
            match parse_usage(&self.window[start..]) {
                Parsed::Done(total, end) => {
                    if total.is_some() {
                        self.total = total;
                    }
                    from = start + end;
                }
                Parsed::Invalid => from = start,
                Parsed::NeedMore if self.window.len() - i > MAX_OBJECT => from = start,
                Parsed::NeedMore => {
                    self.window.drain(..i);
                    return;
                }
            }
        }
    }

    /// Counts `data:` lines other than `data: [DONE]`, looking at each line's first bytes.
    fn count_events(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let (part, ended) = match memchr::memchr(b'\n', data) {
                Some(i) => (&data[..i], Some(i + 1)),
                None => (data, None),
            };
            if !self.line_classified {
                let take = part.len().min(LINE_HEAD - self.line_len);
                self.line[self.line_len..self.line_len + take].copy_from_slice(&part[..take]);
                self.line_len += take;
                if self.line_len == LINE_HEAD {
                    self.classify();
                }
            }
            match ended {
                Some(n) => {
                    if !self.line_classified {
                        self.classify();
                    }
                    self.line_len = 0;
                    self.line_classified = false;
                    data = &data[n..];
                }
                None => return,
            }
        }
    }

    fn classify(&mut self) {
        self.line_classified = true;
        let line = &self.line[..self.line_len];
        if let Some(payload) = line.strip_prefix(b"data:") {
            let payload = payload.strip_prefix(b" ").unwrap_or(payload);
            if !payload.starts_with(b"[DONE]") {
                self.events += 1;
            }
        }
    }
}

/// Reads `: {...}` after a `"usage"` key: the object's end and its total.
fn parse_usage(buf: &[u8]) -> Parsed {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let Some(colon) = buf.iter().position(|b| !ws(b)) else {
        return Parsed::NeedMore;
    };
    if buf[colon] != b':' {
        return Parsed::Invalid;
    }
    let Some(open) = buf[colon + 1..]
        .iter()
        .position(|b| !ws(b))
        .map(|i| colon + 1 + i)
    else {
        return Parsed::NeedMore;
    };
    if buf[open] != b'{' {
        return Parsed::Invalid;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in buf[open..].iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    let end = open + i + 1;
                    return Parsed::Done(total_of(&buf[open..end]), end);
                }
            }
            _ => {}
        }
    }
    Parsed::NeedMore
}

/// The counts of a usage object (its other fields are skipped).
#[derive(serde::Deserialize)]
struct Usage {
    total_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// `total_tokens` of a usage object, else `prompt_tokens + completion_tokens`.
fn total_of(object: &[u8]) -> Option<u64> {
    let u: Usage = serde_json::from_slice(object).ok()?;
    u.total_tokens
        .or_else(|| Some(u.prompt_tokens?.saturating_add(u.completion_tokens?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(sse: bool, pieces: &[&[u8]]) -> UsageScanner {
        let mut s = UsageScanner::new(sse);
        for p in pieces {
            s.feed(p);
        }
        s
    }

    const JSON: &str = r#"{"id":"x","choices":[{"message":{"content":"the \"usage\": {} of it"}}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0}}}"#;

    #[test]
    fn json_usage() {
        assert_eq!(scan(false, &[JSON.as_bytes()]).total(), Some(42));
        let no_total = br#"{"usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
        assert_eq!(scan(false, &[no_total]).total(), Some(11));
        assert_eq!(scan(false, &[br#"{"usage":null}"#]).total(), None);
        assert_eq!(scan(false, &[b"not json at all"]).total(), None);
    }

    #[test]
    fn usage_split_anywhere() {
        let body = JSON.as_bytes();
        for cut in 0..body.len() {
            let s = scan(false, &[&body[..cut], &body[cut..]]);
            assert_eq!(s.total(), Some(42), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(scan(false, &bytes).total(), Some(42));
    }

    #[test]
    fn a_body_larger_than_the_window() {
        let filler = "x".repeat(5 * WINDOW);
        let body = format!(r#"{{"choices":[{{"text":"{filler}"}}],"usage":{{"total_tokens":7}}}}"#);
        let mut s = UsageScanner::new(false);
        for piece in body.as_bytes().chunks(3000) {
            s.feed(piece);
            assert!(s.held() <= WINDOW + MAX_OBJECT);
        }
        assert_eq!(s.total(), Some(7));
        // One huge chunk too.
        let s = scan(false, &[body.as_bytes()]);
        assert_eq!(s.total(), Some(7));
        assert!(s.held() < MARKER.len());
        // An endless "object" is given up on, not held.
        let mut s = UsageScanner::new(false);
        s.feed(br#"{"usage":{"a":""#);
        s.feed(filler.as_bytes());
        assert!(s.held() <= WINDOW + MAX_OBJECT);
        assert_eq!(s.total(), None);
    }

    const SSE: &str = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}],\"usage\":null}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
        : a comment\n\n\
        data:{\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\r\n\r\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
        data: [DONE]\n\n";

    #[test]
    fn sse_final_usage_chunk_and_event_count() {
        let body = SSE.as_bytes();
        for cut in 0..body.len() {
            let s = scan(true, &[&body[..cut], &body[cut..]]);
            assert_eq!((s.total(), s.events()), (Some(5), 4), "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let s = scan(true, &bytes);
        assert_eq!((s.total(), s.events()), (Some(5), 4));
    }

    #[test]
    fn sse_without_usage_counts_events() {
        let body =
            "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n\
                    data: {\"choices\":[{\"text\":\"c\"}]}\n\ndata: [DONE]\n\n";
        let s = scan(true, &[body.as_bytes()]);
        assert_eq!((s.total(), s.events()), (None, 3));
        // Not an event stream: nothing counted.
        assert_eq!(scan(false, &[body.as_bytes()]).events(), 0);
    }

    #[test]
    fn a_stream_cut_short_keeps_what_it_saw() {
        let body = SSE.as_bytes();
        let s = scan(true, &[&body[..120]]);
        assert_eq!(s.total(), None);
        assert_eq!(s.events(), 2);
    }
}
