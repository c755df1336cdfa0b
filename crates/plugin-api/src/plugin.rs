//! The safe Rust side: the [`Plugin`] trait and the views it receives.

use crate::abi::{CompletionInfo, HostApi, Str};
use std::ffi::{c_void, CStr};

/// A plugin written in Rust. Only [`Plugin::create`] is required; every callback defaults to
/// doing nothing. Export the type with [`crate::export_plugin!`].
///
/// Callbacks may be called from several threads at once, hence `Send + Sync`. A panic in a
/// callback is caught and reported to the host as [`crate::PANICKED`].
pub trait Plugin: Send + Sync + Sized + 'static {
    /// The plugin's name, as logs and errors show it.
    const NAME: &'static CStr;

    /// Whether [`Plugin::on_request`] is registered. A plugin that leaves a callback out (sets
    /// its constant to `false`) costs nothing in that phase: the host skips it.
    const ON_REQUEST: bool = true;
    /// Whether [`Plugin::on_response`] is registered.
    const ON_RESPONSE: bool = true;
    /// Whether [`Plugin::on_complete`] is registered (without it, the host keeps no figures
    /// for the plugin while a request runs).
    const ON_COMPLETE: bool = true;

    /// Creates an instance from its configuration; an `Err` message is shown to the operator.
    fn create(config: &Config) -> Result<Self, String>;

    /// Called with the request head, after routing and the route's rewrite rules, before the
    /// request is forwarded. Return [`Flow::Answered`] after [`Request::respond`] to answer the
    /// request yourself.
    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        Flow::Continue
    }

    /// Called with the response headers, before they are sent to the client.
    fn on_response(&self, _resp: &mut Response<'_>) -> Flow {
        Flow::Continue
    }

    /// Called once the request is complete.
    fn on_complete(&self, _info: &Completion<'_>) {}
}

/// What a request or response callback tells the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Carry on.
    Continue,
    /// The plugin answered through [`Request::respond`].
    Answered,
    /// The plugin failed; the host answers 500 and counts the failure.
    Error,
}

/// A plugin's configuration: the key/value pairs of its INI section, in order.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A configuration made of `pairs`.
    pub fn new(pairs: Vec<(String, String)>) -> Config {
        Config { pairs }
    }

    /// The value of the last pair named `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Access to the host table during one callback. Shared by [`Request`] and [`Response`].
struct Host<'a> {
    api: &'a HostApi,
    ctx: *mut c_void,
}

impl Host<'_> {
    fn get(&self, f: unsafe extern "C" fn(*mut c_void, *mut Str) -> i32) -> Option<Vec<u8>> {
        let mut out = Str::EMPTY;
        // SAFETY: `ctx` and the table come from the host for this callback and are live for
        // the borrow `'a`; `out` is a valid place to write a `Str`.
        let rc = unsafe { f(self.ctx, &mut out) };
        // SAFETY: on success the host points `out` at bytes valid until the next mutating call;
        // they are copied at once.
        (rc == 1).then(|| unsafe { out.as_bytes() }.to_vec())
    }

    fn header(&self, name: &str) -> Option<Vec<u8>> {
        let mut out = Str::EMPTY;
        // SAFETY: as in `get`; `name` outlives the call.
        let rc = unsafe { (self.api.get_header)(self.ctx, Str::new(name.as_bytes()), &mut out) };
        // SAFETY: as in `get`.
        (rc == 1).then(|| unsafe { out.as_bytes() }.to_vec())
    }

    fn set(&self, f: unsafe extern "C" fn(*mut c_void, Str, Str) -> i32, n: &str, v: &[u8]) -> i32 {
        // SAFETY: `ctx` is live for this callback; both strings outlive the call.
        unsafe { f(self.ctx, Str::new(n.as_bytes()), Str::new(v)) }
    }

    fn remove(&self, name: &str) -> i32 {
        // SAFETY: as in `set`.
        unsafe { (self.api.remove_header)(self.ctx, Str::new(name.as_bytes())) }
    }
}

/// Converts a host return code into a `Result` (0 and 1 are success).
fn code(rc: i32) -> Result<(), i32> {
    if rc >= 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

/// The request, during [`Plugin::on_request`]. Errors are the host's negative `E_*` codes.
pub struct Request<'a> {
    host: Host<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(api: &'a HostApi, ctx: *mut c_void) -> Request<'a> {
        Request {
            host: Host { api, ctx },
        }
    }

    /// The first value of a request header (case-insensitive name), copied.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.host.header(name)
    }

    /// Replaces every value of a request header.
    pub fn set_header(&mut self, name: &str, value: &[u8]) -> Result<(), i32> {
        code(self.host.set(self.host.api.set_header, name, value))
    }

    /// Adds a value for a request header.
    pub fn add_header(&mut self, name: &str, value: &[u8]) -> Result<(), i32> {
        code(self.host.set(self.host.api.add_header, name, value))
    }

    /// Removes a request header.
    pub fn remove_header(&mut self, name: &str) -> Result<(), i32> {
        code(self.host.remove(name))
    }

    /// The path and query.
    pub fn path(&self) -> Vec<u8> {
        self.host.get(self.host.api.get_path).unwrap_or_default()
    }

    /// Rewrites the path and query (must start with `/`).
    pub fn set_path(&mut self, path: &[u8]) -> Result<(), i32> {
        // SAFETY: `ctx` is live for this callback; `path` outlives the call.
        code(unsafe { (self.host.api.set_path)(self.host.ctx, Str::new(path)) })
    }

    /// The method.
    pub fn method(&self) -> Vec<u8> {
        self.host.get(self.host.api.get_method).unwrap_or_default()
    }

    /// The model the request names, if the host knows it.
    pub fn model(&self) -> Option<Vec<u8>> {
        self.host.get(self.host.api.get_model)
    }

    /// Answers the request with `status` and `body` (at most [`crate::MAX_RESPOND_BODY`]
    /// bytes); then return [`Flow::Answered`].
    pub fn respond(&mut self, status: u16, body: &[u8]) -> Result<(), i32> {
        // SAFETY: `ctx` is live for this callback; the host copies `body` before returning.
        code(unsafe { (self.host.api.respond)(self.host.ctx, u32::from(status), Str::new(body)) })
    }
}

/// The response headers, during [`Plugin::on_response`].
pub struct Response<'a> {
    host: Host<'a>,
}

impl<'a> Response<'a> {
    pub(crate) fn new(api: &'a HostApi, ctx: *mut c_void) -> Response<'a> {
        Response {
            host: Host { api, ctx },
        }
    }

    /// The response status.
    pub fn status(&self) -> u16 {
        // SAFETY: `ctx` is live for this callback.
        let rc = unsafe { (self.host.api.get_status)(self.host.ctx) };
        u16::try_from(rc).unwrap_or(0)
    }

    /// The first value of a response header, copied.
    pub fn header(&self, name: &str) -> Option<Vec<u8>> {
        self.host.header(name)
    }

    /// Replaces every value of a response header.
    pub fn set_header(&mut self, name: &str, value: &[u8]) -> Result<(), i32> {
        code(self.host.set(self.host.api.set_header, name, value))
    }

    /// Adds a value for a response header.
    pub fn add_header(&mut self, name: &str, value: &[u8]) -> Result<(), i32> {
        code(self.host.set(self.host.api.add_header, name, value))
    }

    /// Removes a response header.
    pub fn remove_header(&mut self, name: &str) -> Result<(), i32> {
        code(self.host.remove(name))
    }

    /// The request's method.
    pub fn method(&self) -> Vec<u8> {
        self.host.get(self.host.api.get_method).unwrap_or_default()
    }

    /// The model the request named, if the host knows it.
    pub fn model(&self) -> Option<Vec<u8>> {
        self.host.get(self.host.api.get_model)
    }
}

/// A completed request, during [`Plugin::on_complete`].
#[derive(Clone, Copy, Debug)]
pub struct Completion<'a> {
    /// The status sent to the client.
    pub status: u16,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// The model, if known.
    pub model: Option<&'a [u8]>,
}

impl<'a> Completion<'a> {
    /// # Safety
    /// `info.model` must be valid for `'a`.
    pub(crate) unsafe fn from_raw(info: &CompletionInfo) -> Completion<'a> {
        // SAFETY: guaranteed by the caller.
        let model = unsafe { info.model.as_bytes() };
        Completion {
            status: u16::try_from(info.status).unwrap_or(0),
            request_bytes: info.request_bytes,
            response_bytes: info.response_bytes,
            duration_us: info.duration_us,
            model: (!model.is_empty()).then_some(model),
        }
    }
}
