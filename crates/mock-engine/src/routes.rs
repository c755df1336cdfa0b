//! Request routing and the small endpoints (`/v1/models`, `/health`, `/metrics`, and the
//! `/mock/hang` and `/mock/unhang` controls).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, CONTENT_LENGTH};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{read_capped, ReadError};
use crate::completions::execute;
use crate::engine::Engine;
use crate::request::{parse_chat, parse_completion, Kind};
use crate::response::{bytes_response, json_response, no_content, ApiError, RespBody};
use crate::schema::{ModelCard, ModelList};

/// Name of the header identifying the engine on every response.
pub(crate) const ENGINE_HEADER: HeaderName = HeaderName::from_static("x-mock-engine");

const GET: &str = "GET, HEAD";
const POST: &str = "POST";

/// Answers one request; never fails.
pub(crate) async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Response<RespBody> {
    let header = engine.header_value.clone();
    let is_get = matches!(*req.method(), Method::GET | Method::HEAD);
    let is_post = req.method() == Method::POST;
    let path = req.uri().path().to_string();
    let not_allowed =
        |allow| ApiError::method_not_allowed(req.method().as_str(), &path, allow).into_response();
    let mut resp = match path.as_str() {
        "/v1/chat/completions" if is_post => completion(engine, req, Kind::Chat).await,
        "/v1/completions" if is_post => completion(engine, req, Kind::Completion).await,
        "/v1/chat/completions" | "/v1/completions" => not_allowed(POST),
        "/v1/models" if is_get => models(&engine),
        "/health" if is_get => bytes_response(StatusCode::OK, "text/plain; charset=utf-8", "ok"),
        "/metrics" if is_get => bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            engine
                .metrics
                .render(&engine.models[0], &engine.scheduler, &engine.gpu()),
        ),
        "/v1/models" | "/health" | "/metrics" => not_allowed(GET),
        "/mock/hang" if is_post => {
            engine.hang.set(true);
            no_content()
        }
        "/mock/unhang" if is_post => {
            engine.hang.set(false);
            no_content()
        }
        "/mock/hang" | "/mock/unhang" => not_allowed(POST),
        _ => ApiError::not_found(&path).into_response(),
    };
    resp.headers_mut().insert(ENGINE_HEADER, header);
    resp
}

fn models(engine: &Engine) -> Response<RespBody> {
    let list = ModelList {
        object: "list",
        data: engine
            .models
            .iter()
            .map(|id| ModelCard {
                id,
                object: "model",
                created: 0,
                owned_by: "switchyard-mock",
            })
            .collect(),
    };
    json_response(StatusCode::OK, &list)
}

async fn completion(engine: Arc<Engine>, req: Request<Incoming>, kind: Kind) -> Response<RespBody> {
    let declared_len = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match read_capped(req.into_body(), declared_len, engine.max_body_bytes).await {
        Ok(body) => body,
        Err(ReadError::TooLarge) => {
            return ApiError::payload_too_large(engine.max_body_bytes).into_response()
        }
        Err(ReadError::Io(e)) => {
            return ApiError::bad_request(format!("failed to read request body: {e}"), "bad_body")
                .into_response()
        }
    };
    let job = match kind {
        Kind::Chat => parse_chat(&body, &engine),
        Kind::Completion => parse_completion(&body, &engine),
    };
    match job {
        Ok(job) => execute(engine, job).await,
        Err(e) => e.into_response(),
    }
}
