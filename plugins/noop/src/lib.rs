//! A switchyard plugin that does nothing: its request callback lets every request through
//! unchanged. It registers no response and no completion callback, so a route with it pays
//! only for the request call (and the model read every route with plugins does); the
//! benchmark `bench/plugin.sh` measures that cost. It takes no configuration.

use std::ffi::CStr;
use switchyard_plugin_api::{descriptor, Config, Flow, Plugin, PluginDescriptor, Request};

/// The plugin instance (nothing to keep).
pub struct Noop;

impl Plugin for Noop {
    const NAME: &'static CStr = c"noop";

    fn create(_config: &Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        Flow::Continue
    }
}

/// The plugin's entry point (see `switchyard_plugin_api::ENTRY_SYMBOL`): the descriptor
/// `export_plugin!` would give, without the response and completion callbacks, so that the
/// host skips those phases for this plugin.
#[no_mangle]
pub extern "C" fn switchyard_plugin_v1() -> *const PluginDescriptor {
    static DESCRIPTOR: PluginDescriptor = PluginDescriptor {
        on_response: None,
        on_complete: None,
        ..descriptor::<Noop>()
    };
    &DESCRIPTOR
}
