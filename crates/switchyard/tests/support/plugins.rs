//! The plugins under test, built once per test process: the example plugins (and the no-op
//! one) with cargo, and again the C plugin and deliberately broken libraries with `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the libraries under test.
pub struct Libs {
    /// plugins/api-key.
    pub api_key: PathBuf,
    /// plugins/test-faults.
    pub faults: PathBuf,
    /// plugins/noop.
    pub noop: PathBuf,
    /// plugins/model-count (C), compiled here with `cc`.
    pub model_count: PathBuf,
    /// plugins/model-count as the workspace builds it (cargo: build.rs and a Rust shim).
    pub model_count_cargo: PathBuf,
    /// A descriptor reporting ABI version 999.
    pub wrong_abi: PathBuf,
    /// A shared library without the `switchyard_plugin_v1` symbol.
    pub no_symbol: PathBuf,
    /// A descriptor without `create`.
    pub no_create: PathBuf,
    /// A text file named like a library.
    pub text: PathBuf,
}

const WRONG_ABI_C: &str = r#"
#include "switchyard_plugin.h"
static const sy_plugin_descriptor D = { .abi_version = 999, .name = "future" };
const sy_plugin_descriptor *switchyard_plugin_v1(void) { return &D; }
"#;

const NO_SYMBOL_C: &str = "int not_a_plugin(void) { return 1; }\n";

const NO_CREATE_C: &str = r#"
#include "switchyard_plugin.h"
static const sy_plugin_descriptor D = { .abi_version = SWITCHYARD_ABI_VERSION, .name = "x" };
const sy_plugin_descriptor *switchyard_plugin_v1(void) { return &D; }
"#;

/// Compiles the C file `src` into the shared library `out` against the plugin header.
pub fn cc(src: &Path, out: &Path) {
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api/include");
    let status = Command::new("cc")
        .args([
            "-std=c11", "-Wall", "-Werror", "-shared", "-fPIC", "-I", include, "-o",
        ])
        .arg(out)
        .arg(src)
        .arg("-lpthread")
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed for {}", src.display());
}

/// Builds every library once per test process.
pub fn libs() -> &'static Libs {
    static LIBS: OnceLock<Libs> = OnceLock::new();
    LIBS.get_or_init(|| {
        let root_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        // The C libraries per process: two test binaries running at once must not write the
        // same file while the other loads it.
        let dir = root_dir.join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        // A target directory of its own: the outer cargo may hold the lock on its own. Shared
        // between processes; cargo locks it.
        let target = root_dir.join("target");
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--manifest-path", root])
            .args([
                "-p",
                "switchyard-plugin-api-key",
                "-p",
                "switchyard-plugin-test-faults",
                "-p",
                "switchyard-plugin-noop",
                "-p",
                "switchyard-plugin-model-count",
            ])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("run cargo build for the example plugins");
        assert!(status.success(), "building the example plugins failed");
        let c = |name: &str, src: &str| {
            let file = dir.join(format!("{name}.c"));
            std::fs::write(&file, src).unwrap();
            let lib = dir.join(format!("lib{name}.so"));
            cc(&file, &lib);
            lib
        };
        let model_count = dir.join("libmodel_count.so");
        cc(
            Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../plugins/model-count/model_count.c"
            )),
            &model_count,
        );
        let text = dir.join("not-a-library.so");
        std::fs::write(&text, "this is a text file\n").unwrap();
        Libs {
            api_key: target.join("debug/libapi_key.so"),
            faults: target.join("debug/libtest_faults.so"),
            noop: target.join("debug/libnoop.so"),
            model_count,
            model_count_cargo: target.join("debug/libmodel_count.so"),
            wrong_abi: c("wrong_abi", WRONG_ABI_C),
            no_symbol: c("no_symbol", NO_SYMBOL_C),
            no_create: c("no_create", NO_CREATE_C),
            text,
        }
    })
}
