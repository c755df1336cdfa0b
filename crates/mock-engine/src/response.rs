//! Response bodies, JSON/text responses and OpenAI-style errors.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// Body type of every response.
pub(crate) type RespBody = BoxBody<Bytes, Infallible>;

/// A complete, in-memory body (sent with `Content-Length`).
pub(crate) fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into()).boxed()
}

/// A response with a complete body and the given content type.
pub(crate) fn bytes_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A 204 response, without a body.
pub(crate) fn no_content() -> Response<RespBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// A JSON response serializing `value`.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<RespBody> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes_response(status, "application/json", body),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to serialize response: {e}"),
            "server_error",
            "internal_error",
        )
        .into_response(),
    }
}

/// An OpenAI-style error: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    code: &'static str,
    param: Option<&'static str>,
    allow: Option<&'static str>,
    retry_after: bool,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

impl ApiError {
    /// An error with the given status, message, `type` and `code`.
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        kind: &'static str,
        code: &'static str,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code,
            param: None,
            allow: None,
            retry_after: false,
        }
    }

    /// 400 `invalid_request_error`.
    pub(crate) fn bad_request(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            code,
        )
    }

    /// 404 for an unknown path.
    pub(crate) fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no route for path `{path}`"),
            "invalid_request_error",
            "not_found",
        )
    }

    /// 404 for an unknown model, listing the served ones.
    pub(crate) fn model_not_found(model: &str, served: &[String]) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            format!(
                "The model `{model}` does not exist. Served models: {}",
                served.join(", ")
            ),
            "invalid_request_error",
            "model_not_found",
        );
        e.param = Some("model");
        e
    }

    /// 405 with an `Allow` header.
    pub(crate) fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not allowed on `{path}` (allowed: {allow})"),
            "invalid_request_error",
            "method_not_allowed",
        );
        e.allow = Some(allow);
        e
    }

    /// 413 for a body above the cap.
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
            "invalid_request_error",
            "request_too_large",
        )
    }

    /// 503 with `Retry-After: 1` when the waiting queue is full.
    pub(crate) fn overloaded(max_waiting: usize) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the engine is overloaded: waiting queue is full ({max_waiting} requests)"),
            "server_error",
            "queue_full",
        );
        e.retry_after = true;
        e
    }

    /// Sets the offending request parameter.
    pub(crate) fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// The HTTP response for this error.
    pub(crate) fn into_response(self) -> Response<RespBody> {
        let envelope = ErrorEnvelope {
            error: ErrorBody {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        // Serializing plain strings cannot fail; fall back to an empty object anyway.
        let body = serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = bytes_response(self.status, "application/json", body);
        let headers = resp.headers_mut();
        if let Some(allow) = self.allow {
            headers.insert(ALLOW, HeaderValue::from_static(allow));
        }
        if self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
