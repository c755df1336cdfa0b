//! Calling a plugin: the host function table its callbacks use to read and change the request
//! or response, and the typed calls that turn its return codes into a [`Verdict`] or a
//! [`CallError`].

use super::{CallError, Completion, LoadedPlugin, RequestView, ResponseView, Verdict};
use http::header::{HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{HeaderMap, Method, StatusCode};
use std::ffi::c_void;
use switchyard_plugin_api::{
    CompletionInfo, HostApi, Str, ABI_VERSION, ANSWERED, CONTINUE, E_INVALID, E_TOO_LARGE,
    E_UNSUPPORTED, MAX_RESPOND_BODY, PANICKED, PHASE_REQUEST, PHASE_RESPONSE,
};

/// Misbehaviour noticed during a call; the first one is reported.
enum Fault {
    Header(String),
    Path(String),
    Status(u32),
    TooLarge(usize),
}

/// The state behind the `ctx` pointer of one callback.
struct Ctx<'a> {
    headers: &'a mut HeaderMap,
    /// The request URI: `None` in the response phase.
    uri: Option<&'a mut Uri>,
    method: &'a Method,
    model: Option<&'a str>,
    /// The response status: `None` in the request phase.
    status: Option<StatusCode>,
    answer: Option<(StatusCode, Vec<u8>)>,
    fault: Option<Fault>,
}

impl Ctx<'_> {
    fn fault(&mut self, fault: Fault) {
        self.fault.get_or_insert(fault);
    }
}

/// Bytes as a short printable string, for error messages.
fn show(bytes: &[u8]) -> String {
    let mut s = bytes[..bytes.len().min(64)].escape_ascii().to_string();
    if bytes.len() > 64 {
        s.push_str("...");
    }
    s
}

/// The table for request callbacks.
static REQUEST_API: HostApi = table(PHASE_REQUEST);
/// The table for response callbacks.
static RESPONSE_API: HostApi = table(PHASE_RESPONSE);

const fn table(phase: u32) -> HostApi {
    HostApi {
        abi_version: ABI_VERSION,
        phase,
        get_header,
        set_header,
        add_header,
        remove_header,
        get_path,
        set_path,
        get_method,
        get_model,
        get_status,
        respond,
    }
}

/// The context behind a host function's `ctx` argument.
///
/// # Safety
/// `ctx` is the pointer the host passed to the running callback (plugins pass it back
/// unchanged, on the calling thread, only during that callback).
unsafe fn ctx<'a>(ctx: *mut c_void) -> &'a mut Ctx<'a> {
    // SAFETY: per this function's contract `ctx` points at a live `Ctx` that the host does not
    // touch while the callback runs; host functions do not call back into the plugin, so no
    // other reference to it exists during this host function.
    unsafe { &mut *ctx.cast::<Ctx<'a>>() }
}

/// Writes `bytes` to `out` (if not null) and returns 1.
///
/// # Safety
/// `out` is null or writable (ABI).
unsafe fn put(out: *mut Str, bytes: &[u8]) -> i32 {
    if out.is_null() {
        return E_INVALID;
    }
    // SAFETY: `out` is writable per this function's contract.
    unsafe { out.write(Str::new(bytes)) };
    1
}

unsafe extern "C" fn get_header(c: *mut c_void, name: Str, out: *mut Str) -> i32 {
    // SAFETY: called by a plugin during a callback with the host's `ctx` and valid strings.
    let (cx, name) = unsafe { (ctx(c), name.as_bytes()) };
    let value = HeaderName::from_bytes(name)
        .ok()
        .and_then(|n| cx.headers.get(n));
    match value {
        // SAFETY: `out` as per the ABI; the value lives in the map until the next change.
        Some(v) => unsafe { put(out, v.as_bytes()) },
        None => {
            // SAFETY: as above.
            unsafe { put(out, &[]) };
            0
        }
    }
}

/// Parses a header name and value, recording a fault if either is invalid.
fn header(
    cx: &mut Ctx<'_>,
    name: &[u8],
    value: Option<&[u8]>,
) -> Option<(HeaderName, HeaderValue)> {
    let parsed = HeaderName::from_bytes(name)
        .ok()
        .zip(HeaderValue::from_bytes(value.unwrap_or(b"")).ok());
    if parsed.is_none() {
        cx.fault(Fault::Header(show(name)));
    }
    parsed
}

unsafe extern "C" fn set_header(c: *mut c_void, name: Str, value: Str) -> i32 {
    // SAFETY: as in `get_header`.
    let (cx, name, value) = unsafe { (ctx(c), name.as_bytes(), value.as_bytes()) };
    match header(cx, name, Some(value)) {
        Some((n, v)) => {
            cx.headers.insert(n, v);
            0
        }
        None => E_INVALID,
    }
}

unsafe extern "C" fn add_header(c: *mut c_void, name: Str, value: Str) -> i32 {
    // SAFETY: as in `get_header`.
    let (cx, name, value) = unsafe { (ctx(c), name.as_bytes(), value.as_bytes()) };
    match header(cx, name, Some(value)) {
        Some((n, v)) => {
            cx.headers.append(n, v);
            0
        }
        None => E_INVALID,
    }
}

unsafe extern "C" fn remove_header(c: *mut c_void, name: Str) -> i32 {
    // SAFETY: as in `get_header`.
    let (cx, name) = unsafe { (ctx(c), name.as_bytes()) };
    match header(cx, name, None) {
        Some((n, _)) => {
            cx.headers.remove(n);
            0
        }
        None => E_INVALID,
    }
}

unsafe extern "C" fn get_path(c: *mut c_void, out: *mut Str) -> i32 {
    // SAFETY: as in `get_header`.
    let cx = unsafe { ctx(c) };
    match cx.uri.as_deref() {
        Some(uri) => {
            let path = uri
                .path_and_query()
                .map_or(uri.path(), PathAndQuery::as_str);
            // SAFETY: `out` as per the ABI; the path lives in the URI until the next change.
            unsafe { put(out, path.as_bytes()) }
        }
        None => E_UNSUPPORTED,
    }
}

unsafe extern "C" fn set_path(c: *mut c_void, path: Str) -> i32 {
    // SAFETY: as in `get_header`.
    let (cx, path) = unsafe { (ctx(c), path.as_bytes()) };
    let Some(uri) = cx.uri.as_deref_mut() else {
        return E_UNSUPPORTED;
    };
    let rebuilt = (path.first() == Some(&b'/'))
        .then(|| PathAndQuery::try_from(path).ok())
        .flatten()
        .and_then(|pq| {
            let mut parts = uri.clone().into_parts();
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).ok()
        });
    match rebuilt {
        Some(new) => {
            *uri = new;
            0
        }
        None => {
            cx.fault(Fault::Path(show(path)));
            E_INVALID
        }
    }
}

unsafe extern "C" fn get_method(c: *mut c_void, out: *mut Str) -> i32 {
    // SAFETY: as in `get_header`; the method outlives the callback.
    unsafe {
        let cx = ctx(c);
        put(out, cx.method.as_str().as_bytes())
    }
}

unsafe extern "C" fn get_model(c: *mut c_void, out: *mut Str) -> i32 {
    // SAFETY: as in `get_header`; the model outlives the callback.
    let cx = unsafe { ctx(c) };
    match cx.model {
        // SAFETY: `out` as per the ABI.
        Some(m) => unsafe { put(out, m.as_bytes()) },
        None => {
            // SAFETY: as above.
            unsafe { put(out, &[]) };
            0
        }
    }
}

unsafe extern "C" fn get_status(c: *mut c_void) -> i32 {
    // SAFETY: as in `get_header`.
    let cx = unsafe { ctx(c) };
    cx.status.map_or(E_UNSUPPORTED, |s| i32::from(s.as_u16()))
}

unsafe extern "C" fn respond(c: *mut c_void, status: u32, body: Str) -> i32 {
    // SAFETY: as in `get_header`; the body is copied before returning.
    let (cx, body) = unsafe { (ctx(c), body.as_bytes()) };
    if cx.uri.is_none() {
        return E_UNSUPPORTED;
    }
    let Some(code) = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        cx.fault(Fault::Status(status));
        return E_INVALID;
    };
    if body.len() > MAX_RESPOND_BODY {
        cx.fault(Fault::TooLarge(body.len()));
        return E_TOO_LARGE;
    }
    cx.answer = Some((code, body.to_vec()));
    0
}

impl LoadedPlugin {
    /// Calls the plugin's request callback (if it has one) on `req`, which it may change.
    pub fn on_request(&self, req: &mut RequestView<'_>) -> Result<Verdict, CallError> {
        let Some(callback) = self.inner.on_request else {
            return Ok(Verdict::Continue);
        };
        let parts = &mut *req.parts;
        let mut cx = Ctx {
            headers: &mut parts.headers,
            uri: Some(&mut parts.uri),
            method: &parts.method,
            model: req.model,
            status: None,
            answer: None,
            fault: None,
        };
        // SAFETY: the instance is live (held by `self`) and came from this library; the table
        // is static; `cx` outlives the call and is not touched until it returns.
        let rc = unsafe { callback(self.inner.instance, &REQUEST_API, (&raw mut cx).cast()) };
        let answer = cx.answer.take();
        self.check(rc, cx.fault.take(), true)?;
        match (rc, answer) {
            (_, Some((status, body))) => Ok(Verdict::Respond { status, body }),
            (ANSWERED, None) => Err(CallError::AnsweredWithoutRespond {
                plugin: self.name().into(),
            }),
            _ => Ok(Verdict::Continue),
        }
    }

    /// Calls the plugin's response callback (if it has one) on `resp`, whose headers it may
    /// change.
    pub fn on_response(&self, resp: &mut ResponseView<'_>) -> Result<(), CallError> {
        let Some(callback) = self.inner.on_response else {
            return Ok(());
        };
        let mut cx = Ctx {
            headers: resp.headers,
            uri: None,
            method: resp.method,
            model: resp.model,
            status: Some(resp.status),
            answer: None,
            fault: None,
        };
        // SAFETY: as in `on_request`.
        let rc = unsafe { callback(self.inner.instance, &RESPONSE_API, (&raw mut cx).cast()) };
        self.check(rc, cx.fault.take(), false)
    }

    /// Calls the plugin's completion callback (if it has one).
    pub fn on_complete(&self, info: &Completion<'_>) -> Result<(), CallError> {
        let Some(callback) = self.inner.on_complete else {
            return Ok(());
        };
        let raw = CompletionInfo {
            status: u32::from(info.status.as_u16()),
            request_bytes: info.request_bytes,
            response_bytes: info.response_bytes,
            duration_us: info.duration_us,
            model: info.model.map_or(Str::EMPTY, |m| Str::new(m.as_bytes())),
        };
        // SAFETY: the instance is live; `raw` and the model it borrows outlive the call.
        let rc = unsafe { callback(self.inner.instance, &raw) };
        self.check(rc, None, false)
    }

    /// Maps a return code and any fault to the call's outcome (`answers`: whether the phase
    /// allows [`ANSWERED`]).
    fn check(&self, rc: i32, fault: Option<Fault>, answers: bool) -> Result<(), CallError> {
        // Named only on an error: a call that succeeds allocates nothing here.
        let plugin = || self.name().to_string();
        if let Some(fault) = fault {
            let plugin = plugin();
            return Err(match fault {
                Fault::Header(name) => CallError::InvalidHeader { plugin, name },
                Fault::Path(path) => CallError::InvalidPath { plugin, path },
                Fault::Status(status) => CallError::InvalidStatus { plugin, status },
                Fault::TooLarge(len) => CallError::BodyTooLarge { plugin, len },
            });
        }
        match rc {
            CONTINUE => Ok(()),
            ANSWERED if answers => Ok(()),
            PANICKED => Err(CallError::Panicked { plugin: plugin() }),
            code if code < 0 => Err(CallError::Failed {
                plugin: plugin(),
                code,
            }),
            code => Err(CallError::UnexpectedCode {
                plugin: plugin(),
                code,
            }),
        }
    }
}
