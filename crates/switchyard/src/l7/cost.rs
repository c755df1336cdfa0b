//! What an OpenAI-style request body says about its cost in tokens (sans-io): its model, the
//! size of its prompt's text and its `max_tokens`.
//!
//! The body is deserialised into counters, not into a JSON tree: the prompt's strings are
//! measured where they lie (no copy unless they hold escapes) and every other field is skipped,
//! so estimating a request allocates nothing but its model's name, and that only when escaped.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::l7::model::{find_model, model_from_path, Scan};

/// What a request body says about its cost.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The model: the `x-model` header, the path, else the body's `model`.
    pub model: Option<Cow<'a, str>>,
    /// Estimated prompt tokens: the prompt text's bytes / 4, rounded up, at least 1.
    pub prompt_tokens: u64,
    /// `max_tokens`, else `max_completion_tokens`.
    pub max_tokens: Option<u64>,
}

/// The request's [`Facts`]. `body` is what was read of it; `complete` whether that is all of
/// it. A body that is not JSON, or was too long to read whole, is estimated from its size
/// (`declared` by `Content-Length`, else what was read).
pub fn facts<'a>(
    headers: &'a http::HeaderMap,
    path: &str,
    body: &'a [u8],
    complete: bool,
    declared: Option<u64>,
) -> Facts<'a> {
    let named: Option<Cow<'a, str>> = headers
        .get("x-model")
        .and_then(|v| v.to_str().ok())
        .map(|m| Cow::Borrowed(m.trim()))
        .or_else(|| model_from_path(path).map(Cow::Owned));
    let tokens = |bytes: u64| bytes.div_ceil(4).max(1);
    let parsed = if complete {
        serde_json::from_slice::<Body<'a>>(body).ok()
    } else {
        None
    };
    let Some(doc) = parsed else {
        let size = declared.unwrap_or(0).max(body.len() as u64);
        let model = named.or_else(|| match find_model(body) {
            Scan::Found(m) => Some(Cow::Owned(m)),
            _ => None,
        });
        return Facts {
            model,
            prompt_tokens: tokens(size),
            max_tokens: None,
        };
    };
    let text = match (doc.messages, doc.prompt, doc.input) {
        (Some(TextLen(n)), _, _) | (None, Some(TextLen(n)), _) | (None, None, Some(TextLen(n))) => {
            n
        }
        (None, None, None) => body.len(),
    };
    Facts {
        model: named.or(doc.model),
        prompt_tokens: tokens(text as u64),
        max_tokens: doc.max_tokens.or(doc.max_completion_tokens),
    }
}

/// The fields of a chat, completion or embedding request that count; the rest is skipped.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    /// The chat messages' contents.
    #[serde(default)]
    messages: Option<TextLen>,
    #[serde(default)]
    prompt: Option<TextLen>,
    #[serde(default)]
    input: Option<TextLen>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// The bytes of text in a JSON value: a string's length; a list's items summed; an object's
/// `content` or `text` field (chat messages, content parts); anything else 0.
struct TextLen(usize);

impl<'de> Deserialize<'de> for TextLen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor).map(TextLen)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        Ok(v.len())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0usize;
        while let Some(TextLen(k)) = seq.next_element()? {
            n = n.saturating_add(k);
        }
        Ok(n)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut n = 0usize;
        while let Some(TextKey(counts)) = map.next_key()? {
            if counts {
                let TextLen(k) = map.next_value()?;
                n = n.saturating_add(k);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(n)
    }
}

/// Whether an object key holds text that counts (`content`, `text`).
struct TextKey(bool);

impl<'de> Deserialize<'de> for TextKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
                Ok(v == "content" || v == "text")
            }
        }
        d.deserialize_str(KeyVisitor).map(TextKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<'a>(path: &str, body: &'a str, h: &'a http::HeaderMap) -> Facts<'a> {
        facts(h, path, body.as_bytes(), true, None)
    }

    #[test]
    fn chat_and_completion_estimates() {
        let h = http::HeaderMap::new();
        let chat = r#"{"model":"llama","messages":[{"role":"system","content":"12345678"},
            {"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url",
            "image_url":{"url":"http://x/y.png"}}]}],"max_tokens":300,"stream":true}"#;
        assert_eq!(
            run("/v1/chat/completions", chat, &h),
            Facts {
                model: Some("llama".into()),
                prompt_tokens: 3,
                max_tokens: Some(300)
            }
        );
        let completion = r#"{"model":"m","prompt":["abc","de"],"max_completion_tokens":9}"#;
        let f = run("/v1/completions", completion, &h);
        assert_eq!((f.prompt_tokens, f.max_tokens), (2, Some(9)));
        assert_eq!(
            run("/", r#"{"prompt":""}"#, &h).prompt_tokens,
            1,
            "at least 1"
        );
        assert_eq!(run("/", r#"{"prompt":"x"}"#, &h).max_tokens, None);
        let escaped = r#"{"model":"a\"b","input":"\u00e9\u00e9\u00e9\u00e9"}"#;
        let f = run("/v1/embeddings", escaped, &h);
        assert_eq!((f.model.as_deref(), f.prompt_tokens), (Some("a\"b"), 2));
        // No prompt field: the body's size counts.
        assert_eq!(
            run("/", r#"{"model":"m","x":"0123456789"}"#, &h).prompt_tokens,
            8
        );
    }

    #[test]
    fn models_from_header_path_or_body() {
        let mut h = http::HeaderMap::new();
        h.insert("x-model", http::HeaderValue::from_static("from-header"));
        let f = facts(&h, "/", br#"{"model":"b"}"#, true, None);
        assert_eq!(f.model.as_deref(), Some("from-header"));
        let none = http::HeaderMap::new();
        assert_eq!(
            run("/openai/deployments/gpt/chat", r#"{"model":"b"}"#, &none)
                .model
                .as_deref(),
            Some("gpt")
        );
    }

    #[test]
    fn bodies_that_are_not_json_or_too_long() {
        let h = http::HeaderMap::new();
        let f = facts(&h, "/", b"plain text!", true, None);
        assert_eq!((f.prompt_tokens, f.max_tokens), (3, None));
        // Read in part: the declared length counts, the model is still found.
        let f = facts(&h, "/", br#"{"model":"m","prompt":"#, false, Some(4000));
        assert_eq!((f.model.as_deref(), f.prompt_tokens), (Some("m"), 1000));
        // A field of the wrong type makes the body "not JSON we know": its size counts.
        let f = facts(&h, "/", br#"{"max_tokens":"many"}"#, true, None);
        assert_eq!((f.prompt_tokens, f.max_tokens), (6, None));
    }
}
