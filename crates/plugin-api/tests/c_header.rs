//! Compiles a C program against `include/switchyard_plugin.h` and checks that every size and
//! field offset it prints agrees with the Rust definitions.

use core::mem::{offset_of, size_of};
use std::process::Command;
use switchyard_plugin_api::{CompletionInfo, HostApi, KeyValue, PluginDescriptor, Str};

const PROGRAM: &str = r#"
#include <stdio.h>
#include "switchyard_plugin.h"
#define S(t) printf(#t " size %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
int main(void) {
    S(sy_str) O(sy_str, ptr) O(sy_str, len)
    S(sy_key_value) O(sy_key_value, key) O(sy_key_value, value)
    S(sy_host_api) O(sy_host_api, abi_version) O(sy_host_api, phase) O(sy_host_api, get_header)
    O(sy_host_api, set_header) O(sy_host_api, add_header) O(sy_host_api, remove_header)
    O(sy_host_api, get_path) O(sy_host_api, set_path) O(sy_host_api, get_method)
    O(sy_host_api, get_model) O(sy_host_api, get_status) O(sy_host_api, respond)
    S(sy_completion) O(sy_completion, status) O(sy_completion, request_bytes)
    O(sy_completion, response_bytes) O(sy_completion, duration_us) O(sy_completion, model)
    S(sy_plugin_descriptor) O(sy_plugin_descriptor, abi_version) O(sy_plugin_descriptor, name)
    O(sy_plugin_descriptor, create) O(sy_plugin_descriptor, destroy)
    O(sy_plugin_descriptor, on_request) O(sy_plugin_descriptor, on_response)
    O(sy_plugin_descriptor, on_complete)
    printf("SWITCHYARD_ABI_VERSION %u\n", SWITCHYARD_ABI_VERSION);
    printf("SY_MAX_RESPOND_BODY %u\n", SY_MAX_RESPOND_BODY);
    printf("SY_ANSWERED %d\n", SY_ANSWERED);
    printf("SY_PANICKED %d\n", SY_PANICKED);
    printf("SY_E_INVALID %d\n", SY_E_INVALID);
    printf("SY_E_UNSUPPORTED %d\n", SY_E_UNSUPPORTED);
    printf("SY_E_TOO_LARGE %d\n", SY_E_TOO_LARGE);
    return 0;
}
"#;

fn rust_side() -> Vec<String> {
    use switchyard_plugin_api as api;
    let mut v = Vec::new();
    macro_rules! s {
        ($c:literal, $t:ty) => {
            v.push(format!("{} size {}", $c, size_of::<$t>()))
        };
    }
    macro_rules! o {
        ($c:literal, $t:ty, $($f:ident),+) => {
            $(v.push(format!("{}.{} {}", $c, stringify!($f), offset_of!($t, $f)));)+
        };
    }
    s!("sy_str", Str);
    o!("sy_str", Str, ptr, len);
    s!("sy_key_value", KeyValue);
    o!("sy_key_value", KeyValue, key, value);
    s!("sy_host_api", HostApi);
    o!("sy_host_api", HostApi, abi_version, phase, get_header);
    o!(
        "sy_host_api",
        HostApi,
        set_header,
        add_header,
        remove_header
    );
    o!("sy_host_api", HostApi, get_path, set_path, get_method);
    o!("sy_host_api", HostApi, get_model, get_status, respond);
    s!("sy_completion", CompletionInfo);
    o!("sy_completion", CompletionInfo, status, request_bytes);
    o!(
        "sy_completion",
        CompletionInfo,
        response_bytes,
        duration_us,
        model
    );
    s!("sy_plugin_descriptor", PluginDescriptor);
    o!("sy_plugin_descriptor", PluginDescriptor, abi_version, name);
    o!("sy_plugin_descriptor", PluginDescriptor, create, destroy);
    o!(
        "sy_plugin_descriptor",
        PluginDescriptor,
        on_request,
        on_response
    );
    o!("sy_plugin_descriptor", PluginDescriptor, on_complete);
    v.push(format!("SWITCHYARD_ABI_VERSION {}", api::ABI_VERSION));
    v.push(format!("SY_MAX_RESPOND_BODY {}", api::MAX_RESPOND_BODY));
    v.push(format!("SY_ANSWERED {}", api::ANSWERED));
    v.push(format!("SY_PANICKED {}", api::PANICKED));
    v.push(format!("SY_E_INVALID {}", api::E_INVALID));
    v.push(format!("SY_E_UNSUPPORTED {}", api::E_UNSUPPORTED));
    v.push(format!("SY_E_TOO_LARGE {}", api::E_TOO_LARGE));
    v
}

#[test]
fn c_header_layout_matches_rust() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-api-layout");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, PROGRAM).unwrap();
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-I", include, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("run cc (a C compiler is needed to check the header)");
    assert!(status.success(), "the C layout program did not compile");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let c_side: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(c_side, rust_side());
}
