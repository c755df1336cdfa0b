//! Building a request's audit line on the request path: what is known when the request
//! arrives here; the backend, status, bytes and timings are added as they are known, and the
//! line is written when the exchange ends (see [`crate::l7::body::Exchange`]). Only sampled
//! requests get a line, and nothing here runs when the audit log is off.

use std::time::Instant;

use http::{header, Request};

use super::{bearer, key_id, Audit, RequestLine};

/// A new line for `req`, arrived at `start`, if the audit log is on and the request is
/// sampled. It copies no text: the target and `Host` share the request's buffer; and it reads
/// no clock (the wall time at `start` comes from the reactor's tick, see
/// [`crate::clock::wall_at`]).
pub fn begin<B>(audit: &Audit, req: &Request<B>, start: Instant) -> Option<Box<RequestLine>> {
    if !audit.sample_request() {
        return None;
    }
    let uri = req.uri();
    let host = match uri.authority() {
        Some(_) => None,
        None => req.headers().get(header::HOST).cloned(),
    };
    Some(Box::new(RequestLine {
        time: crate::clock::wall_at(start),
        key_id: bearer(req.headers()).map(key_id),
        method: req.method().clone(),
        uri: uri.clone(),
        host,
        ..Default::default()
    }))
}
