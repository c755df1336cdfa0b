//! The cache phase of an exchange on a route with `cache = on` (see [`crate::traffic::cache`]):
//! after the route's plugins, before the forwarding headers. A fresh entry answers at once;
//! a miss goes to the backend, or, when another request is already fetching the same key,
//! waits for it (at most the response timeout) and looks again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{header, Method};
use switchyard_config::RouteCache;

use super::keys::read_ahead;
use crate::l7::body::RequestBody;
use crate::l7::error::ProxyError;
use crate::server::Shared;
use crate::traffic::cache::collapse::Role;
use crate::traffic::cache::fill::post_cacheable;
use crate::traffic::cache::{Cached, Plan};

/// What the cache says about a request.
pub(super) enum Looked {
    /// Answer with this entry.
    Hit(Arc<Cached>),
    /// Go to the backend, with the plan for storing the answer (none: not cacheable).
    Go(Option<Box<Plan>>),
}

/// Looks the request up; a cacheable POST's body is read ahead (at most `cache_max_object`)
/// for its key. Followers of a miss wait at most `wait`.
pub(super) async fn look(
    shared: &Shared,
    route: &RouteCache,
    parts: &Parts,
    body: &mut RequestBody,
    wait: Duration,
) -> Result<Looked, ProxyError> {
    let post = if parts.method == Method::POST && route.post {
        if !read_ahead(body, route.max_object).await? {
            return Ok(Looked::Go(None));
        }
        let whole = body.prefix.clone().unwrap_or_default();
        if !post_cacheable(parts.uri.path(), &whole, route.streams) {
            return Ok(Looked::Go(None));
        }
        Some(whole)
    } else {
        None
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Some(mut plan) = Plan::new(
        route,
        &parts.method,
        host,
        target,
        &parts.headers,
        post.as_deref(),
    ) else {
        return Ok(Looked::Go(None));
    };
    if plan.bypass {
        plan.keep_request(&parts.headers, host, target);
        return Ok(Looked::Go(Some(Box::new(plan))));
    }
    let cache = &shared.cache;
    let now = shared.clock.now_ms();
    let store = &cache.store;
    if let Some(hit) = store.lookup(&plan.key, &parts.headers, now, plan.max_age_ms) {
        return Ok(Looked::Hit(hit));
    }
    if plan.store {
        match cache.inflight.begin(plan.key) {
            Role::Leader(leading) => plan.leading = Some(leading),
            Role::Follower(following) => {
                store.counters.collapsed.fetch_add(1, Ordering::Relaxed);
                following.wait(wait).await;
                let now = shared.clock.now_ms();
                if let Some(hit) = store.find(&plan.key, &parts.headers, now, plan.max_age_ms) {
                    return Ok(Looked::Hit(hit));
                }
            }
        }
    }
    plan.keep_request(&parts.headers, host, target);
    Ok(Looked::Go(Some(Box::new(plan))))
}
