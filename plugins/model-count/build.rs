//! Compiles model_count.c into this crate's library, with its entry point renamed (the Rust
//! shim in src/lib.rs exports `switchyard_plugin_v1`).

fn main() {
    println!("cargo:rerun-if-changed=model_count.c");
    println!("cargo:rerun-if-changed=../../crates/plugin-api/include/switchyard_plugin.h");
    cc::Build::new()
        .file("model_count.c")
        .include("../../crates/plugin-api/include")
        .define("SY_MODEL_COUNT_ENTRY", "model_count_entry")
        .flag("-std=c11")
        .warnings_into_errors(true)
        .compile("model_count");
    println!("cargo:rustc-link-lib=pthread");
}
