//! Security in front of L7 routing: access control lists (`[acl NAME]`, also guarding TCP
//! `[l4 NAME]` listeners) and request rate limits (`[limit NAME]`).
//!
//! The algorithms are sans-io ([`gcra`], [`keyed`]: time is an argument), tested with a
//! controllable clock; [`limits`] binds them to the configuration and the wall clock.

pub mod acl;
pub mod client;
pub mod gcra;
pub mod keyed;
pub mod limits;

pub use acl::Acls;
pub use limits::{Limits, Refusal};

use std::net::IpAddr;

use http::Request;

use crate::l7::error::ProxyError;
use crate::net::conn::ConnCtx;
use crate::server::Shared;

/// The security phase of a request routed to `route`: the client's address (see
/// [`client::client_addr`]), then every `[acl NAME]` guarding the route, then every
/// `[limit NAME]` that applies. With `trusted_proxies` set, an untrusted peer's
/// `X-Forwarded-For` is removed (the peer's address is then all that goes upstream).
pub fn admit<B>(
    shared: &Shared,
    route: usize,
    req: &mut Request<B>,
    ctx: &ConnCtx,
) -> Result<(), ProxyError> {
    let trusted = &shared.config.server.trusted_proxies;
    let guarded = shared.acls.guards_route(route);
    if trusted.is_empty() && !guarded && shared.limits.is_empty() {
        return Ok(());
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
        shared
            .limits
            .check(route, req.uri().path(), req.headers(), key)
            .map_err(|r| ProxyError::RateLimited(Box::new(r)))?;
    }
    Ok(())
}
