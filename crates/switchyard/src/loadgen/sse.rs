//! A sans-io reader of OpenAI-style server-sent events: `data: {json}` lines, ending with
//! `data: [DONE]`.
//!
//! Bytes go in as they arrive ([`SseParser::push`]), whole `data:` lines come out as
//! [`SseEvent`]s. Each `data:` line is one JSON chunk (as OpenAI, vLLM, SGLang and TGI send
//! them); other lines (`event:`, `id:`, `:` comments, blank separators) are skipped. A line is
//! at most [`MAX_LINE_BYTES`]; a longer one is an error rather than unbounded buffering.

use serde::Deserialize;

/// The longest SSE line accepted.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One `data:` line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A JSON chunk.
    Chunk(Chunk),
    /// `data: [DONE]`: the stream is complete.
    Done,
}

/// What a chunk carries that the load generator measures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    /// Generated text in this chunk, all choices together (`delta.content` of chat
    /// completions, `text` of completions); empty for role-only or usage-only chunks.
    pub content: String,
    /// Tokens generated in the whole response, when the chunk carries `usage`.
    pub completion_tokens: Option<u64>,
    /// The message of an `{"error": ...}` chunk.
    pub error: Option<String>,
}

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line longer than [`MAX_LINE_BYTES`].
    LineTooLong,
    /// A `data:` line that is not a JSON object: the serde message.
    BadJson(String),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::LineTooLong => write!(f, "an SSE line longer than {MAX_LINE_BYTES} bytes"),
            SseError::BadJson(e) => write!(f, "an SSE data line is not a JSON chunk: {e}"),
        }
    }
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Vec<RawChoice>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawChoice {
    #[serde(default)]
    delta: Option<RawDelta>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Splits a byte stream into SSE lines and reads the `data:` ones.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; every complete `data:` line becomes an event in `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = memchr::memchr(b'\n', &self.buf[start..]) {
            let line = &self.buf[start..start + nl];
            start += nl + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(event) = read_line(line)? {
                out.push(event);
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        Ok(())
    }

    /// Whether bytes of an unfinished line are buffered.
    pub fn has_partial_line(&self) -> bool {
        !self.buf.is_empty()
    }
}

fn read_line(line: &[u8]) -> Result<Option<SseEvent>, SseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(SseError::LineTooLong);
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        return Ok(None);
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if data.trim_ascii() == b"[DONE]" {
        return Ok(Some(SseEvent::Done));
    }
    let raw: RawChunk =
        serde_json::from_slice(data).map_err(|e| SseError::BadJson(e.to_string()))?;
    let mut content = String::new();
    for c in &raw.choices {
        if let Some(t) = c.delta.as_ref().and_then(|d| d.content.as_deref()) {
            content.push_str(t);
        }
        if let Some(t) = &c.text {
            content.push_str(t);
        }
    }
    let error = raw.error.map(|e| match e {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(ref o) => o
            .get("message")
            .and_then(|m| m.as_str())
            .map_or_else(|| e.to_string(), str::to_string),
        other => other.to_string(),
    });
    Ok(Some(SseEvent::Chunk(Chunk {
        content,
        completion_tokens: raw.usage.and_then(|u| u.completion_tokens),
        error,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parts: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for part in parts {
            p.push(part, &mut out)?;
        }
        Ok(out)
    }

    fn chunk(content: &str) -> SseEvent {
        SseEvent::Chunk(Chunk {
            content: content.into(),
            ..Chunk::default()
        })
    }

    #[test]
    fn reads_chat_chunks_split_anywhere() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            ": a comment\n",
            "event: message\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"the \"}}]}\r\n\r\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        let expected = vec![
            chunk(""),
            chunk("the "),
            SseEvent::Chunk(Chunk {
                completion_tokens: Some(1),
                ..Chunk::default()
            }),
            SseEvent::Done,
        ];
        assert_eq!(all(&[stream]).unwrap(), expected);
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(all(&[a, b]).unwrap(), expected, "cut at {cut}");
        }
    }

    #[test]
    fn reads_completion_text_and_errors() {
        let out = all(&[
            b"data:{\"choices\":[{\"text\":\"hi\"}]}\n",
            b"data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n",
            b"data: {\"error\":\"plain\"}\n",
        ])
        .unwrap();
        assert_eq!(out[0], chunk("hi"));
        let SseEvent::Chunk(c) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(c.error.as_deref(), Some("overloaded"));
        let SseEvent::Chunk(c) = &out[2] else {
            panic!("{out:?}")
        };
        assert_eq!(c.error.as_deref(), Some("plain"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(
            all(&[b"data: {not json\n"]),
            Err(SseError::BadJson(_))
        ));
        assert!(matches!(all(&[b"data: 42\n"]), Err(SseError::BadJson(_))));
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        assert_eq!(all(&[&long]), Err(SseError::LineTooLong));
        let mut p = SseParser::new();
        p.push(b"data: {\"choi", &mut Vec::new()).unwrap();
        assert!(p.has_partial_line());
    }
}
