//! An example switchyard plugin: answers 401 to requests without an allowed API key, and adds
//! a header to the requests it lets through.
//!
//! Configuration (the plugin's key/value pairs):
//! - `header`: the request header carrying the key (default `x-api-key`);
//! - `keys`: the allowed keys, comma-separated (required, at least one);
//! - `add_header`: optional `name: value` added to every request let through.

use std::ffi::CStr;
use switchyard_plugin_api::{export_plugin, Config, Flow, Plugin, Request};

/// The plugin instance: its parsed configuration.
pub struct ApiKey {
    header: String,
    keys: Vec<Vec<u8>>,
    add: Option<(String, String)>,
}

impl Plugin for ApiKey {
    const NAME: &'static CStr = c"api-key";
    // Requests only: the host skips the response and completion phases for this plugin.
    const ON_RESPONSE: bool = false;
    const ON_COMPLETE: bool = false;

    fn create(config: &Config) -> Result<Self, String> {
        let header = config
            .get("header")
            .unwrap_or("x-api-key")
            .trim()
            .to_ascii_lowercase();
        let keys: Vec<Vec<u8>> = config
            .get("keys")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err("keys: give at least one allowed API key (comma-separated)".into());
        }
        let add = match config.get("add_header") {
            None => None,
            Some(spec) => {
                let (name, value) = spec
                    .split_once(':')
                    .ok_or_else(|| format!("add_header: expected `name: value`, got {spec:?}"))?;
                Some((name.trim().to_string(), value.trim().to_string()))
            }
        };
        Ok(ApiKey { header, keys, add })
    }

    fn on_request(&self, req: &mut Request<'_>) -> Flow {
        let allowed = req
            .header(&self.header)
            .is_some_and(|k| self.keys.contains(&k));
        if !allowed {
            return match req.respond(401, b"missing or unknown API key\n") {
                Ok(()) => Flow::Answered,
                Err(_) => Flow::Error,
            };
        }
        if let Some((name, value)) = &self.add {
            if req.set_header(name, value.as_bytes()).is_err() {
                return Flow::Error;
            }
        }
        Flow::Continue
    }
}

export_plugin!(ApiKey);
