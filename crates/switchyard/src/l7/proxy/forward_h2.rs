//! The forward phase for `protocol = h2c` backends: the request becomes a stream of this
//! thread's connection to the backend (opened on first use, replaced when it closes).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use http::request::Parts;
use http::Version;

use super::{Answer, Via, Worker};
use crate::clock::coarse_now;
use crate::l7::body::{Exchange, RequestBody};
use crate::l7::error::ProxyError;
use crate::observe::stats::Bump;
use crate::upstream::codec::{BodyFraming, ResponseHead};
use crate::upstream::conn::UpstreamError;
use crate::upstream::directory::{Backend, Members};
use crate::upstream::errlog::Cause;
use crate::upstream::h2::{self as up_h2, H2Body, H2Conns, Lookup, Sender};

impl Worker {
    /// Sends the request as a stream to `backend` and waits for the response head, at most
    /// `timeout` after the request body ended. A failed connect comes back retryable; a
    /// connection found closed as the request goes out is replaced once, when the request's
    /// body was not consumed.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn forward_h2(
        &self,
        backend: &Backend,
        members: &Members,
        parts: &Parts,
        body: &mut RequestBody,
        exchange: &mut Exchange,
        tracks_latency: bool,
        timeout: Duration,
    ) -> Result<Answer, ProxyError> {
        let bstats = &self.stats.backends[backend.slot];
        let mut resent = 0;
        loop {
            let (mut sender, reused) = match self.h2.lookup(backend.slot, backend.generation) {
                Lookup::Open(s) => (s, true),
                Lookup::Wait(opening) => {
                    opening.notified().await;
                    continue;
                }
                Lookup::Connect => (self.connect_h2(backend, members).await?, false),
            };
            bstats.requests.bump(1);
            if reused {
                bstats.conns_reused.bump(1);
            }
            exchange.in_flight = Some(backend.state.start_request());
            let h2_body = H2Body::from_request(body);
            let uploading = h2_body.end_flag();
            let streamed = uploading.is_some();
            let request = up_h2::request(parts, h2_body);
            match self
                .await_head(&mut sender, request, timeout, uploading)
                .await
            {
                Ok(Ok(response)) => {
                    let (head, incoming) = response.into_parts();
                    let head = ResponseHead {
                        status: head.status,
                        version: Version::HTTP_2,
                        headers: head.headers,
                        framing: BodyFraming::Chunked,
                        keep_alive: true,
                    };
                    self.observe_head(backend, members, &head, exchange, tracks_latency);
                    return Ok(Answer {
                        backend: backend.slot,
                        generation: backend.generation,
                        via: Via::H2(incoming),
                        head,
                        explained: None,
                    });
                }
                Ok(Err(e)) => {
                    exchange.in_flight = None;
                    let again = (reused && e.is_canceled()) || unprocessed(&e);
                    if again && !streamed && resent < MAX_RESENDS {
                        // The connection closed before the request left, or the backend
                        // declined the stream unprocessed (a graceful GOAWAY as it closes
                        // the connection, or REFUSED_STREAM): once more on a new one.
                        resent += 1;
                        self.h2.clear(backend.slot);
                        continue;
                    }
                    bstats.errors.bump(1);
                    self.backend_failed(backend, members, Cause::Http2, &e);
                    return Err(ProxyError::Upstream {
                        backend: backend.name().to_string(),
                        source: UpstreamError::H2(e),
                    });
                }
                Err(()) => {
                    exchange.in_flight = None;
                    bstats.errors.bump(1);
                    let e = UpstreamError::Timeout(timeout);
                    self.backend_failed(backend, members, Cause::ResponseTimeout, &e);
                    return Err(ProxyError::ResponseTimeout {
                        backend: backend.name().to_string(),
                        after: timeout,
                    });
                }
            }
        }
    }

    /// Sends `request` and waits for the response head, bounded by `timeout` once the
    /// client's body has ended: while a streamed body (`uploading`, a client-streaming call
    /// or a long upload) is still being sent, each period that passes starts another, so
    /// the wait ends no sooner than `timeout` after the body's last byte. `Err(())` is a
    /// timeout.
    async fn await_head(
        &self,
        sender: &mut Sender,
        request: http::Request<H2Body>,
        timeout: Duration,
        uploading: Option<Rc<Cell<bool>>>,
    ) -> Result<hyper::Result<http::Response<hyper::body::Incoming>>, ()> {
        let mut pending = std::pin::pin!(sender.send_request(request));
        loop {
            let deadline = coarse_now() + timeout;
            match self.deadlines.run(deadline, pending.as_mut()).await {
                Some(result) => return Ok(result),
                None if uploading.as_ref().is_some_and(|ended| !ended.get()) => continue,
                None => return Err(()),
            }
        }
    }

    /// This thread's connection to `backend`, opened now.
    async fn connect_h2(&self, backend: &Backend, members: &Members) -> Result<Sender, ProxyError> {
        let connect_timeout = self.server_setting(|s| s.upstream_connect_timeout);
        let name = || backend.name().to_string();
        // If this request goes away mid-connect, the requests waiting on it must not wait on.
        let opening = OpeningGuard {
            conns: &self.h2,
            slot: backend.slot,
        };
        let result = up_h2::connect(
            backend.addr,
            connect_timeout,
            backend.tls.as_deref(),
            &self.h2_client,
        )
        .await;
        let err = match result {
            Ok(sender) => {
                std::mem::forget(opening);
                self.stats.backends[backend.slot].conns_opened.bump(1);
                self.h2
                    .opened(backend.slot, backend.generation, sender.clone());
                return Ok(sender);
            }
            Err(up_h2::ConnectError::Timeout) => ProxyError::ConnectTimeout {
                backend: name(),
                after: connect_timeout,
            },
            Err(up_h2::ConnectError::Io(source)) => ProxyError::Connect {
                backend: name(),
                source,
            },
            Err(up_h2::ConnectError::Handshake(e)) => ProxyError::Connect {
                backend: name(),
                source: std::io::Error::other(format!("HTTP/2 handshake: {e}")),
            },
        };
        drop(opening);
        self.stats.backends[backend.slot].errors.bump(1);
        let cause = err.cause().unwrap_or(Cause::ConnectFailed);
        self.backend_failed(backend, members, cause, &err);
        Err(err)
    }
}

/// Times a request declined unprocessed is sent again on a new connection.
const MAX_RESENDS: usize = 2;

/// Whether the backend declined the stream without processing it, so that it may be sent
/// again whatever its method (RFC 9113 section 8.7): a stream above the last one a graceful
/// GOAWAY (`NO_ERROR`) accepted, or one reset with `REFUSED_STREAM`.
fn unprocessed(e: &hyper::Error) -> bool {
    let Some(h2) = std::error::Error::source(e).and_then(|s| s.downcast_ref::<h2::Error>()) else {
        return false;
    };
    match h2.reason() {
        Some(h2::Reason::REFUSED_STREAM) => h2.is_reset(),
        Some(h2::Reason::NO_ERROR) => h2.is_go_away() && h2.is_remote(),
        _ => false,
    }
}

/// Marks a connection attempt failed unless it completed (see [`H2Conns::failed`]).
struct OpeningGuard<'a> {
    conns: &'a H2Conns,
    slot: usize,
}

impl Drop for OpeningGuard<'_> {
    fn drop(&mut self) {
        self.conns.failed(self.slot);
    }
}
