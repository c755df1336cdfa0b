//! One active check: a TCP connect, an HTTP request (status, and optionally a body
//! substring), an `ai` check of the engine's model list (and optionally a one-token
//! completion), or a script. Each opens its own connections, reads at most a bounded amount
//! of any response body, and says why it failed. The caller bounds it with `health_timeout`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use switchyard_config::{HealthCheck, ModelId};
use tokio::net::TcpStream;

use super::Target;

/// How much of a response body an `http` check searches for its substring, and how much of a
/// completion's answer is read.
pub const MAX_CHECK_BODY: usize = 64 * 1024;
/// The largest `GET /v1/models` answer an `ai` check reads.
pub const MAX_MODELS_BODY: usize = 1024 * 1024;
/// The most model ids a failure message lists.
const SHOWN_MODELS: usize = 10;

/// Why a check failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The TCP connection could not be opened.
    Connect(std::io::Error),
    /// The HTTP exchange failed (handshake, request or response head).
    Http {
        /// `METHOD PATH`.
        request: String,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The response had another status than expected.
    Status {
        /// `METHOD PATH`.
        request: String,
        /// The status expected.
        expected: u16,
        /// The status received.
        got: u16,
    },
    /// Reading the response body failed.
    Body {
        /// `METHOD PATH`.
        request: String,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The response body did not contain the expected substring.
    BodyMismatch {
        /// The substring looked for.
        substring: String,
        /// How many bytes of the body were searched.
        searched: usize,
    },
    /// `GET /v1/models` was not a model list, or was larger than [`MAX_MODELS_BODY`].
    Models(String),
    /// The engine does not serve some of the models the backend declares.
    ModelsMissing {
        /// The declared models it does not list.
        missing: Vec<String>,
        /// What it lists.
        served: Vec<String>,
    },
    /// A script could not be started.
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A script exited with a status other than 0.
    Exit {
        /// How it ended.
        status: std::process::ExitStatus,
        /// The start of what it wrote to stderr.
        stderr: String,
    },
    /// The check took longer than `health_timeout`.
    Timeout(Duration),
    /// The request could not be built from the configured check.
    BadRequest(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Connect(e) => write!(f, "connect failed: {e}"),
            ProbeError::Http { request, source } => write!(f, "{request}: {source}"),
            ProbeError::Status {
                request,
                expected,
                got,
            } => write!(f, "{request}: status {got}, expected {expected}"),
            ProbeError::Body { request, source } => {
                write!(f, "{request}: reading the body failed: {source}")
            }
            ProbeError::BodyMismatch {
                substring,
                searched,
            } => write!(
                f,
                "the response body does not contain {substring:?} (searched {searched} bytes)"
            ),
            ProbeError::Models(why) => write!(f, "GET /v1/models: {why}"),
            ProbeError::ModelsMissing { missing, served } => {
                write!(
                    f,
                    "GET /v1/models does not list {}; it lists ",
                    missing.join(", ")
                )?;
                if served.is_empty() {
                    return write!(f, "no models");
                }
                write!(f, "{}", served[..served.len().min(SHOWN_MODELS)].join(", "))?;
                if served.len() > SHOWN_MODELS {
                    write!(f, " and {} more", served.len() - SHOWN_MODELS)?;
                }
                Ok(())
            }
            ProbeError::Spawn { command, source } => write!(f, "cannot run {command:?}: {source}"),
            ProbeError::Exit { status, stderr } if stderr.is_empty() => {
                write!(f, "script {status}")
            }
            ProbeError::Exit { status, stderr } => write!(f, "script {status}: {stderr}"),
            ProbeError::Timeout(d) => write!(f, "no result within health_timeout ({d:?})"),
            ProbeError::BadRequest(why) => write!(f, "cannot build the request: {why}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Runs `check` once against `target`; `timeout` is passed on to scripts (in their
/// environment), the caller enforces it.
pub async fn run(
    target: &Target,
    check: &HealthCheck,
    timeout: Duration,
) -> Result<(), ProbeError> {
    match check {
        HealthCheck::Tcp => TcpStream::connect(target.addr)
            .await
            .map(drop)
            .map_err(ProbeError::Connect),
        HealthCheck::Http {
            method,
            path,
            status,
            body,
        } => http(target, method, path, *status, body.as_deref()).await,
        HealthCheck::Ai { completion } => ai(target, *completion).await,
        HealthCheck::Script { command, args } => {
            super::script::run(target, command, args, timeout).await
        }
    }
}

async fn http(
    target: &Target,
    method: &str,
    path: &str,
    expected: u16,
    substring: Option<&str>,
) -> Result<(), ProbeError> {
    let read = if substring.is_some() {
        MAX_CHECK_BODY
    } else {
        0
    };
    let resp = exchange(target, method, path, None, read).await?;
    if resp.status != expected {
        return Err(ProbeError::Status {
            request: resp.request,
            expected,
            got: resp.status,
        });
    }
    match substring {
        Some(s) if memchr::memmem::find(&resp.body, s.as_bytes()).is_none() => {
            Err(ProbeError::BodyMismatch {
                substring: s.to_string(),
                searched: resp.body.len(),
            })
        }
        _ => Ok(()),
    }
}

#[derive(serde::Deserialize)]
struct ModelList {
    data: Vec<ModelCard>,
}

#[derive(serde::Deserialize)]
struct ModelCard {
    id: String,
}

/// The model ids of an OpenAI-style model list (`{"data": [{"id": ...}]}`), or why it is not
/// one.
pub fn model_ids(body: &[u8]) -> Result<Vec<String>, String> {
    let list: ModelList = serde_json::from_slice(body)
        .map_err(|e| format!("not a model list ({{\"data\": [{{\"id\": ...}}]}}): {e}"))?;
    Ok(list.data.into_iter().map(|m| m.id).collect())
}

async fn ai(target: &Target, completion: bool) -> Result<(), ProbeError> {
    let resp = exchange(target, "GET", "/v1/models", None, MAX_MODELS_BODY).await?;
    if resp.status != 200 {
        return Err(ProbeError::Status {
            request: resp.request,
            expected: 200,
            got: resp.status,
        });
    }
    if resp.truncated {
        return Err(ProbeError::Models(format!(
            "the answer is larger than {MAX_MODELS_BODY} bytes"
        )));
    }
    let served = model_ids(&resp.body).map_err(ProbeError::Models)?;
    let missing: Vec<String> = target
        .models
        .iter()
        .filter(|m| served_as(m, &served).is_none())
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        return Err(ProbeError::ModelsMissing { missing, served });
    }
    let model = match target.models.first() {
        Some(m) => served_as(m, &served),
        None => served.first().map(String::as_str),
    };
    let Some(model) = model else {
        return Err(ProbeError::ModelsMissing {
            missing: vec!["any model".to_string()],
            served,
        });
    };
    if !completion {
        return Ok(());
    }
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
        "stream": false,
    });
    let resp = exchange(
        target,
        "POST",
        "/v1/chat/completions",
        Some(Bytes::from(body.to_string())),
        MAX_CHECK_BODY,
    )
    .await?;
    if resp.status != 200 {
        return Err(ProbeError::Status {
            request: format!("{} (model {model:?})", resp.request),
            expected: 200,
            got: resp.status,
        });
    }
    Ok(())
}

/// The id under which the engine serves `declared`, if it does: an id equal to it, else one
/// with the same name whose version (after `@`) agrees where both have one. Engines often
/// serve `NAME@VERSION` as plain `NAME` (the version is switchyard's routing label).
pub fn served_as<'a>(declared: &ModelId, served: &'a [String]) -> Option<&'a str> {
    let full = declared.to_string();
    if let Some(exact) = served.iter().find(|s| **s == full) {
        return Some(exact);
    }
    served
        .iter()
        .find(|s| {
            let (name, version) = match s.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (s.as_str(), None),
            };
            name == declared.name
                && match (version, &declared.version) {
                    (Some(v), Some(d)) => v == d,
                    _ => true,
                }
        })
        .map(String::as_str)
}

/// A response as far as a check reads it.
pub struct Response {
    /// `METHOD PATH`, for messages.
    pub request: String,
    /// Its status.
    pub status: u16,
    /// The first bytes of the body (at most the `read` asked for).
    pub body: Vec<u8>,
    /// Whether the body went on past that.
    pub truncated: bool,
}

/// One request on a fresh connection; reads at most `read` bytes of the body (none for 0).
pub async fn exchange(
    target: &Target,
    method: &str,
    path: &str,
    body: Option<Bytes>,
    read: usize,
) -> Result<Response, ProbeError> {
    let request = format!("{method} {path}");
    let http_err = |source| ProbeError::Http {
        request: request.clone(),
        source,
    };
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(ProbeError::Connect)?;
    let _ = tcp.set_nodelay(true);
    let stream = crate::upstream::tls::UpStream::open(tcp, target.tls.as_deref())
        .await
        .map_err(ProbeError::Connect)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ProbeError::BadRequest(e.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, target.address.to_string())
            .header(header::USER_AGENT, "switchyard-health");
        if let Some(b) = &body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, b.len());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ProbeError::BadRequest(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(http_err)?;
        let status = resp.status().as_u16();
        let (body, truncated) = if read == 0 {
            (Vec::new(), false)
        } else {
            read_capped(resp.into_body(), read)
                .await
                .map_err(|source| ProbeError::Body {
                    request: request.clone(),
                    source,
                })?
        };
        Ok(Response {
            request: request.clone(),
            status,
            body,
            truncated,
        })
    }
    .await;
    driver.abort();
    result
}

/// The first `cap` bytes of `body`, and whether there was more.
async fn read_capped(mut body: Incoming, cap: usize) -> Result<(Vec<u8>, bool), hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let room = cap - out.len();
        if data.len() > room {
            out.extend_from_slice(&data[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&data);
    }
    Ok((out, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn m(s: &str) -> ModelId {
        s.parse().unwrap()
    }

    #[test]
    fn declared_models_match_what_engines_report() {
        let served = ids(&["llama", "qwen@v2", "mistral@v1", "mistral@v3"]);
        assert_eq!(served_as(&m("llama"), &served), Some("llama"));
        // NAME@VERSION is served as plain NAME, or as exactly NAME@VERSION.
        assert_eq!(served_as(&m("llama@v7"), &served), Some("llama"));
        assert_eq!(served_as(&m("qwen@v2"), &served), Some("qwen@v2"));
        assert_eq!(served_as(&m("mistral@v3"), &served), Some("mistral@v3"));
        // NAME is served by any version of it.
        assert_eq!(served_as(&m("qwen"), &served), Some("qwen@v2"));
        // Versions that disagree do not match, nor do other names.
        assert_eq!(served_as(&m("qwen@v1"), &served), None);
        assert_eq!(served_as(&m("llama-3"), &served), None);
        assert_eq!(served_as(&m("lla"), &served), None);
        assert_eq!(served_as(&m("llama"), &[]), None);
    }

    #[test]
    fn messages_say_what_is_missing() {
        let e = ProbeError::ModelsMissing {
            missing: vec!["b".into()],
            served: (0..12).map(|i| format!("m{i}")).collect(),
        };
        assert_eq!(
            e.to_string(),
            "GET /v1/models does not list b; it lists m0, m1, m2, m3, m4, m5, m6, m7, m8, m9 \
             and 2 more"
        );
        let e = ProbeError::Status {
            request: "GET /health".into(),
            expected: 200,
            got: 503,
        };
        assert_eq!(e.to_string(), "GET /health: status 503, expected 200");
    }
}
