//! Security in front of L7 routing: access control lists (`[acl NAME]`, also guarding TCP
//! `[l4 NAME]` listeners), request rate limits (`[limit NAME]`) and LLM token budgets
//! (`[budget NAME]`).
//!
//! The algorithms are sans-io ([`gcra`], [`keyed`], [`budget`], [`usage`]: time is an
//! argument), tested with a controllable clock; [`limits`] and [`budgets`] bind them to the
//! configuration and the clock.

pub mod acl;
pub mod budget;
pub mod budgets;
pub mod client;
pub mod gcra;
pub mod keyed;
pub mod limits;
pub mod usage;

pub use acl::Acls;
pub use budgets::{BudgetRefusal, Budgets, Settlement};
pub use limits::{Allowance, Limits, Refusal};

use std::borrow::Cow;
use std::net::IpAddr;

use http::Request;

use crate::l7::error::ProxyError;
use crate::net::conn::ConnCtx;
use crate::routing::Routing;

/// The security phase of a request routed to `route`: the client's address (see
/// [`client::client_addr`]), then every `[acl NAME]` guarding the route, then every
/// `[limit NAME]` that applies. With `trusted_proxies` set, an untrusted peer's
/// `X-Forwarded-For` is removed (the peer's address is then all that goes upstream).
/// Returns the tightest limit's figures for the response's `x-ratelimit-*-requests`.
pub fn admit<B>(
    shared: &Routing,
    route: usize,
    req: &mut Request<B>,
    ctx: &ConnCtx,
) -> Result<Option<Allowance>, ProxyError> {
    let trusted = &shared.config.server.trusted_proxies;
    let guarded = shared.acls.guards_route(route);
    if trusted.is_empty() && !guarded && shared.limits.is_empty() {
        return Ok(None);
    }
    let peer: Option<IpAddr> = ctx.client_ip.to_str().ok().and_then(|s| s.parse().ok());
    let xff = http::HeaderName::from_static("x-forwarded-for");
    let client = match peer {
        Some(peer) if !trusted.is_empty() => {
            let client = client::client_addr(peer, req.headers().get_all(&xff).iter(), trusted);
            if !trusted.iter().any(|c| c.contains(peer)) {
                req.headers_mut().remove(&xff);
            }
            Some(client)
        }
        other => other,
    };
    if guarded {
        shared
            .acls
            .check_request(
                route,
                req.method().as_str(),
                req.uri().path(),
                req.headers(),
                client,
            )
            .map_err(ProxyError::AclDenied)?;
    }
    if !shared.limits.is_empty() {
        let text;
        let key: &[u8] = match client {
            Some(ip) if Some(ip) != peer => {
                text = ip.to_string();
                text.as_bytes()
            }
            _ => ctx.client_ip.as_bytes(),
        };
        return shared
            .limits
            .check(route, req.uri().path(), req.headers(), key)
            .map_err(|r| ProxyError::RateLimited(Box::new(r)));
    }
    Ok(None)
}

/// The client's address as keys name it: the peer's, or from a peer in `trusted_proxies` the
/// one its `X-Forwarded-For` names (after [`admit`], an untrusted peer's header is gone).
pub fn client_key<'a>(
    shared: &Routing,
    headers: &http::HeaderMap,
    ctx: &'a ConnCtx,
) -> Cow<'a, [u8]> {
    let trusted = &shared.config.server.trusted_proxies;
    let peer: Option<IpAddr> = ctx.client_ip.to_str().ok().and_then(|s| s.parse().ok());
    match peer {
        Some(peer) if !trusted.is_empty() => {
            let xff = headers.get_all("x-forwarded-for");
            let client = client::client_addr(peer, xff.iter(), trusted);
            if client == peer {
                Cow::Borrowed(ctx.client_ip.as_bytes())
            } else {
                Cow::Owned(client.to_string().into_bytes())
            }
        }
        _ => Cow::Borrowed(ctx.client_ip.as_bytes()),
    }
}
