//! The PROXY protocol header parser on arbitrary bytes: it never panics, never consumes more
//! than it was given or than the bound, and a verdict reached on a prefix does not change when
//! more bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard::net::proxy_protocol::{parse, Parse, MAX_HEADER_BYTES};
use switchyard_config::ProxyProtocol;

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, ProxyProtocol::Any);
    if let Parse::Done { consumed, .. } = whole {
        assert!(consumed <= data.len() && consumed <= MAX_HEADER_BYTES);
    }
    for end in 0..data.len() {
        let early = parse(&data[..end], ProxyProtocol::Any);
        if early != Parse::NeedMore {
            assert_eq!(early, whole, "the verdict on {end} bytes changed with more");
            break;
        }
    }
});
