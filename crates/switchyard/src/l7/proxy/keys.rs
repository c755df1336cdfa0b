//! What a request says about where it should go, beyond its host and path: the affinity key
//! of `consistent_hash` (client IP, a header, a cookie, a JSON field), the model it asks for,
//! and its prompt's block hashes for `prefix_cache`. Body-based keys read the body ahead,
//! bounded, into [`RequestBody::prefix`], which is forwarded first.

use http::header;
use switchyard_config::HashKey;

use crate::l7::body::RequestBody;
use crate::l7::error::ProxyError;
use crate::l7::model::{find_model, model_from_path, Scan};
use crate::net::conn::ConnCtx;

/// The `consistent_hash` key of a request, `None` when it lacks the header or cookie.
pub(super) fn affinity_key(key: &HashKey, headers: &http::HeaderMap, ctx: &ConnCtx) -> Option<u64> {
    let bytes = match key {
        HashKey::ClientIp => ctx.client_ip.as_bytes(),
        HashKey::Header(name) => headers.get(name.as_str())?.as_bytes(),
        HashKey::Cookie(name) => cookie(headers, name)?,
        HashKey::Json(_) => return None, // read from the body, see `json_key`
    };
    Some(switchyard_balance::hash_bytes(bytes))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (&pair[..eq] == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// How much of a request body is read, at most, to find its `model`.
pub const MODEL_SCAN_LIMIT: usize = 256 * 1024;

/// The model a request asks for: the `x-model` header, else the path (see
/// [`model_from_path`]), else the `model` field of a JSON body (read into `body.prefix`, at
/// most [`MODEL_SCAN_LIMIT`] bytes, to be forwarded first). `None` when the request names none.
pub(super) async fn request_model(
    headers: &http::HeaderMap,
    path: &str,
    body: &mut RequestBody,
) -> Result<Option<String>, ProxyError> {
    if let Some(m) = headers.get("x-model").and_then(|v| v.to_str().ok()) {
        return Ok(Some(m.trim().to_string()));
    }
    if let Some(m) = model_from_path(path) {
        return Ok(Some(m));
    }
    if body.is_end_stream() {
        return Ok(None);
    }
    let mut buf = bytes::BytesMut::new();
    let found = loop {
        match find_model(&buf) {
            Scan::Found(m) => break Some(m),
            Scan::Absent | Scan::Invalid => break None,
            Scan::NeedMore if buf.len() >= MODEL_SCAN_LIMIT => break None,
            Scan::NeedMore => {}
        }
        match body.next_frame().await {
            None => break None,
            Some(Err(_)) => return Err(ProxyError::ClientAborted),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    };
    if !buf.is_empty() {
        body.prefix = Some(buf.freeze());
    }
    Ok(found)
}

/// How much of a request body is read, at most, to hash its prompt for `prefix_cache`.
pub const PROMPT_LIMIT: usize = 1 << 20;

/// Reads the request body ahead into `body.prefix` (kept to be forwarded first), until it
/// ends or more than `limit` bytes are held; whether it ended.
pub(super) async fn read_ahead(body: &mut RequestBody, limit: usize) -> Result<bool, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    if let Some(p) = body.prefix.take() {
        buf.extend_from_slice(&p);
    }
    let mut complete = body.rest_is_end();
    while !complete && buf.len() <= limit {
        match body.next_frame().await {
            None => complete = true,
            Some(Err(_)) => return Err(ProxyError::ClientAborted),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    if !buf.is_empty() {
        body.prefix = Some(buf.freeze());
    }
    Ok(complete)
}

/// The block-hash chain of the request's prompt: the chat messages rendered in order
/// (`role: content` lines) or the completion prompt. The body is read ahead (at most
/// [`PROMPT_LIMIT`] bytes); a body that is longer, or is not an OpenAI-style JSON request,
/// gives an empty chain.
pub(super) async fn prompt_chain(body: &mut RequestBody) -> Result<Vec<u64>, ProxyError> {
    if !read_ahead(body, PROMPT_LIMIT).await? {
        return Ok(Vec::new());
    }
    let prompt = body.prefix.as_deref().and_then(render_prompt);
    Ok(prompt
        .map(|p| switchyard_balance::prefix_cache::block_chain(p.as_bytes()))
        .unwrap_or_default())
}

/// The `json:FIELD` affinity key: the field (a dotted path) of the JSON body, read ahead up
/// to [`MODEL_SCAN_LIMIT`] bytes. Strings hash as their text, other values as their JSON.
/// `None` when the body is longer, not JSON, or lacks the field.
pub(super) async fn json_key(
    body: &mut RequestBody,
    path: &str,
) -> Result<Option<u64>, ProxyError> {
    if !read_ahead(body, MODEL_SCAN_LIMIT).await? {
        return Ok(None);
    }
    let Some(doc) = body
        .prefix
        .as_deref()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
    else {
        return Ok(None);
    };
    let mut v = &doc;
    for field in path.split('.') {
        match v.get(field) {
            Some(next) => v = next,
            None => return Ok(None),
        }
    }
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(switchyard_balance::hash_bytes(s.as_bytes())),
        other => Some(switchyard_balance::hash_bytes(other.to_string().as_bytes())),
    })
}

/// The prompt text of a chat or completion request body.
fn render_prompt(json: &[u8]) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(json).ok()?;
    let mut out = String::new();
    if let Some(messages) = doc.get("messages").and_then(|m| m.as_array()) {
        for m in messages {
            out.push_str(m.get("role").and_then(|r| r.as_str()).unwrap_or(""));
            out.push_str(": ");
            match m.get("content") {
                Some(serde_json::Value::String(s)) => out.push_str(s),
                Some(serde_json::Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(|t| t.as_str()) {
                            out.push_str(t);
                        }
                    }
                }
                _ => {}
            }
            out.push('\n');
        }
        return Some(out);
    }
    match doc.get("prompt")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}
