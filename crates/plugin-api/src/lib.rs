//! The stable C ABI between switchyard and its plugins, version [`ABI_VERSION`].
//!
//! A plugin is a shared library (`.so`) exporting one symbol, [`ENTRY_SYMBOL`]
//! (`switchyard_plugin_v1`): a function taking nothing and returning a pointer to a
//! [`PluginDescriptor`] that lives as long as the library. The descriptor's first field is
//! always the ABI version; the host reads it before anything else and refuses a library whose
//! version is not [`ABI_VERSION`]. The version is bumped on any change of layout or meaning.
//!
//! The same types are declared for C in `include/switchyard_plugin.h`; a test compiles that
//! header and checks that sizes and field offsets agree with this crate.
//!
//! Rules that hold across the whole ABI:
//! - Strings cross as [`Str`] byte slices (pointer and length), never NUL-terminated and never
//!   required to be UTF-8; the only exception is [`PluginDescriptor::name`].
//! - Every pointer the host passes to a callback (config pairs, the host table, the call
//!   context, the completion record, strings read through the host table) is valid only until
//!   that callback returns; a plugin that needs the data later copies it.
//! - A string read through the host table is also invalidated by the next call that changes
//!   the request or response (set/add/remove header, set path).
//! - Callbacks may run on several threads at once, for the same instance: instances must be
//!   thread-safe.
//! - Callbacks must not unwind into the host. The Rust wrapper ([`Plugin`], [`export_plugin!`])
//!   catches panics and returns [`PANICKED`].
//!
//! Writing a plugin in Rust: implement [`Plugin`] and call [`export_plugin!`].
#![deny(missing_docs)]

mod abi;
mod export;
mod plugin;

pub use abi::*;
pub use export::descriptor;
pub use plugin::{Completion, Config, Flow, Plugin, Request, Response};
