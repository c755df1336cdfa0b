//! A switchyard plugin that does nothing: its request callback lets every request through
//! unchanged. It registers no response and no completion callback, so a route with it pays
//! only for the request call (and the model read every route with plugins does); the
//! benchmark `bench/plugin.sh` measures that cost. It takes no configuration.

use std::ffi::CStr;
use switchyard_plugin_api::{export_plugin, Config, Flow, Plugin, Request};

/// The plugin instance (nothing to keep).
pub struct Noop;

impl Plugin for Noop {
    const NAME: &'static CStr = c"noop";
    // Left out, so that the host skips these phases for this plugin.
    const ON_RESPONSE: bool = false;
    const ON_COMPLETE: bool = false;

    fn create(_config: &Config) -> Result<Self, String> {
        Ok(Noop)
    }

    fn on_request(&self, _req: &mut Request<'_>) -> Flow {
        Flow::Continue
    }
}

export_plugin!(Noop);
