//! The HTTP/1.1 request path, in phases: check framing, route, select a backend, acquire a
//! pooled connection, forward, stream the response back.
//!
//! A [`Worker`] is one reactor thread's view of the server: the shared, immutable parts
//! (routes, backend states) plus what the thread owns alone (its balancer instances, its
//! connection pool, its counters). Nothing here takes a lock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use switchyard_balance::{Balancer, PickContext};
use tokio::net::TcpStream;

use super::body::{Exchange, ProxyBody, RequestBody};
use super::error::ProxyError;
use super::headers;
use crate::clock::coarse_now;
use crate::net::conn::ConnCtx;
use crate::observe::ThreadStats;
use crate::server::Shared;
use crate::upstream::pool::{Pool, Sender};

/// One reactor thread's state.
pub struct Worker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<ThreadStats>,
    pub(crate) pool: Pool,
    balancers: RefCell<Vec<Box<dyn Balancer>>>,
    client: hyper::client::conn::http1::Builder,
    pub(crate) http1: hyper::server::conn::http1::Builder,
}

/// Which backend served, on which connection, for the response path.
struct Upstream {
    backend: usize,
    sender: Sender,
    response: Response<Incoming>,
}

impl Worker {
    /// The state of reactor thread `index`.
    pub fn new(shared: Arc<Shared>, index: usize) -> Self {
        let cfg = &shared.config.server;
        let seed = 0x5EED_u64 ^ ((index as u64 + 1) << 32);
        let balancers = shared
            .config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                switchyard_balance::build(&r.balancer, seed.wrapping_add(i as u64))
                    .expect("balancer names are validated with the config")
            })
            .collect();
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.max_header_size(cfg.max_header_bytes);
        if cfg.max_headers != 100 {
            http1.max_headers(cfg.max_headers);
        }
        Worker {
            stats: shared.stats.thread(index),
            pool: Pool::new(
                shared.backends.len(),
                cfg.upstream_keepalive,
                cfg.upstream_keepalive_timeout,
            ),
            balancers: RefCell::new(balancers),
            client: hyper::client::conn::http1::Builder::new(),
            http1,
            shared,
        }
    }

    /// Handles one request from a client connection; never fails (errors become responses).
    pub async fn handle(
        self: Rc<Self>,
        ctx: Rc<ConnCtx>,
        req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        self.stats.requests.fetch_add(1, Relaxed);
        ctx.begin_request();
        let mut exchange = Exchange {
            worker: Rc::clone(&self),
            ctx: Rc::clone(&ctx),
            route: None,
            start,
            in_flight: None,
        };
        match self.proxy(req, &ctx, &mut exchange).await {
            Ok(up) => {
                let (mut parts, body) = up.response.into_parts();
                headers::to_downstream(&mut parts.headers);
                self.stats.response(exchange.route, parts.status.as_u16());
                let body = ProxyBody::upstream(body, (up.backend, up.sender), exchange);
                Response::from_parts(parts, body)
            }
            Err(e) => self.error_response(e, exchange),
        }
    }

    fn error_response(&self, e: ProxyError, exchange: Exchange) -> Response<ProxyBody> {
        let status = e.status();
        self.stats.error(e.kind());
        self.stats.response(exchange.route, status.as_u16());
        if let Some(r) = exchange.route.and_then(|r| self.stats.routes.get(r)) {
            r.errors.fetch_add(1, Relaxed);
        }
        if !matches!(e, ProxyError::NoRoute | ProxyError::BadRequest(_)) {
            tracing::debug!(error = %e, "request failed");
        }
        let close = matches!(e, ProxyError::BadRequest(_));
        let mut resp = Response::new(ProxyBody::full(
            Bytes::from_static(e.body().as_bytes()),
            exchange,
        ));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            "x-switchyard-error",
            HeaderValue::from_static(e.kind().name()),
        );
        if close {
            // The framing of whatever follows on this connection cannot be trusted.
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    async fn proxy(
        &self,
        req: Request<Incoming>,
        ctx: &Rc<ConnCtx>,
        exchange: &mut Exchange,
    ) -> Result<Upstream, ProxyError> {
        // Phase: framing. A head with both Content-Length and Transfer-Encoding is refused.
        if ctx.take_ambiguous_framing() {
            return Err(ProxyError::BadRequest(
                "both Content-Length and Transfer-Encoding",
            ));
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

        // Phase: route.
        let route = self
            .shared
            .router
            .find(host, req.uri().path())
            .ok_or(ProxyError::NoRoute)?;
        exchange.route = Some(route);
        self.stats.routes[route].requests.fetch_add(1, Relaxed);

        // Phase: rewrite for the backend.
        let (mut parts, body) = req.into_parts();
        headers::to_upstream(&mut parts.headers, &ctx.client_ip, "http");
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
        parts.version = Version::HTTP_11;
        let mut req = Request::from_parts(
            parts,
            RequestBody::new(body, Rc::clone(ctx), exchange.start),
        );

        // Phases: select, acquire, forward. A failed connect (nothing sent) is retried once
        // on another backend of the route.
        let group = &self.shared.groups[route];
        let mut excluded = [usize::MAX; 1];
        let mut tried = 0;
        let mut last_err: Option<ProxyError> = None;
        loop {
            let pick = {
                let ctx = PickContext {
                    now_ms: self.shared.clock.ms_at(coarse_now()),
                    exclude: &excluded[..tried],
                };
                self.balancers.borrow_mut()[route].pick(&group.states, &ctx)
            };
            let Some(member) = pick else {
                return Err(last_err.unwrap_or_else(|| ProxyError::NoHealthyBackend {
                    route: self.shared.config.routes[route].name.clone(),
                }));
            };
            let backend = group.indices[member];
            if missing_host {
                req.headers_mut()
                    .insert(header::HOST, self.shared.host_headers[backend].clone());
            }
            match self.forward(backend, req, ctx, exchange).await {
                Ok(up) => return Ok(up),
                Err((e, Some(back))) if e.is_retryable() && tried < excluded.len() => {
                    excluded[tried] = member;
                    tried += 1;
                    req = back;
                    last_err = Some(e);
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Sends `req` to `backend` on a pooled or new connection. On failure, the request is
    /// handed back when none of it was sent.
    async fn forward(
        &self,
        backend: usize,
        mut req: Request<RequestBody>,
        ctx: &Rc<ConnCtx>,
        exchange: &mut Exchange,
    ) -> Result<Upstream, (ProxyError, Option<Request<RequestBody>>)> {
        let state = &self.shared.backends[backend];
        let bstats = &self.stats.backends[backend];
        // A pooled connection may have been closed by the backend meanwhile; then one fresh
        // connection is tried, since nothing was sent.
        let mut pooled = self.take_pooled(backend).await;
        loop {
            let reused = pooled.is_some();
            let mut idle_for = Duration::ZERO;
            let mut sender = match pooled.take() {
                Some((s, idle)) => {
                    idle_for = idle;
                    s
                }
                None => match self.connect(backend).await {
                    Ok(s) => s,
                    Err(e) => {
                        self.connect_failed(backend, &e);
                        return Err((e, Some(req)));
                    }
                },
            };
            bstats.requests.fetch_add(1, Relaxed);
            if reused {
                bstats.conns_reused.fetch_add(1, Relaxed);
            }
            // On a reused connection the backend may close just as the request goes out,
            // because its own keep-alive timeout fired. A request without a body whose method is
            // idempotent is then safe to send again on a new connection, so its head is kept
            // until the answer. Backends' idle timeouts are seconds long, so a connection idle
            // for less than RETRY_AFTER_IDLE cannot be in that race and needs no copy: a busy
            // proxy pays nothing for this.
            let retry_copy = if reused
                && idle_for >= RETRY_AFTER_IDLE
                && req.body().is_end_stream()
                && req.method().is_idempotent()
            {
                Some(head_copy(&req))
            } else {
                None
            };
            exchange.in_flight = Some(state.start_request());
            match self
                .send(&mut sender, req, backend, ctx, exchange.start)
                .await
            {
                Ok(response) => {
                    let micros = exchange.start.elapsed().as_micros() as u64;
                    bstats.latency.record(micros);
                    state.observe_latency_us(micros);
                    state.record_success();
                    return Ok(Upstream {
                        backend,
                        sender,
                        response,
                    });
                }
                Err((e, back)) => {
                    exchange.in_flight = None;
                    req = match (back, retry_copy) {
                        // Stale keep-alive connection, nothing sent: retry on a new one.
                        (Some(back), _) if reused => back,
                        // Closed as the request went out: safe to send again (see above).
                        (None, Some(copy)) if is_stale_close(&e) => rebuild(copy, ctx),
                        (back, _) => {
                            bstats.errors.fetch_add(1, Relaxed);
                            return Err((e, back));
                        }
                    };
                }
            }
        }
    }

    async fn take_pooled(&self, backend: usize) -> Option<(Sender, Duration)> {
        while let Some((mut s, idle)) = self.pool.take(backend) {
            if s.ready().await.is_ok() {
                return Some((s, idle));
            }
        }
        None
    }

    async fn connect(&self, backend: usize) -> Result<Sender, ProxyError> {
        let cfg = &self.shared.config.server;
        let name = || self.shared.config.backends[backend].name.clone();
        let addr = self.shared.addrs[backend];
        let stream = match tokio::time::timeout(
            cfg.upstream_connect_timeout,
            TcpStream::connect(addr),
        )
        .await
        {
            Err(_) => {
                return Err(ProxyError::ConnectTimeout {
                    backend: name(),
                    after: cfg.upstream_connect_timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(ProxyError::Connect {
                    backend: name(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = self
            .client
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|source| ProxyError::Upstream {
                backend: name(),
                source,
            })?;
        tokio::task::spawn_local(async move {
            let _ = conn.await;
        });
        self.stats.backends[backend]
            .conns_opened
            .fetch_add(1, Relaxed);
        Ok(sender)
    }

    fn connect_failed(&self, backend: usize, e: &ProxyError) {
        let cfg = &self.shared.config.server;
        self.stats.backends[backend].errors.fetch_add(1, Relaxed);
        let marked_down = self.shared.backends[backend].record_connect_failure(
            self.shared.clock.now_ms(),
            cfg.fail_threshold,
            cfg.fail_timeout.as_millis() as u64,
        );
        if marked_down {
            tracing::warn!(
                backend = %self.shared.config.backends[backend].name,
                error = %e,
                down_for = ?cfg.fail_timeout,
                "backend marked down after {} consecutive connect failures",
                cfg.fail_threshold
            );
        }
    }

    /// Sends on `sender` and waits for the response headers. The response timeout runs from
    /// the moment the request body has been fully sent (a large upload is not a slow backend).
    async fn send(
        &self,
        sender: &mut Sender,
        req: Request<RequestBody>,
        backend: usize,
        ctx: &ConnCtx,
        start: Instant,
    ) -> Result<Response<Incoming>, (ProxyError, Option<Request<RequestBody>>)> {
        let timeout = self.shared.config.server.upstream_response_timeout;
        let fut = sender.try_send_request(req);
        tokio::pin!(fut);
        let mut deadline = tokio::time::Instant::from_std(start) + timeout;
        loop {
            tokio::select! {
                biased;
                r = &mut fut => {
                    return r.map_err(|mut e| {
                        let back = e.take_message();
                        let backend = self.shared.config.backends[backend].name.clone();
                        (ProxyError::Upstream { backend, source: e.into_error() }, back)
                    });
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = tokio::time::Instant::now();
                    match ctx.request_body_done_at() {
                        Some(done) if tokio::time::Instant::from_std(done) + timeout <= now => {
                            let backend = self.shared.config.backends[backend].name.clone();
                            return Err((ProxyError::ResponseTimeout { backend, after: timeout }, None));
                        }
                        Some(done) => deadline = tokio::time::Instant::from_std(done) + timeout,
                        None => deadline = now + timeout,
                    }
                }
            }
        }
    }
}

/// How long a pooled connection must have been idle before a request sent on it keeps a copy
/// of its head for a retry (see `Worker::forward`).
const RETRY_AFTER_IDLE: Duration = Duration::from_millis(500);

/// The head of a request without a body, kept to send it again.
fn head_copy(req: &Request<RequestBody>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

fn rebuild(copy: Request<()>, ctx: &Rc<ConnCtx>) -> Request<RequestBody> {
    let (parts, ()) = copy.into_parts();
    Request::from_parts(parts, RequestBody::empty(Rc::clone(ctx)))
}

/// Whether a send failed because the backend closed the connection without answering.
fn is_stale_close(e: &ProxyError) -> bool {
    matches!(e, ProxyError::Upstream { source, .. } if source.is_incomplete_message() || source.is_closed() || source.is_canceled())
}
