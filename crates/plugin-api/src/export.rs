//! The glue between a [`Plugin`] and the C ABI: the descriptor and its `extern "C"` callbacks,
//! each of which catches panics so that none unwinds into the host.

use crate::abi::{
    CompleteFn, CompletionInfo, HostApi, KeyValue, PhaseFn, PluginDescriptor, ABI_VERSION,
    ANSWERED, CONTINUE, ERROR, PANICKED,
};
use crate::plugin::{Completion, Config, Flow, Plugin, Request, Response};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Exports a [`Plugin`] type as this library's plugin: defines the `switchyard_plugin_v1`
/// entry point returning its descriptor. Use once per cdylib crate.
///
/// ```
/// use std::ffi::CStr;
/// use switchyard_plugin_api::{export_plugin, Config, Plugin, ABI_VERSION};
///
/// struct Hello;
///
/// impl Plugin for Hello {
///     const NAME: &'static CStr = c"hello";
///     fn create(_config: &Config) -> Result<Self, String> {
///         Ok(Hello)
///     }
/// }
///
/// export_plugin!(Hello);
///
/// # fn main() {
/// // SAFETY: the entry point returns a pointer to a static descriptor.
/// let descriptor = unsafe { &*switchyard_plugin_v1() };
/// assert_eq!(descriptor.abi_version, ABI_VERSION);
/// assert!(descriptor.create.is_some());
/// # }
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The plugin's entry point (see `switchyard_plugin_api::ENTRY_SYMBOL`).
        #[no_mangle]
        pub extern "C" fn switchyard_plugin_v1() -> *const $crate::PluginDescriptor {
            static DESCRIPTOR: $crate::PluginDescriptor = $crate::descriptor::<$plugin>();
            &DESCRIPTOR
        }
    };
}

/// The descriptor for plugin type `P`, with each callback its `ON_*` constant registers wired
/// to its trait method.
pub const fn descriptor<P: Plugin>() -> PluginDescriptor {
    let on_request: PhaseFn = on_request::<P>;
    let on_response: PhaseFn = on_response::<P>;
    let on_complete: CompleteFn = on_complete::<P>;
    PluginDescriptor {
        abi_version: ABI_VERSION,
        name: P::NAME.as_ptr(),
        create: Some(create::<P>),
        destroy: Some(destroy::<P>),
        on_request: if P::ON_REQUEST {
            Some(on_request)
        } else {
            None
        },
        on_response: if P::ON_RESPONSE {
            Some(on_response)
        } else {
            None
        },
        on_complete: if P::ON_COMPLETE {
            Some(on_complete)
        } else {
            None
        },
    }
}

fn flow_code(flow: Result<Flow, ()>) -> i32 {
    match flow {
        Ok(Flow::Continue) => CONTINUE,
        Ok(Flow::Answered) => ANSWERED,
        Ok(Flow::Error) => ERROR,
        Err(()) => PANICKED,
    }
}

/// Copies `msg` (truncated to `cap` bytes) into the host's error buffer.
///
/// # Safety
/// `buf` must be writable for `cap` bytes and `len` writable, or either be null.
unsafe fn write_error(msg: &str, buf: *mut u8, cap: usize, len: *mut usize) {
    if buf.is_null() || len.is_null() {
        return;
    }
    let n = msg.len().min(cap);
    // SAFETY: the caller guarantees `buf` holds `cap >= n` writable bytes and `len` is
    // writable; `msg` does not overlap host memory.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf, n);
        *len = n;
    }
}

/// [`crate::CreateFn`] for `P`.
///
/// # Safety
/// Called by the host as the ABI states: `config` points at `config_len` pairs of valid
/// strings; `instance_out` is writable; the error buffer is as [`crate::CreateFn`] says.
pub unsafe extern "C" fn create<P: Plugin>(
    config: *const KeyValue,
    config_len: usize,
    instance_out: *mut *mut c_void,
    err_buf: *mut u8,
    err_cap: usize,
    err_len: *mut usize,
) -> i32 {
    let pairs: &[KeyValue] = if config.is_null() || config_len == 0 {
        &[]
    } else {
        // SAFETY: the host passes `config_len` valid pairs, live during this call.
        unsafe { std::slice::from_raw_parts(config, config_len) }
    };
    let owned = pairs
        .iter()
        .map(|kv| {
            // SAFETY: each string is valid during this call; it is copied at once.
            let (k, v) = unsafe { (kv.key.as_bytes(), kv.value.as_bytes()) };
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    let config = Config::new(owned);
    let made = catch_unwind(AssertUnwindSafe(|| P::create(&config)));
    let (rc, msg) = match made {
        Ok(Ok(plugin)) => {
            let instance = Box::into_raw(Box::new(plugin)).cast::<c_void>();
            // SAFETY: the host passes a writable `instance_out`.
            unsafe { *instance_out = instance };
            return CONTINUE;
        }
        Ok(Err(msg)) => (ERROR, msg),
        Err(_) => (
            PANICKED,
            "the plugin panicked while being created".to_string(),
        ),
    };
    // SAFETY: the host's error buffer is as the ABI states.
    unsafe { write_error(&msg, err_buf, err_cap, err_len) };
    rc
}

/// [`crate::DestroyFn`] for `P`.
///
/// # Safety
/// `instance` was made by [`create::<P>`] and is destroyed once, with no call in flight.
pub unsafe extern "C" fn destroy<P: Plugin>(instance: *mut c_void) {
    // SAFETY: `instance` is a `Box<P>` leaked by `create::<P>`, not used after this call.
    let plugin = unsafe { Box::from_raw(instance.cast::<P>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || drop(plugin)));
}

/// [`crate::PhaseFn`] (request) for `P`.
///
/// # Safety
/// `instance` came from [`create::<P>`] and is live; `host` and `ctx` are valid for the call.
pub unsafe extern "C" fn on_request<P: Plugin>(
    instance: *mut c_void,
    host: *const HostApi,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: `instance` is a live `P` (only shared references are made); `host` is valid
    // during this call.
    let (plugin, api) = unsafe { (&*instance.cast::<P>(), &*host) };
    let mut req = Request::new(api, ctx);
    flow_code(catch_unwind(AssertUnwindSafe(|| plugin.on_request(&mut req))).map_err(|_| ()))
}

/// [`crate::PhaseFn`] (response) for `P`.
///
/// # Safety
/// As for [`on_request`].
pub unsafe extern "C" fn on_response<P: Plugin>(
    instance: *mut c_void,
    host: *const HostApi,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: as in `on_request`.
    let (plugin, api) = unsafe { (&*instance.cast::<P>(), &*host) };
    let mut resp = Response::new(api, ctx);
    flow_code(catch_unwind(AssertUnwindSafe(|| plugin.on_response(&mut resp))).map_err(|_| ()))
}

/// [`crate::CompleteFn`] for `P`.
///
/// # Safety
/// `instance` came from [`create::<P>`] and is live; `info` is valid for the call.
pub unsafe extern "C" fn on_complete<P: Plugin>(
    instance: *mut c_void,
    info: *const CompletionInfo,
) -> i32 {
    // SAFETY: `instance` is a live `P`; `info` and the model it points at are valid during
    // this call, and `Completion` does not outlive it.
    let (plugin, info) = unsafe { (&*instance.cast::<P>(), Completion::from_raw(&*info)) };
    match catch_unwind(AssertUnwindSafe(|| plugin.on_complete(&info))) {
        Ok(()) => CONTINUE,
        Err(_) => PANICKED,
    }
}
