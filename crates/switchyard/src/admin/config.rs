//! The config-as-code API: `GET /admin/config` (the config in force, `?format=ini|json`),
//! `POST /admin/config` (a whole new config, validated then applied atomically;
//! `&dry_run=1` only says what it would change), `POST /admin/config/rollback` and
//! `POST /admin/config/reload` (re-read the config file). See [`crate::reload`].

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use crate::reload::{self, ReloadError};
use crate::server::Shared;

/// The largest config body read.
pub const MAX_BODY: usize = 1 << 20;

/// How a config is written in a request or a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ini,
    Json,
}

/// What the handler answers: status, content type, body.
pub type Answer = (StatusCode, &'static str, Bytes);

fn json_answer(status: StatusCode, v: &Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    (status, "application/json", body.into())
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    json_answer(
        status,
        &json!({"errors": [{"line": 0, "section": null, "key": null, "message": message.into()}]}),
    )
}

/// `/admin/config[/{rest}]`; `rest` is the path after `/admin/config`.
pub async fn handle(
    shared: &Shared,
    client: std::net::IpAddr,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: Incoming,
) -> Answer {
    let mut format = Format::Ini;
    let mut dry_run = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("format", "ini") => format = Format::Ini,
            ("format", "json") => format = Format::Json,
            ("dry_run", "1" | "true" | "") => dry_run = true,
            ("dry_run", "0" | "false") => dry_run = false,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter {pair:?}; use format=ini|json, dry_run=1"),
                )
            }
        }
    }
    let client = client.to_string();
    let outcome = match (method, rest) {
        (&Method::GET | &Method::HEAD, "" | "/") => return get(shared, format),
        (&Method::POST, "" | "/") => {
            let text = match Limited::new(body, MAX_BODY).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("config body larger than {MAX_BODY} bytes, or unreadable"),
                    )
                }
            };
            let Ok(text) = std::str::from_utf8(&text) else {
                return error(StatusCode::BAD_REQUEST, "the config is not UTF-8");
            };
            let ini = match format {
                Format::Ini => text.to_string(),
                Format::Json => match json_to_ini(text) {
                    Ok(ini) => ini,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                },
            };
            // Values GET showed as `<redacted>` and posted back unchanged keep their secrets.
            let ini = if ini.contains(switchyard_config::reload::REDACTED) {
                let running = shared.routing().config.to_ini();
                switchyard_config::reload::unredact_ini(&ini, &running)
            } else {
                ini
            };
            reload::apply_text(shared, &ini, "admin-config", &client, dry_run)
        }
        (&Method::POST, "/rollback") => reload::rollback(shared, &client),
        (&Method::POST, "/reload") => reload::reread(shared, &client),
        _ => return error(
            StatusCode::NOT_FOUND,
            "use GET or POST /admin/config, POST /admin/config/rollback, POST /admin/config/reload",
        ),
    };
    match outcome {
        Ok(o) => json_answer(StatusCode::OK, &o.to_json()),
        Err(e @ (ReloadError::NoHistory | ReloadError::NoFile)) => {
            json_answer(StatusCode::CONFLICT, &e.to_json())
        }
        Err(e) => json_answer(StatusCode::BAD_REQUEST, &e.to_json()),
    }
}

/// `GET /admin/config`: the config in force, secret-looking values redacted.
fn get(shared: &Shared, format: Format) -> Answer {
    let ini = switchyard_config::reload::redact_ini(&shared.routing().config.to_ini());
    match format {
        Format::Ini => (StatusCode::OK, "text/plain; charset=utf-8", ini.into()),
        Format::Json => json_answer(StatusCode::OK, &ini_to_json(&ini)),
    }
}

/// INI text (as rendered: no continuation lines) as JSON:
/// `{"sections": [{"section": "backend a", "keys": {"address": "..."}}, ...]}`, sections in
/// order (route order matters).
pub fn ini_to_json(ini: &str) -> Value {
    let mut sections: Vec<Value> = Vec::new();
    let mut current: Option<(String, Map<String, Value>)> = None;
    for line in ini.lines().map(str::trim) {
        if line.is_empty() || line.starts_with([';', '#']) {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if let Some((name, keys)) = current.take() {
                sections.push(json!({"section": name, "keys": keys}));
            }
            current = Some((h.trim().to_string(), Map::new()));
        } else if let (Some((_, keys)), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            keys.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
        }
    }
    if let Some((name, keys)) = current {
        sections.push(json!({"section": name, "keys": keys}));
    }
    json!({ "sections": sections })
}

/// The JSON shape [`ini_to_json`] writes back to INI text (values may be strings, numbers or
/// booleans).
pub fn json_to_ini(text: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let shape =
        "expected {\"sections\": [{\"section\": \"NAME\", \"keys\": {\"KEY\": \"VALUE\"}}]}";
    let sections = v
        .get("sections")
        .and_then(Value::as_array)
        .ok_or_else(|| shape.to_string())?;
    let mut out = String::new();
    for s in sections {
        let name = s.get("section").and_then(Value::as_str).ok_or(shape)?;
        let keys = s.get("keys").and_then(Value::as_object).ok_or(shape)?;
        if name.contains(['[', ']', '\n', '\r']) {
            return Err(format!(
                "section name {name:?} contains a bracket or a newline"
            ));
        }
        out.push_str(&format!("[{name}]\n"));
        for (k, v) in keys {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "[{name}] {k}: values must be strings, numbers or booleans"
                    ))
                }
            };
            if k.contains(['=', '\n', '\r']) || v.contains(['\n', '\r']) {
                return Err(format!(
                    "[{name}] {k}: keys and values must be one line (and keys have no '=')"
                ));
            }
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_ini() {
        let ini =
            "[server]\nlisten = 127.0.0.1:1\n\n[route b]\nbackends = x\n[route a]\nbackends = y\n";
        let json = ini_to_json(ini);
        assert_eq!(json["sections"][1]["section"], "route b");
        let back = json_to_ini(&json.to_string()).unwrap();
        assert_eq!(
            back,
            "[server]\nlisten = 127.0.0.1:1\n[route b]\nbackends = x\n[route a]\nbackends = y\n"
        );
        assert!(json_to_ini("{}").is_err());
        assert!(json_to_ini(r#"{"sections":[{"section":"s","keys":{"a":"x\ny"}}]}"#).is_err());
    }
}
