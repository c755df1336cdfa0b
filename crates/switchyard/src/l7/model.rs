//! Finding `model` in an OpenAI-style JSON request body without parsing all of it (sans-io).
//!
//! Chat, completion and embedding requests carry the model as a top-level string field. The
//! scanner reads only as far as that field: it walks the top-level object, skipping other
//! values (nested objects, arrays, strings with escapes) without building them, and answers as
//! soon as `model` is found, or asks for more bytes. Bodies are capped by the caller, so a
//! large prompt placed before `model` is read at most up to that cap.

/// What the scan of a body prefix found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// The top-level `model` string.
    Found(String),
    /// The whole object was read and has no string `model` field.
    Absent,
    /// The prefix ends before `model` was found: more bytes are needed.
    NeedMore,
    /// Not a JSON object (or malformed before `model`).
    Invalid,
}

/// Scans `buf`, the body's first bytes.
pub fn find_model(buf: &[u8]) -> Scan {
    let mut p = Parser { buf, pos: 0 };
    match p.object() {
        Ok(Some(m)) => Scan::Found(m),
        Ok(None) => Scan::Absent,
        Err(Stop::More) => Scan::NeedMore,
        Err(Stop::Bad) => Scan::Invalid,
    }
}

enum Stop {
    More,
    Bad,
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Nesting deeper than this is refused (bounds the recursion).
const MAX_DEPTH: usize = 128;

impl Parser<'_> {
    fn peek(&mut self) -> Result<u8, Stop> {
        while let Some(&b) = self.buf.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                self.pos += 1;
            } else {
                return Ok(b);
            }
        }
        Err(Stop::More)
    }

    fn expect(&mut self, b: u8) -> Result<(), Stop> {
        if self.peek()? == b {
            self.pos += 1;
            Ok(())
        } else {
            Err(Stop::Bad)
        }
    }

    /// The top-level object: returns `model` if present (as a string), stopping there.
    fn object(&mut self) -> Result<Option<String>, Stop> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            return Ok(None);
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            if key == "model" && self.peek()? == b'"' {
                return self.string().map(Some);
            }
            self.value(1)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => return Ok(None),
                _ => return Err(Stop::Bad),
            }
        }
    }

    /// A string, unescaped (escapes other than the simple ones keep their text).
    fn string(&mut self) -> Result<String, Stop> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let &b = self.buf.get(self.pos).ok_or(Stop::More)?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).map_err(|_| Stop::Bad),
                b'\\' => {
                    let &e = self.buf.get(self.pos).ok_or(Stop::More)?;
                    self.pos += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.buf.get(self.pos..self.pos + 4).ok_or(Stop::More)?;
                            self.pos += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or(Stop::Bad)?;
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                        }
                        _ => return Err(Stop::Bad),
                    }
                }
                0..=0x1f => return Err(Stop::Bad),
                _ => out.push(b),
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Bad);
        }
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' | b'[' => {
                let close = if self.peek()? == b'{' { b'}' } else { b']' };
                let object = close == b'}';
                self.pos += 1;
                if self.peek()? == close {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if object {
                        self.skip_string()?;
                        self.expect(b':')?;
                    }
                    self.value(depth + 1)?;
                    match self.peek()? {
                        b',' => self.pos += 1,
                        c if c == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop::Bad),
                    }
                }
            }
            _ => {
                // A number or a literal: runs until a delimiter.
                let start = self.pos;
                while let Some(&b) = self.buf.get(self.pos) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == self.buf.len() {
                    return Err(Stop::More);
                }
                let token = &self.buf[start..self.pos];
                let literal = matches!(token, b"true" | b"false" | b"null");
                let number = !token.is_empty()
                    && token
                        .iter()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(b));
                if literal || number {
                    Ok(())
                } else {
                    Err(Stop::Bad)
                }
            }
        }
    }

    fn skip_string(&mut self) -> Result<(), Stop> {
        self.expect(b'"')?;
        loop {
            let rest = self.buf.get(self.pos..).ok_or(Stop::More)?;
            let i = memchr::memchr2(b'"', b'\\', rest).ok_or(Stop::More)?;
            self.pos += i + 1;
            if rest[i] == b'"' {
                return Ok(());
            }
            if self.pos >= self.buf.len() {
                return Err(Stop::More);
            }
            self.pos += 1; // the escaped byte
        }
    }
}

/// The model named by a request path, for APIs that put it there:
/// - KServe v2 / Triton: `/v2/models/NAME[/versions/VERSION]/...` (`NAME@VERSION`);
/// - Azure OpenAI: `/openai/deployments/NAME/...`;
/// - OpenAI's model retrieval: `/v1/models/NAME`.
///
/// Segments are taken as they are (no percent-decoding); an empty one names nothing.
pub fn model_from_path(path: &str) -> Option<String> {
    let mut parts = path.split('/').skip(1);
    let name = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    match (parts.next(), parts.next()) {
        (Some("v2"), Some("models")) => {
            let model = name(parts.next())?;
            match (parts.next(), parts.next()) {
                (Some("versions"), Some(v)) if !v.is_empty() => Some(format!("{model}@{v}")),
                _ => Some(model),
            }
        }
        (Some("openai"), Some("deployments")) => name(parts.next()),
        (Some("v1"), Some("models")) => name(parts.next()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_in_paths() {
        for (path, model) in [
            ("/v2/models/resnet/infer", Some("resnet")),
            ("/v2/models/resnet/versions/3/infer", Some("resnet@3")),
            ("/v2/models/resnet", Some("resnet")),
            (
                "/openai/deployments/gpt-4o/chat/completions",
                Some("gpt-4o"),
            ),
            ("/v1/models/llama-3-8b", Some("llama-3-8b")),
            ("/v1/models", None),
            ("/v1/models/", None),
            ("/v1/chat/completions", None),
            ("/v2/models//infer", None),
            ("/", None),
        ] {
            assert_eq!(model_from_path(path).as_deref(), model, "{path}");
        }
    }
    use proptest::prelude::*;

    #[test]
    fn finds_model_wherever_it_is() {
        let body = br#"{"messages":[{"role":"user","content":"hi \"there\" {}[]"}],"stream":true,"max_tokens":5,"x":{"model":"nested"},"model":"llama-3@v2"}"#;
        assert_eq!(find_model(body), Scan::Found("llama-3@v2".into()));
        assert_eq!(
            find_model(br#" { "model" : "m" , "messages": [ "#),
            Scan::Found("m".into())
        );
        assert_eq!(
            find_model(br#"{"model":"a\u0062c"}"#),
            Scan::Found("abc".into())
        );
    }

    #[test]
    fn absent_invalid_and_incomplete() {
        assert_eq!(find_model(br#"{"messages":[],"n":1}"#), Scan::Absent);
        assert_eq!(find_model(br#"{"model":5}"#), Scan::Absent);
        assert_eq!(find_model(b"{}"), Scan::Absent);
        assert_eq!(find_model(b"[1,2]"), Scan::Invalid);
        assert_eq!(find_model(b"model=x"), Scan::Invalid);
        assert_eq!(find_model(br#"{"a":tru}"#), Scan::Invalid);
        assert_eq!(find_model(b""), Scan::NeedMore);
        assert_eq!(
            find_model(br#"{"messages":[{"content":"lo"#),
            Scan::NeedMore
        );
        assert_eq!(find_model(br#"{"model":"lla"#), Scan::NeedMore);
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(500), "]".repeat(500));
        assert_eq!(find_model(deep.as_bytes()), Scan::Invalid);
    }

    proptest! {
        /// On complete documents the scanner agrees with serde_json, and every prefix of a
        /// document either needs more bytes or already found the same model.
        #[test]
        fn agrees_with_serde_json(
            before in prop::collection::vec(("[a-z]{1,6}", "[ -~]{0,12}"), 0..4),
            model in prop::option::of("[a-z0-9@._-]{1,16}"),
            after in prop::collection::vec(("[a-z]{1,6}", 0i64..1000), 0..3),
        ) {
            let mut obj = serde_json::Map::new();
            for (k, v) in &before {
                if k != "model" {
                    obj.insert(k.clone(), serde_json::json!({"text": v, "list": [v, 1, null]}));
                }
            }
            if let Some(m) = &model {
                obj.insert("model".into(), serde_json::Value::String(m.clone()));
            }
            for (k, v) in &after {
                if k != "model" {
                    obj.insert(k.clone(), serde_json::json!(v));
                }
            }
            let text = serde_json::to_vec(&serde_json::Value::Object(obj)).unwrap();
            let expected = match &model {
                Some(m) => Scan::Found(m.clone()),
                None => Scan::Absent,
            };
            prop_assert_eq!(find_model(&text), expected.clone());
            for cut in 0..text.len() {
                let got = find_model(&text[..cut]);
                prop_assert!(got == Scan::NeedMore || got == expected, "cut {}: {:?}", cut, got);
            }
        }

        #[test]
        fn never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = find_model(&data);
        }
    }
}
