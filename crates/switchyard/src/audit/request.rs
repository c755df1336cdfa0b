//! Building a request's audit line on the request path: what is known when the request
//! arrives here; the route, backend, status, bytes and timings are added as they are known
//! (see [`crate::l7::body::Exchange`]). Only sampled requests get a line, and nothing here
//! runs when the audit log is off.

use std::time::SystemTime;

use http::{header, HeaderValue, Request};

use super::{bearer, key_id, Audit, RequestLine};

/// A new line for `req` from `client`, if the audit log is on and the request is sampled.
pub fn begin<B>(audit: &Audit, client: &HeaderValue, req: &Request<B>) -> Option<Box<RequestLine>> {
    if !audit.sample_request() {
        return None;
    }
    let host = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    Some(Box::new(RequestLine {
        time: Some(SystemTime::now()),
        client: String::from_utf8_lossy(client.as_bytes()).into_owned(),
        key_id: bearer(req.headers()).map(key_id),
        method: req.method().as_str().to_string(),
        host: host.map(str::to_string),
        path: req.uri().path().to_string(),
        ..Default::default()
    }))
}
