//! What the client receives: the backend's body streamed frame by frame, or a short
//! proxy-generated one.
//!
//! [`ProxyBody`] carries the [`Exchange`] guard, whose drop ends the exchange's bookkeeping
//! (in-flight counts, latency, the connection's idle clock). The backend's body is read from
//! the upstream socket as hyper pulls it towards the client, so a slow client slows the reads
//! (backpressure, bounded memory). When the body's last byte has been decoded the upstream
//! connection goes back to the pool at once.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use switchyard_balance::InFlight;

use super::proxy::Worker;
use crate::net::conn::ConnCtx;
use crate::observe::ErrorKind;
use crate::upstream::codec::BodyDecoder;
use crate::upstream::conn::{UpstreamConn, UpstreamError};

/// A request body on its way to a backend: bytes already read from the client (to find the
/// model, say), then the rest as it arrives.
pub struct RequestBody {
    /// Read ahead of forwarding; sent first (and again if the request is resent).
    pub prefix: Option<Bytes>,
    /// The rest of the client's body; `None` once it has been handed to an HTTP/2 backend's
    /// stream.
    pub rest: Option<hyper::body::Incoming>,
    /// Counts the body bytes read from the client, when a plugin wants to know.
    pub meter: Option<std::rc::Rc<std::cell::Cell<u64>>>,
}

impl RequestBody {
    /// Whether there is no body left to send.
    pub fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest_is_end()
    }

    /// Whether nothing is left of the client's body beyond what was read ahead.
    pub fn rest_is_end(&self) -> bool {
        self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    /// The next frame of the client's body (`None` at its end).
    pub async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, hyper::Error>> {
        let frame = match self.rest.as_mut() {
            Some(rest) => http_body_util::BodyExt::frame(rest).await,
            None => None,
        };
        if let (Some(m), Some(Ok(f))) = (&self.meter, &frame) {
            m.set(m.get() + f.data_ref().map_or(0, |d| d.len() as u64));
        }
        frame
    }
}

/// The bookkeeping of one request/response exchange, ended when dropped (when the response
/// body has been sent, or abandoned because the client went away).
pub struct Exchange {
    pub(crate) worker: Rc<Worker>,
    pub(crate) ctx: Arc<ConnCtx>,
    pub(crate) route: Option<usize>,
    /// The route's counter slot (see [`crate::routing::Routing::stat_slots`]).
    pub(crate) stat: Option<usize>,
    /// The slot of the backend last tried (the one that answered, when one did).
    pub(crate) backend: Option<usize>,
    /// The directory snapshot (members and routing) the request was routed with, kept to
    /// the end of the exchange (a reload meanwhile does not touch it).
    #[allow(clippy::redundant_allocation)]
    pub(crate) snapshot: Option<std::rc::Rc<Arc<crate::upstream::directory::Membership>>>,
    pub(crate) start: Instant,
    pub(crate) in_flight: Option<InFlight>,
    /// Whether the request is a gRPC call (errors are then reported as gRPC statuses).
    pub(crate) grpc: bool,
    /// The request's audit line, when it gets one; sent when the exchange ends.
    pub(crate) audit: Option<Box<crate::audit::RequestLine>>,
    /// The tightest `[limit NAME]`'s figures, when one applied (`x-ratelimit-*-requests`).
    pub(crate) requests: Option<crate::security::Allowance>,
    /// The `[budget NAME]` reservations, settled once when the exchange ends.
    pub(crate) budget: Option<Box<crate::security::Settlement>>,
    /// What the route's plugins are told when the exchange ends, when one of them asks.
    pub(crate) meter: Option<Box<super::proxy::Meter>>,
    /// The model the request named, on routes with plugins (their response and completion
    /// phases read it).
    pub(crate) plugin_model: Option<Box<str>>,
    /// The cache's plan for the request, until the backend's answer comes.
    pub(crate) cache: Option<Box<crate::traffic::cache::Plan>>,
    /// The backend's answer being copied for the cache.
    pub(crate) fill: Option<Box<crate::traffic::cache::Fill>>,
}

impl Exchange {
    /// The rewrite rules of the exchange's route when they change responses (an `Arc` clone;
    /// nothing for a route without such rules).
    pub(crate) fn response_rewrite(&self) -> Option<Arc<crate::traffic::Rewrite>> {
        let rules = self.snapshot.as_ref()?.routing.rewrites[self.route?].as_ref()?;
        rules.has_response_rules().then(|| Arc::clone(rules))
    }

    /// The route's plugins, when it has any (an `Arc` clone).
    pub(crate) fn plugins(&self) -> Option<crate::plugin::Chain> {
        let chain = &self.snapshot.as_ref()?.routing.plugins.routes[self.route?];
        (!chain.is_empty()).then(|| Arc::clone(chain))
    }

    /// Records something on the audit line, if the request has one.
    pub(crate) fn audit(&mut self, f: impl FnOnce(&mut crate::audit::RequestLine)) {
        if let Some(l) = self.audit.as_deref_mut() {
            f(l);
        }
    }

    /// Settles the budgets' reservations on what the response said (once).
    pub(crate) fn settle_budget(&mut self) {
        if let (Some(mut s), Some(m)) = (self.budget.take(), self.snapshot.as_ref()) {
            let now = self.worker.shared.clock.ms_at(crate::clock::coarse_now());
            m.routing.budgets.settle(now, &mut s);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.settle_budget();
        let now = Instant::now();
        if let Some(l) = self.audit.take() {
            let routes = self.snapshot.as_ref().map(|m| &m.routing.config.routes);
            let end = crate::audit::Ending {
                client: self.ctx.client_ip.as_bytes(),
                route: self
                    .route
                    .and_then(|r| routes?.get(r))
                    .map(|r| r.name.as_str()),
                duration: now.saturating_duration_since(self.start),
            };
            self.worker.audit_line(&l, end);
        }
        let micros = now.saturating_duration_since(self.start).as_micros() as u64;
        if let Some(r) = self.stat.and_then(|r| self.worker.stats.routes.get(r)) {
            r.latency.record(micros);
        }
        if let Some(m) = self.meter.take() {
            for _ in 0..m.complete(micros, self.plugin_model.as_deref()) {
                self.worker.stats.error(ErrorKind::PluginFailed);
            }
        }
        self.ctx.end_request(now);
    }
}

/// The backend's side of a response body.
pub struct Upstream {
    /// The connection, until the body ends (then pooled) or fails (then closed).
    pub conn: Option<Box<UpstreamConn>>,
    /// Its backend's slot.
    pub backend: usize,
    /// Its backend's generation (whether the slot still holds the same backend).
    pub generation: u64,
    /// How the body is delimited, and how much is left.
    pub decoder: BodyDecoder,
    /// Whether the backend allows another exchange on the connection.
    pub keep_alive: bool,
    /// A failure held back for one poll, so hyper first flushes what it already has.
    pub failed: Option<UpstreamError>,
}

enum Kind {
    Upstream(Upstream),
    H2 {
        body: hyper::body::Incoming,
        /// A failure held back for one poll (see [`ProxyBody::fail`]).
        failed: Option<UpstreamError>,
        /// Whether the last frame was passed on.
        ended: bool,
    },
    Full(Option<Bytes>),
}

/// The response body sent to the client.
pub struct ProxyBody {
    kind: Kind,
    exchange: Exchange,
}

impl ProxyBody {
    /// The backend's body.
    pub fn upstream(upstream: Upstream, exchange: Exchange) -> Self {
        let mut body = ProxyBody {
            kind: Kind::Upstream(upstream),
            exchange,
        };
        body.release_if_done();
        body
    }

    /// No body at all (the response ends with its head).
    pub fn empty(exchange: Exchange) -> Self {
        ProxyBody {
            kind: Kind::Full(None),
            exchange,
        }
    }

    /// A stream of an HTTP/2 backend's response, passed frame by frame (trailers too). A gRPC
    /// call whose stream fails midway ends with `grpc-status` 14 (UNAVAILABLE) trailers,
    /// which the client reports as such, rather than with a reset stream.
    pub fn h2(body: hyper::body::Incoming, exchange: Exchange) -> Self {
        ProxyBody {
            kind: Kind::H2 {
                body,
                failed: None,
                ended: false,
            },
            exchange,
        }
    }

    /// A short body generated by the proxy.
    pub fn full(bytes: Bytes, exchange: Exchange) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes)),
            exchange,
        }
    }

    /// Returns the connection to the pool once the body is complete and the connection clean.
    fn release_if_done(&mut self) {
        if let Kind::Upstream(up) = &mut self.kind {
            if up.decoder.is_done() {
                if let Some(conn) = up.conn.take() {
                    if up.keep_alive && conn.intact && conn.buf.is_empty() {
                        self.exchange
                            .worker
                            .pool_put(up.backend, up.generation, conn);
                    }
                }
            }
        }
    }

    /// Ends the body with an error. The error is held back for one poll: hyper flushes the
    /// bytes it has buffered (the head, the data so far) when the body is pending, and would
    /// drop them if the error came at once, leaving the client without even the status.
    fn fail(
        &mut self,
        e: UpstreamError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        if let Kind::Upstream(up) = &mut self.kind {
            up.conn = None;
            up.failed = Some(e);
        }
        self.exchange.worker.stats.error(ErrorKind::UpstreamError);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl ProxyBody {
    fn poll_h2(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let grpc = self.exchange.grpc;
        let Kind::H2 {
            body,
            failed,
            ended,
        } = &mut self.kind
        else {
            return Poll::Ready(None);
        };
        if *ended {
            return Poll::Ready(None);
        }
        if let Some(e) = failed.take() {
            *ended = true;
            return Poll::Ready(Some(Err(e)));
        }
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                *ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    *ended = true;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.exchange.worker.stats.error(ErrorKind::UpstreamError);
                if grpc {
                    *ended = true;
                    let mut trailers = http::HeaderMap::new();
                    super::grpc::set_status(
                        &mut trailers,
                        super::grpc::Code::Unavailable,
                        &format!("backend stream failed: {e}"),
                    );
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                *failed = Some(UpstreamError::H2(e));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        let polled = this.poll_body(cx);
        if let Some(s) = this.exchange.budget.as_deref_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        s.feed(data);
                    }
                }
                Poll::Ready(None) => this.exchange.settle_budget(),
                _ => {}
            }
        }
        if this.exchange.fill.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.data_ref().map_or(&[][..], |d| &d[..]);
                    let fill = this.exchange.fill.as_deref_mut();
                    if !fill.is_some_and(|f| f.push(data)) {
                        this.exchange.fill = None;
                    }
                    this.settle_fill();
                }
                Poll::Ready(None) => this.settle_fill(),
                Poll::Ready(Some(Err(_))) => this.exchange.fill = None,
                Poll::Pending => {}
            }
        }
        if let (Some(m), Poll::Ready(Some(Ok(frame)))) =
            (this.exchange.meter.as_deref_mut(), &polled)
        {
            m.response_bytes += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        if this.exchange.audit.is_some() {
            if let Poll::Ready(Some(Ok(frame))) = &polled {
                let streamed = !matches!(this.kind, Kind::Full(_));
                let len = frame.data_ref().map_or(0, Bytes::len);
                let start = this.exchange.start;
                this.exchange.audit(|l| {
                    if streamed && len > 0 && l.ttft.is_none() {
                        l.ttft = Some(start.elapsed());
                    }
                    l.bytes += len as u64;
                });
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        self.hint()
    }
}

impl ProxyBody {
    /// Stores the answer being copied for the cache once the body has ended (hyper may not
    /// poll a body that says it has ended, an empty one say, so this is also called when the
    /// response is made).
    pub fn settle_fill(&mut self) {
        if self.exchange.fill.is_some() && self.is_end() {
            if let Some(fill) = self.exchange.fill.take() {
                let shared = &self.exchange.worker.shared;
                fill.finish(&shared.cache.store, shared.clock.now_ms());
            }
        }
    }

    /// Records the response status on the exchange's audit line.
    pub fn audit_status(&mut self, status: http::StatusCode) {
        if let Some(s) = self.exchange.budget.as_deref_mut() {
            s.set_status(status.as_u16());
        }
        self.exchange.audit(|l| l.status = status.as_u16());
        if let Some(m) = self.exchange.meter.as_deref_mut() {
            m.status = status;
        }
    }

    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self;
        loop {
            let up = match &mut this.kind {
                Kind::Full(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
                Kind::H2 { .. } => return this.poll_h2(cx),
                Kind::Upstream(up) => up,
            };
            let Some(conn) = up.conn.as_mut() else {
                return Poll::Ready(up.failed.take().map(Err));
            };
            match up.decoder.decode(&mut conn.buf) {
                Err(e) => return this.fail(e.into(), cx),
                Ok(Some(data)) => {
                    this.release_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if up.decoder.is_done() => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            match conn.poll_read_more(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if up.decoder.until_close() => {
                    up.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => return this.fail(UpstreamError::Closed, cx),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(UpstreamError::Io(e), cx),
            }
        }
    }

    fn is_end(&self) -> bool {
        match &self.kind {
            Kind::H2 {
                body,
                failed,
                ended,
            } => *ended || (failed.is_none() && Body::is_end_stream(body)),
            Kind::Upstream(up) => {
                up.decoder.is_done() || (up.conn.is_none() && up.failed.is_none())
            }
            Kind::Full(bytes) => bytes.is_none(),
        }
    }

    fn hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Upstream(up) => match up.decoder.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::H2 { body, .. } => body.size_hint(),
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
        }
    }
}
