/*
 * switchyard plugin ABI, version 1. Kept in step with crates/plugin-api/src/abi.rs; a test
 * compiles this header and checks every size and field offset against the Rust definitions.
 *
 * A plugin is a shared library exporting one function, switchyard_plugin_v1, returning a
 * pointer to a descriptor that stays valid until the library is unloaded.
 *
 * Rules:
 * - Strings are (pointer, length) byte slices: not NUL-terminated, not necessarily UTF-8.
 *   The plugin name in the descriptor is the one NUL-terminated string.
 * - Every pointer the host passes to a callback is valid only until that callback returns.
 *   A string read through the host table is also invalidated by the next call changing the
 *   request or response (set/add/remove header, set path). Copy what you keep.
 * - Callbacks may run on several threads at once, for the same instance: be thread-safe.
 * - The host refuses a descriptor whose abi_version is not SWITCHYARD_ABI_VERSION.
 */
#ifndef SWITCHYARD_PLUGIN_H
#define SWITCHYARD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SWITCHYARD_ABI_VERSION 1u

/* Callback results. */
#define SY_CONTINUE 0   /* carry on */
#define SY_ANSWERED 1   /* request phase: the plugin called respond() */
#define SY_ERROR (-1)   /* any negative value is an error; the host answers 500 */
#define SY_PANICKED (-2) /* a Rust plugin panicked (set by the Rust wrapper) */

/* Host function results (besides 0 = done, and 1/0 = found/absent for getters). */
#define SY_E_INVALID (-3)     /* not a valid header name/value, path or status */
#define SY_E_UNSUPPORTED (-4) /* not available in this phase */
#define SY_E_TOO_LARGE (-5)   /* respond() body above SY_MAX_RESPOND_BODY */

#define SY_MAX_RESPOND_BODY (1u << 20)

#define SY_PHASE_REQUEST 1u
#define SY_PHASE_RESPONSE 2u

/* A borrowed byte string; ptr may be NULL only when len is 0. */
typedef struct sy_str {
    const uint8_t *ptr;
    size_t len;
} sy_str;

/* One configuration pair from the plugin's INI section. */
typedef struct sy_key_value {
    sy_str key;
    sy_str value;
} sy_key_value;

/*
 * Host functions for one request or response callback; pass ctx as the first argument.
 * Getters write *out and return 1 if the value exists, 0 if not. Setters return 0 or a
 * negative SY_E_* code; setting an invalid header/path/status or answering with a body over
 * SY_MAX_RESPOND_BODY also fails the call as a whole.
 */
typedef struct sy_host_api {
    uint32_t abi_version; /* SWITCHYARD_ABI_VERSION */
    uint32_t phase;       /* SY_PHASE_REQUEST or SY_PHASE_RESPONSE */
    int32_t (*get_header)(void *ctx, sy_str name, sy_str *out);
    int32_t (*set_header)(void *ctx, sy_str name, sy_str value);
    int32_t (*add_header)(void *ctx, sy_str name, sy_str value);
    int32_t (*remove_header)(void *ctx, sy_str name);
    int32_t (*get_path)(void *ctx, sy_str *out);    /* request phase only */
    int32_t (*set_path)(void *ctx, sy_str path);    /* request phase only; starts with '/' */
    int32_t (*get_method)(void *ctx, sy_str *out);
    int32_t (*get_model)(void *ctx, sy_str *out);   /* 0 if the host does not know it */
    int32_t (*get_status)(void *ctx);               /* response phase only */
    int32_t (*respond)(void *ctx, uint32_t status, sy_str body); /* request phase only */
} sy_host_api;

/* A completed request, for logging or metering; valid only during on_complete. */
typedef struct sy_completion {
    uint32_t status;
    uint64_t request_bytes;
    uint64_t response_bytes;
    uint64_t duration_us;
    sy_str model; /* empty if unknown */
} sy_completion;

typedef struct sy_plugin_descriptor {
    uint32_t abi_version; /* SWITCHYARD_ABI_VERSION; the first field in every version */
    const char *name;     /* NUL-terminated */
    /* Required. On success store the instance in *instance_out and return 0; on failure
     * return a negative code and write up to err_cap bytes of a message to err_buf, its
     * length to *err_len. */
    int32_t (*create)(const sy_key_value *config, size_t config_len, void **instance_out,
                      uint8_t *err_buf, size_t err_cap, size_t *err_len);
    /* Optional (may be NULL). Called once, after every other call has returned. */
    void (*destroy)(void *instance);
    int32_t (*on_request)(void *instance, const sy_host_api *host, void *ctx);
    int32_t (*on_response)(void *instance, const sy_host_api *host, void *ctx);
    int32_t (*on_complete)(void *instance, const sy_completion *info);
} sy_plugin_descriptor;

/* The one symbol a plugin exports. */
typedef const sy_plugin_descriptor *(*sy_entry_fn)(void);
const sy_plugin_descriptor *switchyard_plugin_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* SWITCHYARD_PLUGIN_H */
