//! The plugins of one config generation: every `[plugin NAME]` section loaded once, and per
//! route the instances its `plugins` key names, in order.
//!
//! A reload loads a section again only when its `path` or settings changed; an unchanged one
//! keeps its instance (and whatever the plugin keeps in it, and its counters). An instance
//! dropped by a reload is destroyed, and its library unloaded, once the last request that
//! started under the old generation has finished with it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use switchyard_config::{Config, PluginConfig};

use super::{LoadedPlugin, PluginError};

/// What a plugin has done, over the life of its instance.
#[derive(Debug, Default)]
pub struct PluginCounters {
    /// Requests it answered itself (a deny, say).
    pub answered: AtomicU64,
    /// Calls that failed (an error code, a panic, an invalid header or path): each one a 500.
    pub failed: AtomicU64,
}

/// One loaded `[plugin NAME]` section.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The section as configured.
    pub config: PluginConfig,
    /// Its instance.
    pub plugin: LoadedPlugin,
    /// Its counters.
    pub counters: Arc<PluginCounters>,
}

/// A route's plugins, in order, with their counters.
pub type Chain = Arc<[Slot]>;

/// Every plugin of a generation, and each route's chain.
#[derive(Debug, Default)]
pub struct Plugins {
    /// In the config's order.
    pub slots: Vec<Slot>,
    /// Per route (the config's order), its chain; empty for a route without plugins.
    pub routes: Vec<Chain>,
}

/// A `[plugin NAME]` that could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    /// The section's name.
    pub section: String,
    /// Why.
    pub source: PluginError,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[plugin {}]: {}", self.section, self.source)
    }
}

impl std::error::Error for LoadError {}

impl Plugins {
    /// Loads `config`'s plugins, keeping `previous`'s instance of every section whose path
    /// and settings are unchanged.
    pub fn load(config: &Config, previous: Option<&Plugins>) -> Result<Self, LoadError> {
        let mut slots = Vec::with_capacity(config.plugins.len());
        for p in &config.plugins {
            let kept = previous.and_then(|prev| prev.slots.iter().find(|s| s.config == *p));
            let slot = match kept {
                Some(s) => s.clone(),
                None => Slot {
                    plugin: LoadedPlugin::load(&p.path, &p.settings).map_err(|source| {
                        LoadError {
                            section: p.name.clone(),
                            source,
                        }
                    })?,
                    config: p.clone(),
                    counters: Arc::default(),
                },
            };
            slots.push(slot);
        }
        let routes = config
            .routes
            .iter()
            .map(|r| {
                r.traffic
                    .plugins
                    .iter()
                    .filter_map(|name| slots.iter().find(|s| s.config.name == *name).cloned())
                    .collect::<Vec<_>>()
                    .into()
            })
            .collect();
        Ok(Plugins { slots, routes })
    }

    /// `/stats`' view: per plugin, its section, library, and counters.
    pub fn report(&self) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .slots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.config.name,
                    "path": s.config.path,
                    "plugin": s.plugin.name(),
                    "answered": s.counters.answered.load(Ordering::Relaxed),
                    "failed": s.counters.failed.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }
}
