//! The plugin host: loads plugins — shared libraries implementing the C ABI of
//! [`switchyard_plugin_api`] — and calls them with typed, safe methods.
//!
//! - [`LoadedPlugin::load`] opens a library, checks its entry symbol and ABI version, and
//!   creates an instance from the plugin's configuration pairs ([`PluginError`] says why not).
//! - [`LoadedPlugin::on_request`], [`LoadedPlugin::on_response`] and
//!   [`LoadedPlugin::on_complete`] call the plugin; misbehaviour the host can detect (an error
//!   code, a caught panic, an invalid header, path or status, an answer body above
//!   [`MAX_RESPOND_BODY`]) is a [`CallError`], never a crash, so the caller can answer 500 and
//!   count it.
//!
//! This is the only module of the crate allowed `unsafe` (a test checks that); every block
//! says why it is sound. Soundness rests on the ABI contract a plugin accepts: its callbacks
//! do what `switchyard_plugin.h` documents, are thread-safe, and do not unwind.

mod call;
mod load;

mod set;

pub use load::LoadedPlugin;
pub use set::{Chain, LoadError, PluginCounters, Plugins, Slot};
pub use switchyard_plugin_api::MAX_RESPOND_BODY;

use http::{HeaderMap, Method, StatusCode};
use std::path::PathBuf;

/// Why a plugin could not be loaded. Every message names the library file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// The file could not be opened as a shared library (missing, not a library, wrong
    /// architecture, unresolved dependencies...).
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The loader's explanation.
        cause: String,
    },
    /// The library does not export the entry point: it is not a switchyard plugin.
    MissingSymbol {
        /// The file.
        path: PathBuf,
        /// The symbol looked for (`switchyard_plugin_v1`).
        symbol: &'static str,
    },
    /// The entry point returned a null descriptor.
    NullDescriptor {
        /// The file.
        path: PathBuf,
    },
    /// The plugin was built for another ABI version: rebuild it against this release's
    /// `switchyard-plugin-api` (or `switchyard_plugin.h`).
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The version the plugin reports.
        found: u32,
        /// The version this host speaks.
        expected: u32,
    },
    /// The descriptor has no name.
    MissingName {
        /// The file.
        path: PathBuf,
    },
    /// A required callback (`create`) is null.
    MissingCallback {
        /// The file.
        path: PathBuf,
        /// The callback's name.
        name: &'static str,
    },
    /// The plugin refused its configuration (or failed to start).
    CreateFailed {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        plugin: String,
        /// The plugin's message, or a note that it gave none.
        message: String,
    },
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::NotALibrary { path, cause } => {
                write!(
                    f,
                    "plugin {}: not a loadable shared library: {cause}",
                    path.display()
                )
            }
            PluginError::MissingSymbol { path, symbol } => write!(
                f,
                "plugin {}: no symbol {symbol}: not a switchyard plugin",
                path.display()
            ),
            PluginError::NullDescriptor { path } => {
                write!(
                    f,
                    "plugin {}: the entry point returned no descriptor",
                    path.display()
                )
            }
            PluginError::AbiMismatch {
                path,
                found,
                expected,
            } => write!(
                f,
                "plugin {}: built for plugin ABI version {found}, this switchyard speaks \
                 version {expected}: rebuild the plugin against this release",
                path.display()
            ),
            PluginError::MissingName { path } => {
                write!(f, "plugin {}: the descriptor has no name", path.display())
            }
            PluginError::MissingCallback { path, name } => write!(
                f,
                "plugin {}: the required callback {name} is missing",
                path.display()
            ),
            PluginError::CreateFailed {
                path,
                plugin,
                message,
            } => write!(
                f,
                "plugin {} ({plugin}): refused its configuration: {message}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PluginError {}

/// A plugin call that went wrong. The request should be answered 500 and the failure counted;
/// the plugin stays loaded and later calls proceed normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The callback returned a negative code.
    Failed {
        /// The plugin's name.
        plugin: String,
        /// The code.
        code: i32,
    },
    /// A Rust plugin panicked; the wrapper caught it.
    Panicked {
        /// The plugin's name.
        plugin: String,
    },
    /// The callback returned a code the ABI does not define for this phase.
    UnexpectedCode {
        /// The plugin's name.
        plugin: String,
        /// The code.
        code: i32,
    },
    /// The callback returned "answered" without calling `respond`.
    AnsweredWithoutRespond {
        /// The plugin's name.
        plugin: String,
    },
    /// The plugin set a header whose name or value is not valid HTTP.
    InvalidHeader {
        /// The plugin's name.
        plugin: String,
        /// The name (escaped, shortened).
        name: String,
    },
    /// The plugin set a path that is not a valid origin-form path and query.
    InvalidPath {
        /// The plugin's name.
        plugin: String,
        /// The path (escaped, shortened).
        path: String,
    },
    /// The plugin answered with a status outside 100..=999.
    InvalidStatus {
        /// The plugin's name.
        plugin: String,
        /// The status.
        status: u32,
    },
    /// The plugin answered with a body above [`MAX_RESPOND_BODY`].
    BodyTooLarge {
        /// The plugin's name.
        plugin: String,
        /// The body's length.
        len: usize,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Failed { plugin, code } => {
                write!(f, "plugin {plugin} failed (code {code})")
            }
            CallError::Panicked { plugin } => write!(f, "plugin {plugin} panicked"),
            CallError::UnexpectedCode { plugin, code } => {
                write!(f, "plugin {plugin} returned the undefined code {code}")
            }
            CallError::AnsweredWithoutRespond { plugin } => {
                write!(
                    f,
                    "plugin {plugin} said it answered but never called respond"
                )
            }
            CallError::InvalidHeader { plugin, name } => {
                write!(f, "plugin {plugin} set an invalid header {name:?}")
            }
            CallError::InvalidPath { plugin, path } => {
                write!(f, "plugin {plugin} set an invalid path {path:?}")
            }
            CallError::InvalidStatus { plugin, status } => {
                write!(
                    f,
                    "plugin {plugin} answered with the invalid status {status}"
                )
            }
            CallError::BodyTooLarge { plugin, len } => write!(
                f,
                "plugin {plugin} answered with {len} bytes, above the {MAX_RESPOND_BODY}-byte cap"
            ),
        }
    }
}

impl std::error::Error for CallError {}

/// What the request callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on: route and forward the (possibly modified) request.
    Continue,
    /// Answer the client with this instead of forwarding.
    Respond {
        /// The status.
        status: StatusCode,
        /// The body (at most [`MAX_RESPOND_BODY`] bytes).
        body: Vec<u8>,
    },
}

/// The request as a plugin sees it: headers, method and URI (the path may be rewritten), and
/// the model it names if known.
#[derive(Debug)]
pub struct RequestView<'a> {
    /// The request head; plugins may change its headers and its URI's path and query.
    pub parts: &'a mut http::request::Parts,
    /// The model the request names, if known.
    pub model: Option<&'a str>,
}

/// The response head as a plugin sees it.
#[derive(Debug)]
pub struct ResponseView<'a> {
    /// The status from the backend (read-only to plugins).
    pub status: StatusCode,
    /// The response headers; plugins may change them.
    pub headers: &'a mut HeaderMap,
    /// The request's method.
    pub method: &'a Method,
    /// The model the request named, if known.
    pub model: Option<&'a str>,
}

/// A completed request, as reported to plugins.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The status sent to the client.
    pub status: StatusCode,
    /// Request body bytes received.
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// From the request's arrival to the end of the response, in microseconds.
    pub duration_us: u64,
    /// The model the request named, if known.
    pub model: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// `unsafe` stays confined to this module: the crate denies it, and only `lib.rs` may lift
    /// that, once, for `mod plugin`.
    #[test]
    fn unsafe_is_allowed_only_for_the_plugin_module() {
        let needle = ["allow(", "unsafe_code)"].concat();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![src.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path != src.join("plugin") {
                        stack.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let lines: Vec<&str> = text.lines().collect();
                    for (i, line) in lines.iter().enumerate() {
                        let sanctioned = path == src.join("lib.rs")
                            && line.trim() == format!("#[{needle}]")
                            && lines
                                .get(i + 1)
                                .is_some_and(|l| l.trim() == "pub mod plugin;");
                        if line.contains(&needle) && !sanctioned {
                            offenders.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "unsafe allowed outside src/plugin/: {offenders:?}"
        );
        let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
        assert!(
            lib.contains("#![deny(unsafe_code)]"),
            "lib.rs must deny unsafe_code"
        );
    }
}
