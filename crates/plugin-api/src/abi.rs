//! The `#[repr(C)]` types and constants of the ABI. Kept in step with
//! `include/switchyard_plugin.h`.

use std::ffi::{c_char, c_void};

/// The ABI version this crate describes. The host refuses a plugin reporting any other.
pub const ABI_VERSION: u32 = 1;

/// The one symbol a plugin exports (NUL-terminated, for `dlsym`): a [`EntryFn`].
pub const ENTRY_SYMBOL: &[u8] = b"switchyard_plugin_v1\0";

/// The type of the exported entry point: returns the plugin's descriptor, which must stay
/// valid (and unchanged) until the library is unloaded.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDescriptor;

/// Callback result: carry on with the request.
pub const CONTINUE: i32 = 0;
/// Callback result (request phase): the plugin called [`HostApi::respond`]; the host sends
/// that answer instead of forwarding the request.
pub const ANSWERED: i32 = 1;
/// Callback result: the plugin failed. Any negative value is an error; this is the generic one.
pub const ERROR: i32 = -1;
/// Callback result: a Rust plugin panicked (caught by the wrapper before reaching the host).
pub const PANICKED: i32 = -2;

/// Host function result: the name, value, path or status given is not valid HTTP.
pub const E_INVALID: i32 = -3;
/// Host function result: this function is not available in this phase (e.g. `respond` or
/// `set_path` while handling a response).
pub const E_UNSUPPORTED: i32 = -4;
/// Host function result: the body given to `respond` exceeds [`MAX_RESPOND_BODY`].
pub const E_TOO_LARGE: i32 = -5;

/// The largest body a plugin may answer with through [`HostApi::respond`] (1 MiB).
pub const MAX_RESPOND_BODY: usize = 1 << 20;

/// [`HostApi::phase`] while handling a request (before it is routed and forwarded).
pub const PHASE_REQUEST: u32 = 1;
/// [`HostApi::phase`] while handling the response headers from the backend.
pub const PHASE_RESPONSE: u32 = 2;

/// A borrowed byte string: `len` bytes at `ptr`. `ptr` may be null only when `len` is 0.
/// Not NUL-terminated; not necessarily UTF-8.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    /// The first byte.
    pub ptr: *const u8,
    /// The number of bytes.
    pub len: usize,
}

impl Str {
    /// The empty string (null pointer, length 0).
    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `bytes`; the result is valid as long as `bytes` is.
    pub fn new(bytes: &[u8]) -> Str {
        Str {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The bytes this string points at.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes (or `len` be 0) that stay valid and unchanged
    /// for the chosen lifetime `'a`.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is readable and live for `'a`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// One configuration pair (a key and its value from the plugin's INI section).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KeyValue {
    /// The key.
    pub key: Str,
    /// The value (empty if the key had none).
    pub value: Str,
}

/// The table of host functions a request or response callback receives, with an opaque
/// context `ctx` to pass back as each function's first argument. Both pointers are valid only
/// during the callback. Functions not available in the current phase return [`E_UNSUPPORTED`].
///
/// Getters write a [`Str`] to `out` and return 1 if the value exists, 0 if not (`out` is then
/// empty). Setters return 0 on success or a negative `E_*` code. A plugin that sets an invalid
/// header, path or status, or answers with a body above [`MAX_RESPOND_BODY`], also fails the
/// call: the host reports an error for it even if the plugin ignores the code.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HostApi {
    /// Always [`ABI_VERSION`].
    pub abi_version: u32,
    /// [`PHASE_REQUEST`] or [`PHASE_RESPONSE`].
    pub phase: u32,
    /// The first value of header `name` (case-insensitive) of the request (request phase) or
    /// the response (response phase).
    pub get_header: unsafe extern "C" fn(ctx: *mut c_void, name: Str, out: *mut Str) -> i32,
    /// Replaces every value of header `name` with `value`.
    pub set_header: unsafe extern "C" fn(ctx: *mut c_void, name: Str, value: Str) -> i32,
    /// Appends a value for header `name`, keeping existing ones.
    pub add_header: unsafe extern "C" fn(ctx: *mut c_void, name: Str, value: Str) -> i32,
    /// Removes every value of header `name` (0 whether or not it was present).
    pub remove_header: unsafe extern "C" fn(ctx: *mut c_void, name: Str) -> i32,
    /// The request's path and query (`/v1/chat/completions?x=1`). Request phase only.
    pub get_path: unsafe extern "C" fn(ctx: *mut c_void, out: *mut Str) -> i32,
    /// Rewrites the request's path and query; it must start with `/`. Request phase only.
    pub set_path: unsafe extern "C" fn(ctx: *mut c_void, path: Str) -> i32,
    /// The request method (`GET`, `POST`, ...). Both phases.
    pub get_method: unsafe extern "C" fn(ctx: *mut c_void, out: *mut Str) -> i32,
    /// The model the request names, if the host knows it. Both phases.
    pub get_model: unsafe extern "C" fn(ctx: *mut c_void, out: *mut Str) -> i32,
    /// The response status code (response phase); [`E_UNSUPPORTED`] in the request phase.
    pub get_status: unsafe extern "C" fn(ctx: *mut c_void) -> i32,
    /// Answers the request with `status` (100..=999) and `body` (copied by the host) instead
    /// of forwarding it; the callback should then return [`ANSWERED`]. Request phase only.
    pub respond: unsafe extern "C" fn(ctx: *mut c_void, status: u32, body: Str) -> i32,
}

/// What the host reports when a request is complete (for logging or metering). Valid only
/// during [`PluginDescriptor::on_complete`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CompletionInfo {
    /// The status code sent to the client.
    pub status: u32,
    /// Request body bytes received from the client.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// Time from the request's arrival to the end of the response, in microseconds.
    pub duration_us: u64,
    /// The model the request named, empty if unknown.
    pub model: Str,
}

/// Creates an instance from the configuration pairs. On success writes the instance pointer
/// to `*instance_out` and returns 0. On failure returns a negative code and may write up to
/// `err_cap` bytes of a message to `err_buf`, storing its length in `*err_len`.
pub type CreateFn = unsafe extern "C" fn(
    config: *const KeyValue,
    config_len: usize,
    instance_out: *mut *mut c_void,
    err_buf: *mut u8,
    err_cap: usize,
    err_len: *mut usize,
) -> i32;
/// Frees an instance made by [`CreateFn`]. Called once, after every other call has returned.
pub type DestroyFn = unsafe extern "C" fn(instance: *mut c_void);
/// A request or response callback: see [`HostApi`]; returns [`CONTINUE`], [`ANSWERED`] or a
/// negative error.
pub type PhaseFn =
    unsafe extern "C" fn(instance: *mut c_void, host: *const HostApi, ctx: *mut c_void) -> i32;
/// The completion callback; returns [`CONTINUE`] or a negative error.
pub type CompleteFn =
    unsafe extern "C" fn(instance: *mut c_void, info: *const CompletionInfo) -> i32;

/// What a plugin exports through [`ENTRY_SYMBOL`]. All pointers must stay valid until the
/// library is unloaded. `create` is required; every other callback may be null.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginDescriptor {
    /// Must be [`ABI_VERSION`]; always the first field, in every version.
    pub abi_version: u32,
    /// The plugin's name, NUL-terminated (UTF-8 expected; used in logs and errors).
    pub name: *const c_char,
    /// Required: creates an instance from its configuration.
    pub create: Option<CreateFn>,
    /// Frees an instance (null if there is nothing to free).
    pub destroy: Option<DestroyFn>,
    /// Called with the request headers, before routing.
    pub on_request: Option<PhaseFn>,
    /// Called with the response headers, before they are sent to the client.
    pub on_response: Option<PhaseFn>,
    /// Called once the request is complete.
    pub on_complete: Option<CompleteFn>,
}

// SAFETY: a descriptor is immutable data: a version, a pointer to a static NUL-terminated name
// and function pointers, all valid for the library's lifetime; sharing it between threads
// reads only that immutable data.
unsafe impl Sync for PluginDescriptor {}
