//! A backend's response bytes on arbitrary input: parsing the head and decoding a chunked or
//! sized body never panics.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::upstream::codec::{parse_head, BodyDecoder, BodyFraming};

fuzz_target!(|data: &[u8]| {
    let (method, rest) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (http::Method::GET, rest),
        Some((_, rest)) => (http::Method::HEAD, rest),
        None => return,
    };
    let mut buf = BytesMut::from(rest);
    if let Ok(Some(head)) = parse_head(&mut buf, &method) {
        let mut decoder = BodyDecoder::new(head.framing);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    }
    // The chunked decoder on its own.
    let mut buf = BytesMut::from(rest);
    let mut decoder = BodyDecoder::new(BodyFraming::Chunked);
    while let Ok(Some(_)) = decoder.decode(&mut buf) {}
});
