//! The model-count example plugin, written in C (`model_count.c`), as the workspace builds it:
//! build.rs compiles the C file into this library, and this shim exports its entry point (a
//! Rust `cdylib` exports only the symbols Rust defines). The plugin itself is all C; see the
//! C file for what it does and how to build it on its own with `cc`.

use switchyard_plugin_api::PluginDescriptor;

extern "C" {
    /// `switchyard_plugin_v1` of model_count.c, renamed by build.rs.
    fn model_count_entry() -> *const PluginDescriptor;
}

/// The plugin's entry point (see `switchyard_plugin_api::ENTRY_SYMBOL`): the C plugin's.
#[no_mangle]
pub extern "C" fn switchyard_plugin_v1() -> *const PluginDescriptor {
    // SAFETY: the C function takes nothing, touches no state and returns a pointer to its
    // static descriptor, laid out as `PluginDescriptor` (the header and the Rust definitions
    // are kept in step by crates/plugin-api/tests/c_header.rs).
    unsafe { model_count_entry() }
}
