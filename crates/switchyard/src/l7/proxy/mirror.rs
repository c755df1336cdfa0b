//! The mirror phase of an exchange on a route with `mirror = ROUTE, PERCENT`: a sampled
//! request's head and body are copied to a backend of the other route's group, picked by that
//! route's balancer, fire-and-forget. The copy runs in a task of its own; its answer is read
//! and dropped; its latency and failures reach only `/stats`. A body is copied only when it is
//! at most `mirror_max_body` (read ahead for that, bounded, and forwarded as usual), and at
//! most `mirror_max_in_flight` copies are out at once; the rest are counted as skipped.
//! Backends with `protocol = h2c` are not mirrored to (counted as failed).

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{header, Request};
use switchyard_balance::PickContext;
use switchyard_config::{BackendProtocol, MirrorConfig};

use super::keys::read_ahead;
use super::Worker;
use crate::clock::coarse_now;
use crate::l7::body::RequestBody;
use crate::l7::error::ProxyError;
use crate::upstream::codec::BodyDecoder;
use crate::upstream::directory::Membership;

/// Gives the copy's place back however its task ends (shutdown included).
struct Place(Rc<Worker>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.shared.mirrors.release();
    }
}

/// Sends a copy of the request to `target`'s group if the sample draws it (`snapshot` is the
/// exchange's, an `Rc` clone of which the copy's task keeps).
#[allow(clippy::too_many_arguments, clippy::redundant_allocation)]
pub(super) async fn maybe_mirror(
    worker: &Rc<Worker>,
    snapshot: &Rc<Arc<Membership>>,
    mirror: &MirrorConfig,
    target: usize,
    parts: &Parts,
    body: &mut RequestBody,
    needs_host: bool,
) -> Result<(), ProxyError> {
    let draw = worker.rng.borrow_mut().next_u64() % 10_000;
    if draw >= u64::from(mirror.share) {
        return Ok(());
    }
    let routing = &snapshot.routing;
    let server = &routing.config.server;
    let mirrors = &worker.shared.mirrors;
    if !read_ahead(body, server.traffic.mirror_max_body).await?
        || body.prefix.as_ref().map_or(0, Bytes::len) > server.traffic.mirror_max_body
    {
        mirrors.skipped_too_large.fetch_add(1, Relaxed);
        return Ok(());
    }
    if !mirrors.admit(server.traffic.mirror_max_in_flight) {
        return Ok(());
    }
    let place = Place(Rc::clone(worker));
    let copy = body.prefix.clone();
    let mut req = Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    let (mut head, ()) = req.into_parts();
    let snapshot = Rc::clone(snapshot);
    mirrors.sent.fetch_add(1, Relaxed);
    tokio::task::spawn_local(async move {
        let worker = Rc::clone(&place.0);
        let limit = {
            let s = &snapshot.routing.config.server;
            s.upstream_connect_timeout + s.upstream_response_timeout
        };
        let sent = tokio::time::timeout(
            limit,
            send(&worker, &snapshot, target, &mut head, copy, needs_host),
        )
        .await;
        let counter = match sent {
            Ok(true) => &worker.shared.mirrors.answered,
            _ => &worker.shared.mirrors.failed,
        };
        counter.fetch_add(1, Relaxed);
        drop(place);
    });
    Ok(())
}

/// Sends the copy and reads the answer to its end; whether the mirror answered.
async fn send(
    worker: &Rc<Worker>,
    snapshot: &Membership,
    target: usize,
    head: &mut Parts,
    copy: Option<Bytes>,
    needs_host: bool,
) -> bool {
    let members = &snapshot.groups[target];
    let pick = {
        let ctx = PickContext {
            now_ms: worker.shared.clock.ms_at(coarse_now()),
            exclude: &[],
            key: None,
            prefix: &[],
        };
        worker.balancers.borrow_mut()[target].pick(&members.states, &ctx)
    };
    let Some(m) = pick else { return false };
    let backend = &members.backends[m];
    if backend.config.protocol == BackendProtocol::H2c {
        return false;
    }
    if needs_host {
        head.headers.insert(header::HOST, backend.host.clone());
    }
    let mut conn = match worker.pool.take(backend.slot) {
        Some(c) => c,
        None => match worker.connect(backend).await {
            Ok(c) => c,
            Err(_) => return false,
        },
    };
    let mut body = RequestBody {
        prefix: copy,
        rest: None,
        meter: None,
    };
    let timeout = snapshot.routing.config.server.upstream_response_timeout;
    let Ok(answer) = conn
        .exchange(head, &mut body, timeout, &worker.deadlines)
        .await
    else {
        return false;
    };
    // The answer's body is read and dropped, so the connection can be used again.
    let mut decoder = BodyDecoder::new(answer.framing);
    loop {
        match decoder.decode(&mut conn.buf) {
            Err(_) => return true,
            Ok(Some(_)) => continue,
            Ok(None) if decoder.is_done() => break,
            Ok(None) => {}
        }
        match std::future::poll_fn(|cx| conn.poll_read_more(cx)).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    if answer.keep_alive && conn.intact && conn.buf.is_empty() {
        worker.pool_put(backend.slot, backend.generation, conn);
    }
    true
}
