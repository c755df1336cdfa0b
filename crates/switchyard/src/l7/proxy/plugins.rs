//! The plugin phases of an exchange (see [`crate::plugin`]): a route's plugins run in their
//! configured order on the request head (after the route's rewrite rules, before the
//! forwarding headers), on the response head (before the route's response rules), and once
//! the exchange has ended. A failed call fails only its request, with 500, counted under
//! `plugin_failed` and on the plugin's own counters.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode};

use crate::l7::error::ProxyError;
use crate::plugin::{Chain, Completion, RequestView, ResponseView, Slot, Verdict};

/// What an exchange with completion callbacks reports when it ends.
#[derive(Debug)]
pub struct Meter {
    /// The route's plugins.
    pub chain: Chain,
    /// Request body bytes read from the client (shared with [`crate::l7::body::RequestBody`]).
    pub request_bytes: Rc<Cell<u64>>,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// The status sent.
    pub status: StatusCode,
}

impl Meter {
    /// A meter for `chain` when one of its plugins wants completions.
    pub fn for_chain(chain: &Chain) -> Option<Box<Meter>> {
        chain.iter().any(|s| s.plugin.has_on_complete()).then(|| {
            Box::new(Meter {
                chain: Arc::clone(chain),
                request_bytes: Rc::default(),
                response_bytes: 0,
                status: StatusCode::OK,
            })
        })
    }

    /// Calls every completion callback with the request's `model`; answers how many failed
    /// (counted on their plugins too; the response is gone, so nothing else comes of it).
    pub fn complete(&self, duration_us: u64, model: Option<&str>) -> u64 {
        let info = Completion {
            status: self.status,
            request_bytes: self.request_bytes.get(),
            response_bytes: self.response_bytes,
            duration_us,
            model,
        };
        let mut failed = 0;
        for s in self.chain.iter() {
            if let Err(e) = s.plugin.on_complete(&info) {
                s.counters.failed.fetch_add(1, Ordering::Relaxed);
                failed += 1;
                tracing::debug!(error = %e, "plugin completion callback failed");
            }
        }
        failed
    }
}

fn failed(s: &Slot, e: crate::plugin::CallError) -> ProxyError {
    s.counters.failed.fetch_add(1, Ordering::Relaxed);
    ProxyError::Plugin(Box::new(e))
}

/// Runs the request callbacks; `Some` when a plugin answered the request itself.
pub(super) fn on_request(
    chain: &[Slot],
    parts: &mut Parts,
    model: Option<&str>,
) -> Result<Option<(StatusCode, Bytes)>, ProxyError> {
    for s in chain {
        let mut view = RequestView {
            parts: &mut *parts,
            model,
        };
        match s.plugin.on_request(&mut view) {
            Ok(Verdict::Continue) => {}
            Ok(Verdict::Respond { status, body }) => {
                s.counters.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(Some((status, Bytes::from(body))));
            }
            Err(e) => return Err(failed(s, e)),
        }
    }
    Ok(None)
}

/// Runs the response callbacks on a response head about to be sent.
pub(super) fn on_response(
    chain: &[Slot],
    status: StatusCode,
    headers: &mut HeaderMap,
    method: &Method,
    model: Option<&str>,
) -> Result<(), ProxyError> {
    for s in chain {
        let mut view = ResponseView {
            status,
            headers: &mut *headers,
            method,
            model,
        };
        s.plugin.on_response(&mut view).map_err(|e| failed(s, e))?;
    }
    Ok(())
}
