//! The token-budget phase of a request (on routes a `[budget NAME]` applies to): a JSON body is
//! read ahead (the same bounded read-ahead as the model and prompt phases, forwarded first),
//! the request's cost estimated, and the estimate reserved before any backend is touched.
//! Also the `x-ratelimit-*` headers of an admitted request's response.

use http::request::Parts;

use super::keys::{read_ahead, PROMPT_LIMIT};
use crate::clock::coarse_now;
use crate::l7::body::{Exchange, RequestBody};
use crate::l7::cost::facts;
use crate::l7::error::ProxyError;
use crate::net::conn::ConnCtx;
use crate::routing::Routing;
use crate::security::budgets::{Ask, Caller};
use crate::server::Shared;
use crate::upstream::codec::ResponseHead;

/// Reserves the request's estimate in the budgets that apply to it, or refuses it.
pub(super) async fn admit(
    shared: &Shared,
    routing: &Routing,
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
                l.model = Some(m.to_string());
            }
        });
    }
    let ask = Ask {
        model: facts.model.as_deref(),
        prompt_tokens: facts.prompt_tokens,
        max_tokens: facts.max_tokens,
    };
    let client = crate::security::client_key(routing, &parts.headers, ctx);
    let caller = Caller {
        headers: &parts.headers,
        client_ip: &client,
    };
    let now = shared.clock.ms_at(coarse_now());
    exchange.budget = routing
        .budgets
        .reserve(now, route, &ask, &caller)
        .map_err(|r| ProxyError::BudgetExceeded(Box::new(r)))?;
    Ok(())
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
