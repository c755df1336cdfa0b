//! A switchyard plugin that misbehaves on purpose, so the host's handling of faulty plugins can
//! be tested. Not for production.
//!
//! Configuration:
//! - `panic_on`: `create`, `request`, `response` or `complete` — panic in that callback
//!   (for `request`, only when the request carries header `x-panic`, so that a later call
//!   without it succeeds);
//! - `invalid_header = true`: the request callback sets a header whose name is not valid HTTP;
//! - `respond_bytes = N`: the request callback answers 200 with a body of N bytes;
//! - `fail = true`: the request callback returns an error.

use std::ffi::CStr;
use switchyard_plugin_api::{export_plugin, Completion, Config, Flow, Plugin, Request, Response};

/// The plugin instance: which faults to produce.
pub struct Faults {
    panic_on: String,
    invalid_header: bool,
    respond_bytes: Option<usize>,
    fail: bool,
}

impl Plugin for Faults {
    const NAME: &'static CStr = c"test-faults";

    fn create(config: &Config) -> Result<Self, String> {
        let panic_on = config.get("panic_on").unwrap_or("").to_string();
        if panic_on == "create" {
            panic!("test-faults: panic_on = create");
        }
        let respond_bytes = match config.get("respond_bytes") {
            None => None,
            Some(n) => Some(n.parse().map_err(|e| format!("respond_bytes: {e}"))?),
        };
        Ok(Faults {
            panic_on,
            invalid_header: config.get("invalid_header") == Some("true"),
            respond_bytes,
            fail: config.get("fail") == Some("true"),
        })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        if self.panic_on == "request" && req.header("x-panic").is_some() {
            panic!("test-faults: panic_on = request");
        }
        if self.invalid_header {
            // The code is ignored on purpose: the host must fail the call regardless.
            let _ = req.set_header("bad header name", b"v");
        }
        if let Some(n) = self.respond_bytes {
            let _ = req.respond(200, &vec![b'x'; n]);
            return Flow::Answered;
        }
        if self.fail {
            return Flow::Error;
        }
        Flow::Continue
    }

    fn on_response(&self, _resp: &mut Response<'_>) -> Flow {
        if self.panic_on == "response" {
            panic!("test-faults: panic_on = response");
        }
        Flow::Continue
    }

    fn on_complete(&self, _info: &Completion<'_>) {
        if self.panic_on == "complete" {
            panic!("test-faults: panic_on = complete");
        }
    }
}

export_plugin!(Faults);
