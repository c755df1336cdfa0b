//! The token-budget phase of a request (on routes a `[budget NAME]` applies to): a JSON body is
//! read ahead (the same bounded read-ahead as the model and prompt phases, forwarded first),
//! the request's cost estimated, and the estimate reserved before any backend is touched.
//! Also the `x-ratelimit-*` headers of an admitted request's response.

use http::request::Parts;
use serde_json::Value;

use super::keys::{read_ahead, PROMPT_LIMIT};
use crate::clock::coarse_now;
use crate::l7::body::{Exchange, RequestBody};
use crate::l7::error::ProxyError;
use crate::l7::model::model_from_path;
use crate::net::conn::ConnCtx;
use crate::security::budgets::{Ask, Caller};
use crate::server::Shared;
use crate::upstream::codec::ResponseHead;

/// What the body says about the request's cost.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Facts {
    pub model: Option<String>,
    /// Estimated prompt tokens: its text's bytes / 4, rounded up, at least 1.
    pub prompt_tokens: u64,
    /// `max_tokens`, else `max_completion_tokens`.
    pub max_tokens: Option<u64>,
}

/// Reserves the request's estimate in the budgets that apply to it, or refuses it.
pub(super) async fn admit(
    shared: &Shared,
    route: usize,
    parts: &Parts,
    body: &mut RequestBody,
    ctx: &ConnCtx,
    exchange: &mut Exchange,
) -> Result<(), ProxyError> {
    // Only a JSON body is read ahead: a gRPC or other stream may wait on its responses.
    let json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_none_or(|v| memchr::memmem::find(v.as_bytes(), b"json").is_some());
    let complete = json && read_ahead(body, PROMPT_LIMIT).await?;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let facts = facts(
        &parts.headers,
        parts.uri.path(),
        body.prefix.as_deref().unwrap_or_default(),
        complete,
        declared,
    );
    if let Some(m) = &facts.model {
        exchange.audit(|l| {
            if l.model.is_none() {
                l.model = Some(m.clone());
            }
        });
    }
    let ask = Ask {
        model: facts.model.as_deref(),
        prompt_tokens: facts.prompt_tokens,
        max_tokens: facts.max_tokens,
    };
    let client = crate::security::client_key(shared, &parts.headers, ctx);
    let caller = Caller {
        headers: &parts.headers,
        client_ip: &client,
    };
    let now = shared.clock.ms_at(coarse_now());
    exchange.budget = shared
        .budgets
        .reserve(now, route, &ask, &caller)
        .map_err(|r| ProxyError::BudgetExceeded(Box::new(r)))?;
    Ok(())
}

/// The request's model (the `x-model` header, the path, else the body's `model`), its prompt
/// estimate and its `max_tokens`. A body that is not JSON, or was too long to read whole, is
/// estimated from its size (`declared` by `Content-Length`, else what was read).
pub(super) fn facts(
    headers: &http::HeaderMap,
    path: &str,
    body: &[u8],
    complete: bool,
    declared: Option<u64>,
) -> Facts {
    let named = headers
        .get("x-model")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.trim().to_string())
        .or_else(|| model_from_path(path));
    let doc: Option<Value> = if complete {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    let tokens = |bytes: u64| bytes.div_ceil(4).max(1);
    let Some(doc) = doc else {
        let size = declared.unwrap_or(body.len() as u64).max(body.len() as u64);
        let model = named.or_else(|| match crate::l7::model::find_model(body) {
            crate::l7::model::Scan::Found(m) => Some(m),
            _ => None,
        });
        return Facts {
            model,
            prompt_tokens: tokens(size),
            max_tokens: None,
        };
    };
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_u64));
    let model = named.or_else(|| doc.get("model").and_then(Value::as_str).map(str::to_string));
    Facts {
        model,
        prompt_tokens: tokens(prompt_bytes(&doc).unwrap_or(body.len()) as u64),
        max_tokens,
    }
}

/// The bytes of the prompt's text: the chat messages' contents (text parts included), or the
/// completion prompt (a string or a list of strings); `None` for other requests.
fn prompt_bytes(doc: &Value) -> Option<usize> {
    let text_len = |v: &Value| match v {
        Value::String(s) => s.len(),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => s.len(),
                other => other
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, str::len),
            })
            .sum(),
        _ => 0,
    };
    if let Some(messages) = doc.get("messages").and_then(Value::as_array) {
        return Some(
            messages
                .iter()
                .map(|m| m.get("content").map_or(0, text_len))
                .sum(),
        );
    }
    doc.get("prompt").or_else(|| doc.get("input")).map(text_len)
}

/// A backend's response to an admitted request: the `x-ratelimit-*` headers of the limits and
/// budgets that applied, and the budgets' usage reader started on its body.
pub(super) fn on_response(exchange: &mut Exchange, head: &mut ResponseHead) {
    if let Some(a) = &exchange.requests {
        a.set_headers(&mut head.headers);
    }
    if let Some(s) = exchange.budget.as_deref_mut() {
        let sse = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        s.respond(head.status.as_u16(), Some(sse));
        s.headers.set(&mut head.headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, body: &str) -> Facts {
        facts(&http::HeaderMap::new(), path, body.as_bytes(), true, None)
    }

    #[test]
    fn chat_and_completion_estimates() {
        let chat = r#"{"model":"llama","messages":[{"role":"system","content":"12345678"},
            {"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url"}]}],
            "max_tokens":300}"#;
        assert_eq!(
            run("/v1/chat/completions", chat),
            Facts {
                model: Some("llama".into()),
                prompt_tokens: 3,
                max_tokens: Some(300)
            }
        );
        let completion = r#"{"model":"m","prompt":["abc","de"],"max_completion_tokens":9}"#;
        assert_eq!(run("/v1/completions", completion).prompt_tokens, 2);
        assert_eq!(run("/v1/completions", completion).max_tokens, Some(9));
        assert_eq!(run("/", r#"{"prompt":""}"#).prompt_tokens, 1, "at least 1");
        assert_eq!(run("/", r#"{"prompt":"x"}"#).max_tokens, None);
    }

    #[test]
    fn models_from_header_path_or_body() {
        let mut h = http::HeaderMap::new();
        h.insert("x-model", http::HeaderValue::from_static("from-header"));
        let f = facts(&h, "/", br#"{"model":"b"}"#, true, None);
        assert_eq!(f.model.as_deref(), Some("from-header"));
        assert_eq!(
            run("/openai/deployments/gpt/chat", r#"{"model":"b"}"#)
                .model
                .as_deref(),
            Some("gpt")
        );
    }

    #[test]
    fn bodies_that_are_not_json_or_too_long() {
        let f = facts(&http::HeaderMap::new(), "/", b"plain text!", true, None);
        assert_eq!((f.prompt_tokens, f.max_tokens), (3, None));
        // Read in part: the declared length counts, the model is still found.
        let f = facts(
            &http::HeaderMap::new(),
            "/",
            br#"{"model":"m","prompt":"#,
            false,
            Some(4000),
        );
        assert_eq!((f.model.as_deref(), f.prompt_tokens), (Some("m"), 1000));
    }
}
