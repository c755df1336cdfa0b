//! The request path (HTTP/1.1 and HTTP/2 clients alike), in phases: check framing, route,
//! select a backend, acquire a pooled connection (HTTP/1.1 backends) or a stream of the
//! backend's multiplexed connection (`protocol = h2c`, see [`forward_h2`]), forward, stream
//! the response back.
//!
//! A [`Worker`] is one reactor thread's view of the server: the shared, immutable parts
//! (routes, backend states) plus what the thread owns alone (its balancer instances, its
//! connection pool, its counters). Nothing here takes a lock.

mod budget;
mod cached;
mod errors;
mod forward_h2;
mod keys;
mod mirror;
mod plugins;
mod refresh;
mod upgrade;

use crate::observe::stats::Bump;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use switchyard_balance::{outlier, Balancer, PickContext};
use switchyard_config::{BackendProtocol, HashKey};

use super::body::{Exchange, ProxyBody, RequestBody, Upstream};
use super::error::ProxyError;
use super::grpc;
use super::headers;
use super::models::choose_version;
use crate::clock::{coarse_now, Deadlines};
use crate::net::conn::ConnCtx;
use crate::observe::ThreadStats;
use crate::server::Shared;
use crate::upstream::codec::{BodyDecoder, ResponseHead};
use crate::upstream::conn::{UpstreamConn, UpstreamError};
use crate::upstream::directory::{Backend, Members, Membership};
use crate::upstream::errlog::Cause;
use crate::upstream::h2::H2Conns;
use crate::upstream::pool::Pool;
use keys::{affinity_key, json_key, prompt_chain, request_model};
pub(crate) use plugins::Meter;
use upgrade::{h2c_upgrade, tunnel, websocket_upgrade, TunnelSlot, Upgrade};

/// One reactor thread's state.
pub struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) pool: Pool,
    /// Response-header deadlines, expired by the reactor's ticker.
    pub(crate) deadlines: Deadlines,
    /// WebSocket tunnels open on this thread (drained on shutdown like connections).
    pub(crate) tunnels: std::cell::Cell<usize>,
    balancers: RefCell<Vec<Box<dyn Balancer>>>,
    /// Seeds the balancers (rebuilt when their group's members change).
    seed: u64,
    /// Draws for weighted version splits.
    rng: RefCell<switchyard_balance::SplitMix64>,
    /// The backend directory's snapshot this thread works with, replaced when the directory
    /// publishes a new one (see [`Worker::membership`]). An `Rc` around the shared `Arc` so
    /// that each request's clone is a plain increment, not an atomic one on a count every
    /// reactor thread writes.
    #[allow(clippy::redundant_allocation)]
    membership: RefCell<Rc<Arc<Membership>>>,
    /// Retry budget: tokens earned per request, spent per retry (see [`Worker::may_retry`]).
    retry_tokens: std::cell::Cell<f64>,
    pub(crate) http1: hyper::server::conn::http1::Builder,
    pub(crate) http2: hyper::server::conn::http2::Builder<LocalExec>,
    /// Connections to `protocol = h2c` backends, one per backend.
    h2: H2Conns,
    /// Audit lines of this thread's requests, sent to the writer in batches (boxed as the
    /// exchanges made them: moving a pointer, not the line).
    #[allow(clippy::vec_box)]
    audit_pending: RefCell<crate::audit::Batch>,
    h2_client: hyper::client::conn::http2::Builder<LocalExec>,
}

/// Streams a client's errors may make the server reset on one connection before it is closed.
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// Largest header list accepted from an HTTP/2 backend (as for HTTP/1.1 backends).
const MAX_UPSTREAM_HEADER_LIST: u32 = crate::upstream::codec::MAX_HEAD_BYTES as u32;

/// Runs HTTP/2 stream tasks on the reactor thread's own task set (they are not `Send`).
#[derive(Debug, Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// What the proxy answers with.
enum Reply {
    /// The backend's response.
    Upstream(Answer),
    /// A response switchyard makes itself (the model list, a plugin's answer).
    Local {
        status: StatusCode,
        content_type: &'static str,
        body: Bytes,
    },
    /// An answer from the response cache.
    Cached(Arc<crate::traffic::cache::Cached>),
    /// The backend switched protocols (WebSocket): the client gets the 101, then the two
    /// connections are spliced.
    Upgrade(ResponseHead, Box<UpstreamConn>, Upgrade),
}

/// Where a response's body comes from.
enum Via {
    /// An HTTP/1.1 connection (pooled again when the body ends).
    Http1(Box<UpstreamConn>),
    /// A stream of an HTTP/2 connection.
    H2(Incoming),
}

/// Which backend answered, on which connection, with which head.
struct Answer {
    backend: usize,
    generation: u64,
    via: Via,
    head: ResponseHead,
    /// Why the backend was picked, on routes with `explain`.
    explained: Option<Box<str>>,
}

impl Worker {
    /// The state of reactor thread `index`.
    pub fn new(shared: Arc<Shared>, index: usize) -> Self {
        let cfg = &shared.config.server;
        let seed = 0x5EED_u64 ^ ((index as u64 + 1) << 32);
        let membership = shared.directory.snapshot();
        let balancers = (0..membership.routing.config.routes.len())
            .map(|i| {
                let seed = seed.wrapping_add(i as u64);
                membership.routing.balancer(i, membership.version, seed)
            })
            .collect();
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.max_header_size(cfg.max_header_bytes);
        if cfg.max_headers != 100 {
            http1.max_headers(cfg.max_headers);
        }
        let mut http2 = hyper::server::conn::http2::Builder::new(LocalExec);
        // Streams and windows bounded by configuration; a client that resets streams faster
        // than they are taken up (rapid reset) or makes the server reset many for its
        // errors gets GOAWAY.
        http2
            .max_concurrent_streams(cfg.h2.max_concurrent_streams)
            .initial_stream_window_size(cfg.h2.stream_window)
            .initial_connection_window_size(cfg.h2.connection_window)
            .max_pending_accept_reset_streams(cfg.h2.max_reset_streams as usize)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            .max_header_list_size(cfg.max_header_bytes as u32);
        let mut h2_client = hyper::client::conn::http2::Builder::new(LocalExec);
        // Towards backends hyper's client windows (2 MiB per stream, 5 MiB per connection):
        // one connection carries every stream of the thread to a backend.
        h2_client.max_header_list_size(MAX_UPSTREAM_HEADER_LIST);
        Worker {
            http2,
            h2: H2Conns::new(shared.directory.capacity()),
            audit_pending: RefCell::default(),
            h2_client,
            stats: shared.stats.thread(index),
            pool: Pool::new(
                shared.directory.capacity(),
                cfg.upstream_keepalive,
                cfg.upstream_keepalive_timeout,
            ),
            balancers: RefCell::new(balancers),
            seed,
            rng: RefCell::new(switchyard_balance::SplitMix64::new(seed)),
            membership: RefCell::new(Rc::new(membership)),
            retry_tokens: std::cell::Cell::new(RETRY_BURST),
            deadlines: Deadlines::default(),
            tunnels: std::cell::Cell::new(0),
            http1,
            shared,
        }
    }

    /// Handles one request from a client connection; never fails (errors become responses).
    pub async fn handle(
        self: Rc<Self>,
        ctx: Arc<ConnCtx>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut resp = self.exchange(ctx, req).await;
        let status = resp.status();
        resp.body_mut().audit_status(status);
        resp
    }

    async fn exchange(
        self: Rc<Self>,
        ctx: Arc<ConnCtx>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        ctx.begin_request();
        let mut exchange = Exchange {
            worker: Rc::clone(&self),
            ctx: Arc::clone(&ctx),
            route: None,
            stat: None,
            backend: None,
            snapshot: None,
            start,
            in_flight: None,
            grpc: false,
            audit: crate::audit::request::begin(&self.shared.audit, &req, start),
            requests: None,
            budget: None,
            meter: None,
            plugin_model: None,
            cache: None,
            fill: None,
        };
        let mut req = req;
        if ctx.h2c_upgrade && crate::net::h2c_upgrade::wants_upgrade(&req) {
            if let Some(frame) = crate::net::h2c_upgrade::stream_one(&req) {
                return h2c_upgrade(&ctx, &mut req, frame, exchange);
            }
        }
        self.stats.requests.bump(1);
        // ACME HTTP-01 challenges, before routing (listeners with `acme_challenge_dir`).
        if let Some(dir) = &ctx.acme_dir {
            let acme = crate::net::acme::answer(dir, req.method(), req.uri().path()).await;
            if let Some((status, body)) = acme {
                self.stats.response(None, None, status.as_u16());
                let mut resp = Response::new(ProxyBody::full(body, exchange));
                *resp.status_mut() = status;
                return resp;
            }
        }
        let method = req.method().clone();
        match self.proxy(req, &ctx, &mut exchange).await {
            Ok(Reply::Local {
                status,
                content_type,
                body,
            }) => {
                self.stats.response(exchange.stat, None, status.as_u16());
                let mut resp = Response::new(ProxyBody::full(body, exchange));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                resp
            }
            Ok(Reply::Upstream(Answer {
                backend,
                generation,
                via,
                mut head,
                explained,
            })) => {
                if exchange.requests.is_some() || exchange.budget.is_some() {
                    budget::on_response(&mut exchange, &mut head);
                }
                exchange.backend = Some(backend);
                headers::to_downstream(&mut head.headers);
                if let Some(plan) = exchange.cache.take() {
                    let bypass = plan.bypass;
                    let now = std::time::SystemTime::now();
                    exchange.fill = plan.fill(head.status, &head.headers, now).map(Box::new);
                    crate::traffic::cache::answer::mark_miss(&mut head.headers, bypass);
                }
                if let Some(chain) = exchange.plugins() {
                    let model = exchange.plugin_model.as_deref();
                    let called = plugins::on_response(
                        &chain,
                        head.status,
                        &mut head.headers,
                        &method,
                        model,
                    );
                    if let Err(e) = called {
                        // The backend's body is not read: its connection is dropped.
                        return self.error_response(e, exchange);
                    }
                }
                let response_rules = exchange.response_rewrite();
                let status = head.status.as_u16();
                self.stats.response(exchange.stat, exchange.backend, status);
                if exchange.audit.is_some() {
                    let b = exchange
                        .snapshot
                        .as_ref()
                        .and_then(|m| m.slots.get(backend).and_then(Option::clone));
                    exchange.audit(|l| l.backend = b);
                }
                let body = match via {
                    Via::Http1(conn) => {
                        let upstream = Upstream {
                            conn: Some(conn),
                            backend,
                            generation,
                            decoder: BodyDecoder::new(head.framing),
                            keep_alive: head.keep_alive,
                            failed: None,
                        };
                        ProxyBody::upstream(upstream, exchange)
                    }
                    Via::H2(incoming) => ProxyBody::h2(incoming, exchange),
                };
                let mut body = body;
                body.settle_fill();
                let mut resp = Response::new(body);
                *resp.status_mut() = head.status;
                *resp.headers_mut() = head.headers;
                if let Some(rules) = response_rules {
                    rules.response(resp.headers_mut());
                }
                if let Some(v) = explained.and_then(|e| HeaderValue::from_str(&e).ok()) {
                    resp.headers_mut().insert("x-switchyard-route", v);
                }
                resp
            }
            Ok(Reply::Cached(entry)) => {
                let now = self.shared.clock.now_ms();
                let (status, mut headers) = crate::traffic::cache::answer::hit_head(&entry, now);
                if let Some(chain) = exchange.plugins() {
                    let model = exchange.plugin_model.as_deref();
                    let called = plugins::on_response(&chain, status, &mut headers, &method, model);
                    if let Err(e) = called {
                        return self.error_response(e, exchange);
                    }
                }
                if let Some(rules) = exchange.response_rewrite() {
                    rules.response(&mut headers);
                }
                self.stats.response(exchange.stat, None, status.as_u16());
                let body = crate::traffic::cache::fill::hit_body(&entry, &method);
                let mut resp = Response::new(ProxyBody::full(body, exchange));
                *resp.status_mut() = status;
                *resp.headers_mut() = headers;
                resp
            }
            Ok(Reply::Upgrade(head, conn, upgrade)) => {
                self.stats.response(exchange.stat, exchange.backend, 101);
                // The response's hop-by-hop fields were dropped while parsing it; a 101 to a
                // WebSocket handshake agrees to the protocol asked for.
                let mut headers = head.headers;
                headers::to_downstream(&mut headers);
                if let Some(rules) = exchange.response_rewrite() {
                    rules.response(&mut headers);
                }
                headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                headers.insert(header::UPGRADE, upgrade.protocol.clone());
                // The backend stays busy for the tunnel's life.
                let in_flight = exchange.in_flight.take();
                let idle = self.shared.config.server.client_keepalive_timeout;
                let worker = Rc::clone(&self);
                worker.tunnels.set(worker.tunnels.get() + 1);
                let stats = Arc::clone(&self.stats);
                tokio::task::spawn_local(async move {
                    tunnel(upgrade, conn, idle, in_flight, stats).await;
                    worker.tunnels.set(worker.tunnels.get() - 1);
                });
                let mut resp = Response::new(ProxyBody::full(Bytes::new(), exchange));
                *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                *resp.headers_mut() = headers;
                resp
            }
            Err(e) => self.error_response(e, exchange),
        }
    }

    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        ctx: &Arc<ConnCtx>,
        exchange: &mut Exchange,
    ) -> Result<Reply, ProxyError> {
        exchange.grpc = grpc::is_grpc(req.headers());
        // A WebSocket upgrade: its `Upgrade` value goes to the backend (hop-by-hop headers are
        // otherwise removed), and the client connection is claimed if the backend agrees.
        let upgrade = websocket_upgrade(&req).map(|value| {
            let on_upgrade = hyper::upgrade::on(&mut req);
            let protocol = value.clone();
            (
                value,
                Upgrade {
                    on_upgrade,
                    protocol,
                    slot: None,
                },
            )
        });

        // A reverse proxy opens no tunnels: CONNECT is refused in any target form, and the
        // connection closed, so bytes the client meant for a tunnel are never read as requests.
        if req.method() == http::Method::CONNECT {
            return Err(ProxyError::BadRequest(
                "CONNECT (this proxy opens no tunnels)",
            ));
        }
        // Phase: framing. A head with both Content-Length and Transfer-Encoding is refused.
        if ctx.take_ambiguous_framing() {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        // `chunked` applied twice (RFC 9112 section 6.1 forbids it) is read one way by hyper
        // and could be read another by a backend: refused, like the pair above.
        if req.headers().contains_key(header::TRANSFER_ENCODING) && chunked_twice(req.headers()) {
            return Err(ProxyError::BadRequest(
                "chunked transfer coding applied twice",
            ));
        }
        // absolute-form names a scheme; only HTTP's are proxied (a reverse proxy is no
        // gateway to other protocols).
        if let Some(scheme) = req.uri().scheme_str() {
            if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
                return Err(ProxyError::BadRequest(
                    "absolute-form target with a scheme other than http or https",
                ));
            }
        }

        // Phase: host. RFC 9112 section 3.2: an HTTP/1.1 request must carry exactly one Host;
        // in absolute-form the target's authority replaces it.
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let (first, second) = (hosts.next(), hosts.next());
        if second.is_some() {
            return Err(ProxyError::BadRequest("more than one Host header"));
        }
        let authority = req.uri().authority().map(|a| a.as_str());
        if first.is_none() && authority.is_none() && req.version() == Version::HTTP_11 {
            return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"));
        }
        let host = authority.or_else(|| first.and_then(|v| v.to_str().ok()));
        // An HTTP/1.0 request may come without Host; the backend then gets its own address.
        let missing_host = first.is_none() && authority.is_none();

        // Phase: route, on the snapshot (routing and members) the whole exchange keeps.
        let membership = self.membership();
        let routing = &membership.routing;
        let route = routing
            .router
            .find(host, req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        let stat = routing.stat_slots[route];
        exchange.route = Some(route);
        exchange.stat = Some(stat);
        exchange.snapshot = Some(Rc::clone(&membership));
        self.stats.routes[stat].requests.bump(1);

        // Phase: security: who the client is, access control, rate limits; before any
        // backend is touched.
        exchange.requests = crate::security::admit(routing, route, &mut req, ctx)?;

        // Phase: rewrite for the backend: absolute-form to origin-form, the route's rules
        // (crate::traffic::rewrite), then the forwarding headers, last so no rule spoofs them.
        let (mut parts, body) = req.into_parts();
        let chain = &routing.plugins.routes[route];
        if !chain.is_empty() {
            exchange.meter = Meter::for_chain(chain);
        }
        let mut body = RequestBody {
            prefix: None,
            rest: Some(body),
            meter: exchange.meter.as_ref().map(|m| Rc::clone(&m.request_bytes)),
        };
        if parts.uri.scheme().is_some() {
            // absolute-form (a client that treats us as a forward proxy): the target's
            // authority becomes Host, and the backend gets origin-form.
            if let Some(a) = parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(header::HOST, a);
            }
            let pq = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            parts.uri = Uri::try_from(pq).unwrap_or_else(|_| Uri::from_static("/"));
        }
        let rules = routing.rewrites[route].as_deref();
        if let Some(rules) = rules {
            rules
                .request(&mut parts)
                .map_err(|source| ProxyError::Rewrite {
                    route: routing.config.routes[route].name.clone(),
                    source,
                })?;
        }
        let missing_host = missing_host && !rules.is_some_and(|r| r.sets_host());
        let members = &membership.groups[route];
        // The model, read once for the plugins and the model phase below.
        let mut model: Option<String> = None;
        let model_list = members.models.is_some()
            && parts.method == http::Method::GET
            && parts.uri.path() == "/v1/models";
        if (members.models.is_some() && !model_list) || !chain.is_empty() {
            model = request_model(&parts.headers, parts.uri.path(), &mut body).await?;
            if let Some(m) = &model {
                exchange.audit(|l| l.model = Some(m.clone()));
            }
        }
        // Phase: plugins, in the route's order (see `plugins`).
        if !chain.is_empty() {
            exchange.plugin_model = model.as_deref().map(Box::from);
            if let Some((status, body)) = plugins::on_request(chain, &mut parts, model.as_deref())?
            {
                return Ok(Reply::Local {
                    status,
                    content_type: "text/plain; charset=utf-8",
                    body,
                });
            }
        }
        // Phase: cache, on routes with `cache = on` (see `cached`).
        if let Some(rc) = &routing.config.routes[route].traffic.cache {
            let wait = routing.config.server.upstream_response_timeout;
            match cached::look(&self.shared, rc, &parts, &mut body, wait).await? {
                cached::Looked::Hit(entry) => return Ok(Reply::Cached(entry)),
                cached::Looked::Go(plan) => exchange.cache = plan,
            }
        }
        headers::to_upstream(&mut parts.headers, &ctx.client_ip, ctx.scheme);
        let mut upgrade = match upgrade {
            None => None,
            Some((value, mut u)) => {
                u.slot = Some(TunnelSlot::take(routing, route)?);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                parts.headers.insert(header::UPGRADE, value);
                Some(u)
            }
        };

        // Phases: select, acquire, forward, and retry on another backend when that is safe
        // (see below).
        let group = &routing.groups[route];

        // Phase: model. On a route whose backends declare models, the request's model picks
        // the backends that may serve it.
        let mut model_excluded: &[usize] = &[];
        if let Some(table) = &members.models {
            if model_list {
                return Ok(Reply::Local {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: self.model_list(members),
                });
            }
            if let Some(model) = model {
                let rules = &routing.config.routes[route].versions;
                let id = if rules.is_empty() {
                    std::borrow::Cow::Borrowed(model.as_str())
                } else {
                    let now = self.shared.clock.ms_at(coarse_now());
                    let draw = self.rng.borrow_mut().next_u64();
                    choose_version(
                        rules,
                        table,
                        &model,
                        |m| members.states[m].is_available(now),
                        draw,
                    )
                };
                model_excluded = match table.excluded(&id) {
                    Some(excluded) => excluded,
                    None => {
                        return Err(ProxyError::UnknownModel {
                            served: self.served_models(members),
                            model,
                        })
                    }
                };
            }
        }
        // Phase: token budgets: the estimate reserved, before any backend is touched.
        if routing.budgets.guards_route(route) {
            budget::admit(
                &self.shared,
                routing,
                route,
                &parts,
                &mut body,
                ctx,
                exchange,
            )
            .await?;
        }
        let mut combined: Vec<usize> = Vec::new();
        let mut explained: Option<Box<str>> = None;

        // Phase: prompt, for prefix-cache affinity: the prompt's block hashes.
        let chain = if group.wants_prompt {
            prompt_chain(&mut body).await?
        } else {
            Vec::new()
        };

        let key = match &group.hash_key {
            Some(HashKey::Json(path)) => json_key(&mut body, path).await?,
            Some(k) => affinity_key(k, &parts.headers, ctx),
            None => None,
        };
        // Phase: mirror, a sampled copy to another route's group (see `mirror`).
        if let (Some(m), Some(target)) = (
            &routing.config.routes[route].traffic.mirror,
            routing.mirror_targets[route],
        ) {
            if upgrade.is_none() {
                mirror::maybe_mirror(
                    &exchange.worker,
                    &membership,
                    m,
                    target,
                    &parts,
                    &mut body,
                    missing_host,
                )
                .await?;
            }
        }

        // A retry on another backend is safe when nothing was sent (a failed connect), or
        // when the whole request can be sent again (no body, or all of it read ahead) and
        // either the method is idempotent (the exchange failed) or the backend refused with
        // 503/429 before any of its body reached the client. At most `retries` other backends,
        // within the retry budget.
        let resendable = body.rest_is_end();
        // A gRPC call's deadline bounds the wait for the response head, and the backend is
        // told what is left of it.
        let server_timeout = routing.config.server.upstream_response_timeout;
        let grpc_deadline = if exchange.grpc {
            grpc::timeout(&parts.headers)
        } else {
            None
        };
        let max_tries = (routing.config.server.retries as usize).min(MAX_RETRIES);
        self.earn_retry_token(routing.config.server.retry_budget);
        let mut excluded = [usize::MAX; MAX_RETRIES];
        let mut tried = 0;
        let mut last_err: Option<ProxyError> = None;
        let mut held: Option<Answer> = None;
        loop {
            let pick = {
                let exclude: &[usize] = if model_excluded.is_empty() {
                    &excluded[..tried]
                } else {
                    combined.clear();
                    combined.extend_from_slice(model_excluded);
                    combined.extend_from_slice(&excluded[..tried]);
                    &combined
                };
                let ctx = PickContext {
                    now_ms: self.shared.clock.ms_at(coarse_now()),
                    exclude,
                    key,
                    prefix: &chain,
                };
                let mut balancers = self.balancers.borrow_mut();
                let pick = balancers[route].pick(&members.states, &ctx);
                if let Some(n) = balancers[route].index_len() {
                    self.stats.routes[stat]
                        .prefix_index_entries
                        .store(n as u64, std::sync::atomic::Ordering::Relaxed);
                }
                if let (Some(m), true) = (pick, group.explain) {
                    explained = Some(
                        format!(
                            "backend={}; balancer={}; {}",
                            members.backends[m].name(),
                            balancers[route].name(),
                            balancers[route].explain(&members.states, m, &ctx)
                        )
                        .into_boxed_str(),
                    );
                }
                pick
            };
            let Some(member) = pick else {
                if let Some(answer) = held {
                    return Ok(Reply::Upstream(answer));
                }
                return Err(last_err.unwrap_or_else(|| ProxyError::NoHealthyBackend {
                    route: routing.config.routes[route].name.clone(),
                }));
            };
            let backend = &members.backends[member];
            exchange.backend = Some(backend.slot);
            if missing_host {
                parts.headers.insert(header::HOST, backend.host.clone());
            }
            let response_timeout = match grpc_deadline {
                None => server_timeout,
                Some(deadline) => {
                    let left = deadline.saturating_sub(exchange.start.elapsed());
                    if left.is_zero() {
                        return Err(ProxyError::ResponseTimeout {
                            backend: backend.name().to_string(),
                            after: deadline,
                        });
                    }
                    parts
                        .headers
                        .insert(&grpc::GRPC_TIMEOUT, grpc::encode_timeout(left));
                    left.min(server_timeout)
                }
            };
            let forwarded = self
                .forward(
                    backend,
                    members,
                    &parts,
                    &mut body,
                    exchange,
                    group.tracks_latency,
                    response_timeout,
                )
                .await;
            match forwarded {
                Ok(mut answer) => {
                    answer.explained = explained.take();
                    let refused = answer.head.status == StatusCode::SERVICE_UNAVAILABLE
                        || answer.head.status == StatusCode::TOO_MANY_REQUESTS;
                    if refused && resendable && tried < max_tries && self.may_retry() {
                        excluded[tried] = member;
                        tried += 1;
                        held = Some(answer); // answered if no other backend can be tried
                        continue;
                    }
                    if answer.head.status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
                        if let (Via::Http1(conn), Some(u)) = (answer.via, upgrade.take()) {
                            return Ok(Reply::Upgrade(answer.head, conn, u));
                        }
                        return Err(ProxyError::BadRequest("switching protocols over HTTP/2"));
                    }
                    return Ok(Reply::Upstream(answer));
                }
                Err(e) => {
                    let safe = e.is_retryable()
                        || (resendable
                            && parts.method.is_idempotent()
                            && matches!(e, ProxyError::Upstream { .. }));
                    if safe && tried < max_tries && self.may_retry() {
                        excluded[tried] = member;
                        tried += 1;
                        last_err = Some(e);
                        continue;
                    }
                    return match held {
                        Some(answer) => Ok(Reply::Upstream(answer)),
                        None => Err(e),
                    };
                }
            }
        }
    }

    /// Sends the request to `backend` on a pooled or new connection and reads the response
    /// head. A connect failure comes back retryable (nothing was sent); a reused connection
    /// that the backend closed under the request is replaced by a new one when the request can
    /// safely be sent again (see [`crate::upstream::conn::Failure::may_resend`]).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        backend: &Backend,
        members: &Members,
        parts: &Parts,
        body: &mut RequestBody,
        exchange: &mut Exchange,
        tracks_latency: bool,
        timeout: std::time::Duration,
    ) -> Result<Answer, ProxyError> {
        if backend.config.protocol == BackendProtocol::H2c {
            return self
                .forward_h2(
                    backend,
                    members,
                    parts,
                    body,
                    exchange,
                    tracks_latency,
                    timeout,
                )
                .await;
        }
        let state = &backend.state;
        let bstats = &self.stats.backends[backend.slot];
        let mut pooled = self.pool.take(backend.slot);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(c) => c,
                None => match self.connect(backend).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.stats.backends[backend.slot].errors.bump(1);
                        let cause = e.cause().unwrap_or(Cause::ConnectFailed);
                        self.backend_failed(backend, members, cause, &e);
                        return Err(e);
                    }
                },
            };
            bstats.requests.bump(1);
            if reused {
                bstats.conns_reused.bump(1);
            }
            exchange.in_flight = Some(state.start_request());
            let name = || backend.name().to_string();
            let result = conn.exchange(parts, body, timeout, &self.deadlines).await;
            match result {
                Ok(head) => {
                    self.observe_head(backend, members, &head, exchange, tracks_latency);
                    return Ok(Answer {
                        backend: backend.slot,
                        generation: backend.generation,
                        via: Via::Http1(conn),
                        head,
                        explained: None,
                    });
                }
                Err(f) => {
                    exchange.in_flight = None;
                    if reused && f.may_resend(&parts.method) {
                        continue; // stale keep-alive connection: once more on a new one
                    }
                    if let UpstreamError::ClientBody(_) = f.error {
                        // The client went away mid-upload: not the backend's fault.
                        return Err(ProxyError::ClientAborted);
                    }
                    bstats.errors.bump(1);
                    self.backend_failed(backend, members, f.error.cause(), &f.error);
                    return Err(match f.error {
                        UpstreamError::Timeout(after) => ProxyError::ResponseTimeout {
                            backend: name(),
                            after,
                        },
                        source => ProxyError::Upstream {
                            backend: name(),
                            source,
                        },
                    });
                }
            }
        }
    }

    /// Records a backend's response head: its latency, and whether it counts as a failure
    /// (outlier ejection) or a refusal (a penalty for latency-tracking balancers).
    fn observe_head(
        &self,
        backend: &Backend,
        members: &Members,
        head: &ResponseHead,
        exchange: &Exchange,
        tracks_latency: bool,
    ) {
        let state = &backend.state;
        let micros = exchange.start.elapsed().as_micros() as u64;
        self.stats.backends[backend.slot].latency.record(micros);
        state.observe_latency_us(micros);
        if outlier::is_failure_status(head.status.as_u16()) {
            let cause = Cause::Status(head.status.as_u16());
            self.backend_failed(backend, members, cause, &head.status);
        } else {
            backend.outlier.success();
        }
        if tracks_latency {
            let now_ms = self.shared.clock.ms_at(coarse_now());
            state.observe_peak_latency_us(micros, now_ms);
            if head.status == StatusCode::TOO_MANY_REQUESTS
                || head.status == StatusCode::SERVICE_UNAVAILABLE
            {
                state.penalize_until(now_ms + retry_after_ms(&head.headers));
            }
        }
    }

    async fn connect(&self, backend: &Backend) -> Result<Box<UpstreamConn>, ProxyError> {
        let connect_timeout = self.server_setting(|s| s.upstream_connect_timeout);
        let name = || backend.name().to_string();
        match UpstreamConn::connect(backend.addr, connect_timeout, backend.tls.as_deref()).await {
            Err(()) => Err(ProxyError::ConnectTimeout {
                backend: name(),
                after: connect_timeout,
            }),
            Ok(Err(source)) => Err(ProxyError::Connect {
                backend: name(),
                source,
            }),
            Ok(Ok(conn)) => {
                self.stats.backends[backend.slot].conns_opened.bump(1);
                Ok(conn)
            }
        }
    }

    /// Writes a request's audit line into the next batch, sending the batch when it is full.
    pub(crate) fn audit_line(&self, line: &crate::audit::RequestLine, end: crate::audit::Ending) {
        let mut pending = self.audit_pending.borrow_mut();
        pending.add(line, end);
        if pending.full() {
            self.shared.audit.requests(pending.take());
        }
    }

    /// Sends the audit lines gathered so far (on the reactor's tick, and at shutdown).
    pub(crate) fn flush_audit(&self) {
        let mut pending = self.audit_pending.borrow_mut();
        if pending.lines() > 0 {
            self.shared.audit.requests(pending.take());
        }
    }

    /// Returns a connection to the pool, unless its backend's slot has since changed hands.
    pub(crate) fn pool_put(&self, slot: usize, generation: u64, conn: Box<UpstreamConn>) {
        let current = self.membership.borrow();
        if current
            .slots
            .get(slot)
            .and_then(|b| b.as_ref())
            .map(|b| b.generation)
            == Some(generation)
        {
            self.pool.put(slot, conn);
        }
    }

    /// Each request earns `retry_budget` percent of a retry token, up to [`RETRY_BURST`].
    fn earn_retry_token(&self, retry_budget: u32) {
        let earned = f64::from(retry_budget) / 100.0;
        self.retry_tokens
            .set((self.retry_tokens.get() + earned).min(RETRY_BURST));
    }

    /// Spends a retry token if there is one, so that retries stay within the budget even when
    /// a whole fleet fails (a failing fleet is not hammered with retries).
    fn may_retry(&self) -> bool {
        let t = self.retry_tokens.get();
        if t >= 1.0 {
            self.retry_tokens.set(t - 1.0);
            self.stats.retries.bump(1);
            true
        } else {
            false
        }
    }

    /// The models the group's healthy backends serve.
    fn served_models(&self, members: &Members) -> Vec<String> {
        let now = self.shared.clock.ms_at(coarse_now());
        members
            .models
            .as_ref()
            .map(|t| t.served(|m| members.states[m].is_available(now)))
            .unwrap_or_default()
    }

    /// `GET /v1/models` answered by the proxy: the union of the healthy backends' models, in
    /// OpenAI's list format.
    fn model_list(&self, members: &Members) -> Bytes {
        let data: Vec<serde_json::Value> = self
            .served_models(members)
            .into_iter()
            .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard"}))
            .collect();
        Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string())
    }

    /// A failed exchange with `backend` (refused or timed-out connection, timeout, reset,
    /// 500/502/504): counts towards its ejection from rotation (see
    /// [`switchyard_balance::outlier`]), within the share of `members` that may be out at once;
    /// `cause` and `why` go into its last errors (`/admin/diagnose`).
    fn backend_failed(
        &self,
        backend: &Backend,
        members: &Members,
        cause: Cause,
        why: &dyn std::fmt::Display,
    ) {
        if let Some(log) = self.shared.upstream_errors.get(backend.slot) {
            log.record(backend.generation, cause, why);
        }
        let policy = self.server_setting(|cfg| outlier::Policy {
            threshold: cfg.fail_threshold,
            base_ms: cfg.fail_timeout.as_millis() as u64,
            max_ms: cfg.fail_timeout_max.as_millis() as u64,
            max_percent: cfg.max_ejected_percent,
        });
        let now = self.shared.clock.now_ms();
        let out = || {
            members
                .states
                .iter()
                .filter(|s| !Arc::ptr_eq(s, &backend.state) && !s.is_available(now))
                .count()
        };
        match backend
            .outlier
            .failure(&policy, now, members.backends.len(), out)
        {
            outlier::Verdict::Eject { until_ms, nth } => {
                backend.state.mark_down_until(until_ms);
                tracing::warn!(
                    backend = %backend.name(),
                    last_error = %why,
                    ejection = nth,
                    out_for_ms = until_ms.saturating_sub(now),
                    "backend ejected after {} consecutive failures",
                    policy.threshold
                );
            }
            outlier::Verdict::Spared => tracing::debug!(
                backend = %backend.name(),
                "backend not ejected: max_ejected_percent of its group is out already"
            ),
            outlier::Verdict::Keep => {}
        }
    }
}

/// How long a backend that answered 429/503 asks to be left alone: its `Retry-After` in seconds
/// (an HTTP date, or none, counts as one second), at most five minutes.
fn retry_after_ms(headers: &http::HeaderMap) -> u64 {
    const DEFAULT_MS: u64 = 1_000;
    const MAX_MS: u64 = 300_000;
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_MS, |s| s.saturating_mul(1_000).min(MAX_MS))
}

/// Whether `Transfer-Encoding` lists `chunked` more than once, over all its fields.
fn chunked_twice(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count()
        > 1
}

/// Most other backends a request is ever tried on (the cap on `retries`).
pub const MAX_RETRIES: usize = 5;
/// Retry tokens a reactor thread can save up (allows a burst of retries after a quiet spell).
pub const RETRY_BURST: f64 = 10.0;
