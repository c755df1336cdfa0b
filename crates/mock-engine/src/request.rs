//! Parsing and validation of `/v1/chat/completions` and `/v1/completions`
//! request bodies into a [`Job`].

use serde::Deserialize;
use serde_json::Value;

use crate::engine::Engine;
use crate::response::ApiError;
use crate::tokens::{chat_prompt, count_prompt_tokens, fnv1a64};

/// Largest accepted `max_tokens`.
pub(crate) const MAX_TOKENS_LIMIT: u32 = 1_000_000;
/// Largest number of prompts in one completions request.
const MAX_PROMPTS: usize = 1024;
/// Largest total number of generated tokens (prompts x max_tokens) of one request.
const MAX_TOTAL_TOKENS: u64 = 4_000_000;

/// Which endpoint a job came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `/v1/chat/completions`
    Chat,
    /// `/v1/completions`
    Completion,
}

/// One prompt: its text (seeding the generated tokens) and token count.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pub(crate) text: String,
    pub(crate) tokens: u64,
}

/// A validated generation request.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) kind: Kind,
    pub(crate) model: String,
    /// One per choice; exactly one for chat.
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) max_tokens: u32,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
}

impl Job {
    /// Sum of the prompt tokens of all prompts.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.prompts.iter().map(|p| p.tokens).sum()
    }

    /// A deterministic response id.
    pub(crate) fn id(&self) -> String {
        let mut key = Vec::new();
        key.extend_from_slice(self.model.as_bytes());
        for p in &self.prompts {
            key.push(0);
            key.extend_from_slice(p.text.as_bytes());
        }
        key.extend_from_slice(&self.max_tokens.to_le_bytes());
        let prefix = match self.kind {
            Kind::Chat => "chatcmpl-mock",
            Kind::Completion => "cmpl-mock",
        };
        format!("{prefix}-{:016x}", fnv1a64(&key))
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

/// Parses a chat completions body.
pub(crate) fn parse_chat(body: &[u8], engine: &Engine) -> Result<Job, ApiError> {
    let req: ChatRequest = from_json(body)?;
    if req.messages.is_empty() {
        return Err(
            ApiError::bad_request("`messages` must not be empty", "invalid_value")
                .with_param("messages"),
        );
    }
    let mut contents = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        contents.push(message_text(m.content.as_ref())?);
    }
    let text = chat_prompt(
        req.messages
            .iter()
            .zip(&contents)
            .map(|(m, c)| (m.role.as_str(), c.as_str())),
    );
    let prompt = Prompt {
        tokens: count_prompt_tokens(&text),
        text,
    };
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    build(
        Kind::Chat,
        engine,
        req.model,
        vec![prompt],
        max_tokens,
        req.stream,
        req.stream_options,
    )
}

/// Parses a (legacy) completions body.
pub(crate) fn parse_completion(body: &[u8], engine: &Engine) -> Result<Job, ApiError> {
    let req: CompletionRequest = from_json(body)?;
    let prompts = match req.prompt {
        Some(p) => prompts(p)?,
        None => {
            return Err(
                ApiError::bad_request("missing field `prompt`", "invalid_value")
                    .with_param("prompt"),
            )
        }
    };
    build(
        Kind::Completion,
        engine,
        req.model,
        prompts,
        req.max_tokens,
        req.stream,
        req.stream_options,
    )
}

fn build(
    kind: Kind,
    engine: &Engine,
    model: Option<String>,
    prompts: Vec<Prompt>,
    max_tokens: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
) -> Result<Job, ApiError> {
    let model = engine.resolve_model(model.as_deref())?;
    let max_tokens = max_tokens.unwrap_or(engine.default_max_tokens);
    if max_tokens == 0 || max_tokens > MAX_TOKENS_LIMIT {
        return Err(ApiError::bad_request(
            format!("`max_tokens` must be between 1 and {MAX_TOKENS_LIMIT}, got {max_tokens}"),
            "invalid_value",
        )
        .with_param("max_tokens"));
    }
    if u64::from(max_tokens) * prompts.len() as u64 > MAX_TOTAL_TOKENS {
        return Err(ApiError::bad_request(
            format!("too many tokens requested (prompts x max_tokens > {MAX_TOTAL_TOKENS})"),
            "invalid_value",
        )
        .with_param("max_tokens"));
    }
    let stream = stream.unwrap_or(false);
    let include_usage = stream
        && stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    Ok(Job {
        kind,
        model,
        prompts,
        max_tokens,
        stream,
        include_usage,
    })
}

fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request(format!("invalid request body: {e}"), "invalid_value")
        } else {
            ApiError::bad_request(format!("invalid JSON body: {e}"), "invalid_json")
        }
    })
}

/// Text of a chat message content: a string, an array of content parts
/// (text parts are concatenated, others ignored) or null.
fn message_text(content: Option<&Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")),
        Some(_) => Err(ApiError::bad_request(
            "message `content` must be a string, an array of content parts or null",
            "invalid_value",
        )
        .with_param("messages")),
    }
}

/// Prompts of a completions request: a string, an array of strings, an array
/// of token ids, or an array of arrays of token ids.
fn prompts(value: Value) -> Result<Vec<Prompt>, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "`prompt` must be a string, an array of strings, an array of token ids \
             or an array of arrays of token ids, and must not be empty",
            "invalid_value",
        )
        .with_param("prompt")
    };
    let text_prompt = |text: String| Prompt {
        tokens: count_prompt_tokens(&text),
        text,
    };
    let token_prompt = |ids: &[Value]| -> Option<Prompt> {
        let ids: Option<Vec<u64>> = ids.iter().map(Value::as_u64).collect();
        let ids = ids.filter(|ids| !ids.is_empty())?;
        let text = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
        Some(Prompt {
            tokens: ids.len() as u64,
            text,
        })
    };
    let out = match value {
        Value::String(s) => vec![text_prompt(s)],
        Value::Array(items) if items.first().is_some_and(Value::is_number) => {
            vec![token_prompt(&items).ok_or_else(invalid)?]
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match item {
                    Value::String(s) => text_prompt(s),
                    Value::Array(ids) => token_prompt(&ids).ok_or_else(invalid)?,
                    _ => return Err(invalid()),
                });
            }
            out
        }
        _ => return Err(invalid()),
    };
    if out.is_empty() {
        return Err(invalid());
    }
    if out.len() > MAX_PROMPTS {
        return Err(ApiError::bad_request(
            format!("at most {MAX_PROMPTS} prompts per request"),
            "invalid_value",
        )
        .with_param("prompt"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MockEngineArgs;

    fn engine() -> std::sync::Arc<Engine> {
        let args = MockEngineArgs {
            models: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        Engine::new(&args, "127.0.0.1:1".parse().unwrap())
    }

    #[test]
    fn chat_defaults_and_rendering() {
        let e = engine();
        let job = parse_chat(
            br#"{"messages":[{"role":"user","content":"hi there"}]}"#,
            &e,
        )
        .unwrap();
        assert_eq!(job.model, "a");
        assert_eq!(job.max_tokens, 16);
        assert!(!job.stream && !job.include_usage);
        assert_eq!(job.prompts[0].text, "user: hi there");
        assert_eq!(job.prompt_tokens(), 3);
        assert!(job.id().starts_with("chatcmpl-mock-"));
    }

    #[test]
    fn chat_options() {
        let e = engine();
        let job = parse_chat(
            br#"{"model":"b","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
                "max_tokens":3,"max_completion_tokens":5,"stream":true,
                "stream_options":{"include_usage":true}}"#,
            &e,
        )
        .unwrap();
        assert_eq!((job.model.as_str(), job.max_tokens), ("b", 5));
        assert!(job.stream && job.include_usage);
    }

    #[test]
    fn chat_errors() {
        let e = engine();
        for body in [
            &b"{"[..],
            b"",
            b"[]",
            br#"{"messages":[]}"#,
            br#"{"messages":[{"role":"user","content":1}]}"#,
            br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
        ] {
            assert!(
                parse_chat(body, &e).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_chat(br#"{"model":"zz","messages":[{"role":"user"}]}"#, &e).is_err());
    }

    #[test]
    fn completion_prompts() {
        let e = engine();
        let job = parse_completion(br#"{"prompt":"a b c","max_tokens":2}"#, &e).unwrap();
        assert_eq!((job.prompts.len(), job.prompt_tokens()), (1, 3));
        let job = parse_completion(br#"{"prompt":["a","b c"]}"#, &e).unwrap();
        assert_eq!((job.prompts.len(), job.prompt_tokens()), (2, 3));
        let job = parse_completion(br#"{"prompt":[1,2,3,4]}"#, &e).unwrap();
        assert_eq!((job.prompts.len(), job.prompt_tokens()), (1, 4));
        let job = parse_completion(br#"{"prompt":[[1],[2,3]]}"#, &e).unwrap();
        assert_eq!((job.prompts.len(), job.prompt_tokens()), (2, 3));
        for body in [
            &br#"{}"#[..],
            br#"{"prompt":[]}"#,
            br#"{"prompt":[1,"a"]}"#,
            br#"{"prompt":[[]]}"#,
            br#"{"prompt":{}}"#,
        ] {
            assert!(
                parse_completion(body, &e).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
