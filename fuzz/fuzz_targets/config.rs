//! The INI parser on arbitrary text: it never panics, and a config it accepts renders to INI
//! that parses back to the same config.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = switchyard_config::parse(text, "fuzz.ini") {
        let rendered = config.to_ini();
        let again = switchyard_config::parse(&rendered, "rendered.ini")
            .unwrap_or_else(|e| panic!("rendered config does not parse: {e}\n{rendered}"));
        assert_eq!(config, again, "round trip changed the config:\n{rendered}");
    }
});
