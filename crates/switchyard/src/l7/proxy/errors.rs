//! The proxy's own answer to a request that failed before a backend answered it (or instead
//! of one): the status and `x-switchyard-error` of the [`ProxyError`], a short plain-text body
//! (OpenAI's JSON error shape where clients expect it), a trailers-only status for gRPC, and
//! the refusal headers of limits and budgets. The failure is counted and settled here.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::Response;

use super::Worker;
use crate::l7::body::{Exchange, ProxyBody};
use crate::l7::error::ProxyError;
use crate::l7::grpc;
use crate::observe::stats::Bump;

impl Worker {
    pub(super) fn error_response(
        &self,
        e: ProxyError,
        mut exchange: Exchange,
    ) -> Response<ProxyBody> {
        let status = e.status();
        exchange.audit(|l| l.denied = Some(e.audit_reason()));
        if let Some(s) = exchange.budget.as_deref_mut() {
            // Nothing will come from a backend: settled now, not when the body is gone.
            s.set_status(status.as_u16());
            exchange.settle_budget();
        }
        self.stats.error(e.kind());
        self.stats
            .response(exchange.stat, exchange.backend, status.as_u16());
        if let Some(r) = exchange.stat.and_then(|r| self.stats.routes.get(r)) {
            r.errors.bump(1);
        }
        if !matches!(e, ProxyError::NoRoute | ProxyError::BadRequest(_)) {
            tracing::debug!(error = %e, "request failed");
        }
        let close = matches!(e, ProxyError::BadRequest(_));
        if exchange.grpc {
            // A trailers-only gRPC response: HTTP 200, the status in the headers, no body.
            let mut resp = Response::new(ProxyBody::empty(exchange));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            grpc::set_status(h, grpc::code_of(&e), &e.to_string());
            h.insert(
                "x-switchyard-error",
                HeaderValue::from_static(e.kind().name()),
            );
            set_refusal_headers(&e, h);
            return resp;
        }
        let (body, content_type) = match &e {
            // OpenAI clients expect their error shape, and the list helps whoever mistyped.
            ProxyError::UnknownModel { model, served } => (
                Bytes::from(
                    serde_json::json!({"error": {
                        "message": format!(
                            "The model `{model}` does not exist here. Models served: {}.",
                            served.join(", ")
                        ),
                        "type": "invalid_request_error",
                        "param": "model",
                        "code": "model_not_found",
                        "models": served,
                    }})
                    .to_string(),
                ),
                "application/json",
            ),
            // OpenAI's shape for a rate limit, which its client libraries back off on.
            ProxyError::RateLimited(r) => (
                Bytes::from(
                    serde_json::json!({"error": {
                        "message": format!("Rate limit reached ({}); retry later.", &*r.limit),
                        "type": "requests",
                        "param": null,
                        "code": "rate_limit_exceeded",
                    }})
                    .to_string(),
                ),
                "application/json",
            ),
            ProxyError::BudgetExceeded(r) => (
                Bytes::from(
                    serde_json::json!({"error": {
                        "message": format!(
                            "Token budget reached ({}): {} tokens left, this request needs \
                             about {}; retry later.",
                            &*r.budget, r.remaining, r.estimate
                        ),
                        "type": "tokens",
                        "param": null,
                        "code": "rate_limit_exceeded",
                    }})
                    .to_string(),
                ),
                "application/json",
            ),
            _ => (
                Bytes::from_static(e.body().as_bytes()),
                "text/plain; charset=utf-8",
            ),
        };
        let mut resp = Response::new(ProxyBody::full(body, exchange));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(
            "x-switchyard-error",
            HeaderValue::from_static(e.kind().name()),
        );
        set_refusal_headers(&e, h);
        if close {
            // The framing of whatever follows on this connection cannot be trusted.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// `Retry-After` and `x-ratelimit-*` on a refusal by a limit or a budget.
fn set_refusal_headers(e: &ProxyError, h: &mut http::HeaderMap) {
    match e {
        ProxyError::RateLimited(r) => r.set_headers(h),
        ProxyError::BudgetExceeded(r) => r.set_headers(h),
        _ => {}
    }
}
