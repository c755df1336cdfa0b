/*
 * model-count: an example switchyard plugin in C.
 *
 * Counts completed requests per model (on_complete, from the host's model, "unknown" when the
 * host has none) and reports the running count for the request's model in the response header
 * x-model-count (on_response; the model comes from the host, falling back to the response
 * header x-model). Thread-safe: one mutex guards the table.
 *
 * Configuration: `header` (optional) renames the reported header (default x-model-count).
 *
 * Build: `cargo build -p switchyard-plugin-model-count` (target/debug/libmodel_count.so; see
 * build.rs), or on its own:
 *        cc -shared -fPIC -I crates/plugin-api/include -o libmodel_count.so \
 *            plugins/model-count/model_count.c -lpthread
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchyard_plugin.h"

#define MAX_MODELS 256
#define MAX_NAME 128
#define MAX_HEADER 64

typedef struct {
    char name[MAX_NAME];
    size_t len;
    unsigned long long count;
} model_slot;

typedef struct {
    pthread_mutex_t lock;
    model_slot slots[MAX_MODELS];
    size_t used;
    char header[MAX_HEADER];
    size_t header_len;
} model_count;

static const uint8_t UNKNOWN[] = "unknown";

/* The slot for `name` (truncated to MAX_NAME); with create != 0 a new one is added if there is
 * room. Call with the lock held. */
static model_slot *find(model_count *mc, const uint8_t *name, size_t len, int create) {
    if (len > MAX_NAME) len = MAX_NAME;
    for (size_t i = 0; i < mc->used; i++) {
        if (mc->slots[i].len == len && memcmp(mc->slots[i].name, name, len) == 0) {
            return &mc->slots[i];
        }
    }
    if (!create || mc->used == MAX_MODELS) return NULL;
    model_slot *s = &mc->slots[mc->used++];
    memcpy(s->name, name, len);
    s->len = len;
    s->count = 0;
    return s;
}

static void set_error(const char *msg, uint8_t *buf, size_t cap, size_t *len) {
    size_t n = strlen(msg);
    if (n > cap) n = cap;
    if (buf && len) {
        memcpy(buf, msg, n);
        *len = n;
    }
}

static int32_t mc_create(const sy_key_value *config, size_t config_len, void **instance_out,
                         uint8_t *err_buf, size_t err_cap, size_t *err_len) {
    model_count *mc = calloc(1, sizeof *mc);
    if (!mc) {
        set_error("out of memory", err_buf, err_cap, err_len);
        return SY_ERROR;
    }
    memcpy(mc->header, "x-model-count", 13);
    mc->header_len = 13;
    for (size_t i = 0; i < config_len; i++) {
        if (config[i].key.len == 6 && memcmp(config[i].key.ptr, "header", 6) == 0) {
            if (config[i].value.len == 0 || config[i].value.len > MAX_HEADER) {
                free(mc);
                set_error("header: give a header name of 1 to 64 bytes", err_buf, err_cap,
                          err_len);
                return SY_ERROR;
            }
            memcpy(mc->header, config[i].value.ptr, config[i].value.len);
            mc->header_len = config[i].value.len;
        }
    }
    if (pthread_mutex_init(&mc->lock, NULL) != 0) {
        free(mc);
        set_error("pthread_mutex_init failed", err_buf, err_cap, err_len);
        return SY_ERROR;
    }
    *instance_out = mc;
    return SY_CONTINUE;
}

static void mc_destroy(void *instance) {
    model_count *mc = instance;
    pthread_mutex_destroy(&mc->lock);
    free(mc);
}

static int32_t mc_on_response(void *instance, const sy_host_api *host, void *ctx) {
    model_count *mc = instance;
    sy_str model = {0};
    if (host->get_model(ctx, &model) != 1) {
        sy_str x_model = {(const uint8_t *)"x-model", 7};
        if (host->get_header(ctx, x_model, &model) != 1) {
            model.ptr = UNKNOWN;
            model.len = sizeof UNKNOWN - 1;
        }
    }
    unsigned long long count = 0;
    pthread_mutex_lock(&mc->lock);
    model_slot *s = find(mc, model.ptr, model.len, 0);
    if (s) count = s->count;
    pthread_mutex_unlock(&mc->lock);
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%llu", count);
    sy_str name = {(const uint8_t *)mc->header, mc->header_len};
    sy_str value = {(const uint8_t *)digits, (size_t)n};
    return host->set_header(ctx, name, value) == 0 ? SY_CONTINUE : SY_ERROR;
}

static int32_t mc_on_complete(void *instance, const sy_completion *info) {
    model_count *mc = instance;
    const uint8_t *name = info->model.len ? info->model.ptr : UNKNOWN;
    size_t len = info->model.len ? info->model.len : sizeof UNKNOWN - 1;
    pthread_mutex_lock(&mc->lock);
    model_slot *s = find(mc, name, len, 1);
    if (s) s->count++;
    pthread_mutex_unlock(&mc->lock);
    return SY_CONTINUE;
}

static const sy_plugin_descriptor DESCRIPTOR = {
    .abi_version = SWITCHYARD_ABI_VERSION,
    .name = "model-count",
    .create = mc_create,
    .destroy = mc_destroy,
    .on_request = NULL,
    .on_response = mc_on_response,
    .on_complete = mc_on_complete,
};

/* The entry point: switchyard_plugin_v1 in a library built from this file alone. The cargo
 * build renames it (build.rs) and exports switchyard_plugin_v1 from its Rust shim, since a
 * Rust cdylib exports only symbols defined in Rust. */
#ifndef SY_MODEL_COUNT_ENTRY
#define SY_MODEL_COUNT_ENTRY switchyard_plugin_v1
#endif

const sy_plugin_descriptor *SY_MODEL_COUNT_ENTRY(void) {
    return &DESCRIPTOR;
}
