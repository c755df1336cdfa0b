//! Opening a plugin library: the entry symbol, the ABI version check, the instance's creation,
//! and its teardown (destroy the instance, then unload the library).

use super::PluginError;
use libloading::Library;
use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_plugin_api::{
    CompleteFn, DestroyFn, EntryFn, KeyValue, PhaseFn, PluginDescriptor, Str, ABI_VERSION,
    ENTRY_SYMBOL,
};

/// The longest error message the host accepts from a plugin's `create`.
const CREATE_ERROR_CAP: usize = 1024;

/// A loaded plugin instance. Cheap to clone (shared); the instance is destroyed and the library
/// unloaded when the last clone is dropped, so a library is never unloaded while in use.
///
/// Callbacks may be called from several threads at once (one reactor per thread): the ABI
/// requires plugins to be thread-safe, which is why this type is `Send + Sync`.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub(super) inner: Arc<Instance>,
}

/// One instance and the library it came from.
pub(super) struct Instance {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) instance: *mut c_void,
    pub(super) destroy: Option<DestroyFn>,
    pub(super) on_request: Option<PhaseFn>,
    pub(super) on_response: Option<PhaseFn>,
    pub(super) on_complete: Option<CompleteFn>,
    /// Declared last and only dropped after `Drop::drop` ran `destroy`: the code stays mapped
    /// until the instance is gone.
    _library: Library,
}

// SAFETY: the instance pointer is only passed to the plugin's own callbacks, which the ABI
// requires to be callable from any thread, concurrently; the rest is plain data and function
// pointers into a library kept loaded by this value.
unsafe impl Send for Instance {}
// SAFETY: as for `Send`: concurrent calls on one instance are part of the ABI contract.
unsafe impl Sync for Instance {}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(destroy) = self.destroy {
            // SAFETY: `instance` came from this library's `create`, which is still loaded
            // (`_library` is dropped after this); no call is in flight since this is the last
            // reference; `destroy` is called once.
            unsafe { destroy(self.instance) };
        }
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.inner.name)
            .field("path", &self.inner.path)
            .finish()
    }
}

impl LoadedPlugin {
    /// Loads the plugin library at `path` and creates an instance configured by `config`
    /// (the key/value pairs of its section, in order).
    ///
    /// Loading runs the library's initialisers: only load files you trust as much as the
    /// switchyard binary itself.
    pub fn load(path: impl AsRef<Path>, config: &[(String, String)]) -> Result<Self, PluginError> {
        let path = path.as_ref().to_path_buf();
        // SAFETY: opening a library runs its initialisers (and later its finalisers); the
        // operator named this file as a plugin, and plugins are trusted native code.
        let library = unsafe { Library::new(&path) }.map_err(|e| PluginError::NotALibrary {
            path: path.clone(),
            cause: e.to_string(),
        })?;
        // SAFETY: the ABI declares the entry symbol as an `EntryFn`; a library exporting that
        // name with another type breaks the contract it claims by exporting it.
        let entry: EntryFn = match unsafe { library.get::<EntryFn>(ENTRY_SYMBOL) } {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(PluginError::MissingSymbol {
                    path,
                    symbol: "switchyard_plugin_v1",
                })
            }
        };
        // SAFETY: the entry point takes nothing and returns a descriptor pointer (ABI).
        let descriptor = unsafe { entry() };
        if descriptor.is_null() {
            return Err(PluginError::NullDescriptor { path });
        }
        // SAFETY: in every ABI version the descriptor starts with the `u32` version, so this
        // read is valid before the version is known; the rest is read only once it matches.
        let found = unsafe { descriptor.cast::<u32>().read() };
        if found != ABI_VERSION {
            return Err(PluginError::AbiMismatch {
                path,
                found,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: the version matches, so the pointer is to a v1 `PluginDescriptor`, valid
        // while the library is loaded; it is copied.
        let d: PluginDescriptor = unsafe { descriptor.read() };
        if d.name.is_null() {
            return Err(PluginError::MissingName { path });
        }
        // SAFETY: a non-null name is a NUL-terminated string in the library (ABI); copied.
        let name = unsafe { CStr::from_ptr(d.name) }
            .to_string_lossy()
            .into_owned();
        let Some(create) = d.create else {
            return Err(PluginError::MissingCallback {
                path,
                name: "create",
            });
        };
        let instance =
            create_instance(create, config).map_err(|message| PluginError::CreateFailed {
                path: path.clone(),
                plugin: name.clone(),
                message,
            })?;
        Ok(LoadedPlugin {
            inner: Arc::new(Instance {
                name,
                path,
                instance,
                destroy: d.destroy,
                on_request: d.on_request,
                on_response: d.on_response,
                on_complete: d.on_complete,
                _library: library,
            }),
        })
    }

    /// Whether the plugin has a completion callback.
    pub fn has_on_complete(&self) -> bool {
        self.inner.on_complete.is_some()
    }

    /// The name the plugin gives itself (its descriptor's).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The library file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

/// Calls `create` with the configuration pairs; the error is the plugin's message.
fn create_instance(
    create: switchyard_plugin_api::CreateFn,
    config: &[(String, String)],
) -> Result<*mut c_void, String> {
    let pairs: Vec<KeyValue> = config
        .iter()
        .map(|(k, v)| KeyValue {
            key: Str::new(k.as_bytes()),
            value: Str::new(v.as_bytes()),
        })
        .collect();
    let mut instance: *mut c_void = std::ptr::null_mut();
    let mut err = vec![0u8; CREATE_ERROR_CAP];
    let mut err_len = 0usize;
    // SAFETY: `pairs` (and the strings it borrows from `config`) outlive the call; the out
    // pointers are valid and writable; the error buffer holds `CREATE_ERROR_CAP` bytes.
    let rc = unsafe {
        create(
            pairs.as_ptr(),
            pairs.len(),
            &mut instance,
            err.as_mut_ptr(),
            err.len(),
            &mut err_len,
        )
    };
    if rc >= 0 {
        return Ok(instance);
    }
    err.truncate(err_len.min(CREATE_ERROR_CAP));
    let message = String::from_utf8_lossy(&err).into_owned();
    Err(if message.is_empty() {
        format!("create failed with code {rc} and no message")
    } else {
        message
    })
}
