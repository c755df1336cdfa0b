//! Protocol detection on arbitrary first bytes: it never panics, and a verdict reached on a
//! prefix does not change when more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::net::detect::{classify, Detect};

fuzz_target!(|data: &[u8]| {
    let whole = classify(data);
    for end in 0..data.len() {
        let early = classify(&data[..end]);
        if !matches!(early, Detect::NeedMore) {
            assert_eq!(early, whole, "the verdict on {end} bytes changed with more");
            break;
        }
    }
});
