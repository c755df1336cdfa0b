//! The parser against hand-written headers (valid, split at every byte, malformed), random
//! bytes, and rendered headers.

use super::*;
use proptest::prelude::*;

const ANY: ProxyProtocol = ProxyProtocol::Any;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn done(buf: &[u8]) -> (usize, Option<(SocketAddr, SocketAddr)>) {
    match parse(buf, ANY) {
        Parse::Done {
            consumed,
            addresses,
        } => (consumed, addresses),
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

fn invalid(buf: &[u8], mode: ProxyProtocol) -> HeaderError {
    match parse(buf, mode) {
        Parse::Invalid(e) => {
            assert!(!e.to_string().is_empty());
            e
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

/// A v2 header built by hand, byte by byte from the specification.
fn v2_tcp4() -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&[192, 0, 2, 7, 10, 0, 0, 1]);
    h.extend_from_slice(&[0xd4, 0x31, 0x01, 0xbb]); // 54321, 443
    h
}

#[test]
fn v1_tcp4_tcp6_and_unknown() {
    let h = b"PROXY TCP4 192.0.2.7 10.0.0.1 54321 443\r\nGET / HTTP/1.1\r\n";
    let (n, a) = done(h);
    assert_eq!(&h[n..n + 3], b"GET");
    assert_eq!(a, Some((sa("192.0.2.7:54321"), sa("10.0.0.1:443"))));
    let h = b"PROXY TCP6 2001:db8::7 ::1 65535 0\r\n";
    assert_eq!(
        done(h),
        (h.len(), Some((sa("[2001:db8::7]:65535"), sa("[::1]:0"))))
    );
    assert_eq!(done(b"PROXY UNKNOWN\r\n"), (15, None));
    let h = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(done(h), (h.len(), None));
}

#[test]
fn v1_at_the_length_limit() {
    // The longest possible header (the specification's worst case) is exactly 107 bytes.
    let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX_BYTES);
    assert_eq!(done(longest), (107, None));
    let mut too_long = longest.to_vec();
    too_long.insert(20, b'f');
    assert_eq!(invalid(&too_long, ANY), HeaderError::V1TooLong);
    // No CRLF in the first 107 bytes: decided without waiting for more.
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.resize(V1_MAX_BYTES, b'1');
    assert_eq!(invalid(&endless, ANY), HeaderError::V1TooLong);
    assert_eq!(parse(&endless[..V1_MAX_BYTES - 1], ANY), Parse::NeedMore);
}

#[test]
fn v2_proxy_ipv4_ipv6_local_unspec_and_tlvs() {
    let mut h = v2_tcp4();
    h.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
        done(&h),
        (28, Some((sa("192.0.2.7:54321"), sa("10.0.0.1:443"))))
    );
    let mut h6 = V2_SIGNATURE.to_vec();
    h6.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
    h6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    h6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    h6.extend_from_slice(&[0x00, 0x50, 0x1f, 0x90]);
    assert_eq!(
        done(&h6),
        (52, Some((sa("[2001:db8::7]:80"), sa("[::1]:8080"))))
    );
    // LOCAL: whatever the family, the peer's own address stands; its block is skipped.
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x11, 0x00, 3, 1, 2, 3]);
    assert_eq!(done(&local), (19, None));
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
    assert_eq!(done(&unspec), (16, None));
    // TLVs (an ALPN and a NOOP) within the length are skipped.
    let mut t = v2_tcp4();
    t[15] = 12 + 5 + 3;
    t.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x00]);
    t.extend_from_slice(b"GET");
    assert_eq!(done(&t).0, 36);
}

#[test]
fn every_split_needs_more_until_the_header_is_whole() {
    let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n".to_vec();
    let mut v2 = v2_tcp4();
    v2[15] = 12 + 4;
    v2.extend_from_slice(&[0x04, 0x00, 0x01, 0x00]);
    for h in [v1, v2] {
        for k in 0..h.len() {
            assert_eq!(parse(&h[..k], ANY), Parse::NeedMore, "{k} of {}", h.len());
        }
        let mut more = h.clone();
        more.extend_from_slice(b"after");
        assert_eq!(done(&more).0, h.len());
    }
}

#[test]
fn malformed_headers_are_invalid() {
    use HeaderError::*;
    let m = |s: &str| invalid(s.as_bytes(), ANY);
    assert_eq!(m("GET / HTTP/1.1\r\n"), Missing);
    assert_eq!(m("PROXX TCP4"), Missing);
    assert_eq!(invalid(b"\x16\x03\x01\x00", ANY), Missing);
    assert_eq!(m("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), V1Protocol);
    assert_eq!(
        m("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        V1Malformed(EXTRA_SPACE)
    );
    assert_eq!(
        m("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"),
        V1Malformed(EXTRA_SPACE)
    );
    assert!(matches!(
        m("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
        V1Malformed(_)
    ));
    assert!(matches!(
        m("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
        V1Malformed(_)
    ));
    assert_eq!(m("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), V1Port);
    assert_eq!(m("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), V1Port);
    assert_eq!(m("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), V1Port);
    assert_eq!(
        m("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),
        V1Address,
        "wrong family"
    );
    assert_eq!(
        m("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"),
        V1Address,
        "wrong family"
    );
    assert_eq!(m("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), V1Address);
    assert_eq!(
        m("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        V1Malformed("a byte that is not text")
    );
    assert_eq!(
        m("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
        V1Malformed("CR without LF")
    );
    assert_eq!(
        m("PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n"),
        V1Malformed("a byte that is not text")
    );
    // v2.
    let mut bad_sig = v2_tcp4();
    bad_sig[11] = b'X';
    assert_eq!(invalid(&bad_sig, ANY), Missing);
    let mut bad_version = v2_tcp4();
    bad_version[12] = 0x11;
    assert_eq!(
        invalid(&bad_version[..13], ANY),
        V2Version(1),
        "decided early"
    );
    let mut bad_command = v2_tcp4();
    bad_command[12] = 0x22;
    assert_eq!(invalid(&bad_command, ANY), V2Command(2));
    for fam in [0x12, 0x22, 0x31, 0x10, 0x41] {
        let mut h = v2_tcp4();
        h[13] = fam;
        assert_eq!(invalid(&h, ANY), V2Family(fam));
    }
    let mut short = v2_tcp4();
    short[15] = 11;
    assert_eq!(
        invalid(&short[..16], ANY),
        V2AddressLength {
            family: 0x11,
            len: 11
        }
    );
    let mut short6 = v2_tcp4();
    short6[13] = 0x21;
    assert_eq!(
        invalid(&short6, ANY),
        V2AddressLength {
            family: 0x21,
            len: 12
        }
    );
    let mut huge = v2_tcp4();
    huge[14..16].copy_from_slice(&4081u16.to_be_bytes());
    assert_eq!(
        invalid(&huge[..16], ANY),
        V2TooLong(4097),
        "decided from the fixed part"
    );
    let mut tlv = v2_tcp4();
    tlv[15] = 12 + 4;
    tlv.extend_from_slice(&[0x04, 0x00, 0x05, 0x00]);
    assert_eq!(invalid(&tlv, ANY), V2Tlv);
    // A TLV cut short after its type and the first byte of its length.
    let mut cut_tlv = v2_tcp4();
    cut_tlv[15] = 12 + 2;
    cut_tlv.extend_from_slice(&[0x04, 0x00]);
    assert_eq!(invalid(&cut_tlv, ANY), V2Tlv);
}

#[test]
fn a_port_accepts_only_its_versions() {
    let v1 = b"PROXY UNKNOWN\r\n";
    let v2 = v2_tcp4();
    assert_eq!(
        invalid(v1, ProxyProtocol::V2),
        HeaderError::WrongVersion { got: 1 }
    );
    assert_eq!(
        invalid(&v2, ProxyProtocol::V1),
        HeaderError::WrongVersion { got: 2 }
    );
    assert_eq!(
        invalid(v1, ProxyProtocol::Off),
        HeaderError::WrongVersion { got: 1 }
    );
    assert!(matches!(parse(v1, ProxyProtocol::V1), Parse::Done { .. }));
    assert!(matches!(parse(&v2, ProxyProtocol::V2), Parse::Done { .. }));
}

#[test]
fn signatures_are_told_from_other_first_bytes() {
    assert_eq!(signature(b""), Signature::NeedMore);
    assert_eq!(signature(b"P"), Signature::NeedMore);
    assert_eq!(signature(b"PROXY"), Signature::NeedMore);
    assert_eq!(signature(b"PROXY "), Signature::Yes);
    assert_eq!(signature(b"POST / HTTP/1.1"), Signature::No);
    assert_eq!(signature(b"PRI * HTTP/2.0"), Signature::No);
    assert_eq!(signature(b"\r\n\r\n\0\r\nQUI"), Signature::NeedMore);
    assert_eq!(signature(&V2_SIGNATURE), Signature::Yes);
    assert_eq!(signature(b"\r\n\r\n\r\n"), Signature::No);
    assert_eq!(signature(b"\x16\x03\x01"), Signature::No);
}

fn addresses() -> impl Strategy<Value = Option<(SocketAddr, SocketAddr)>> {
    prop_oneof![
        Just(None),
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(a, b, p, q)| Some((
                SocketAddr::new(Ipv4Addr::from(a).into(), p),
                SocketAddr::new(Ipv4Addr::from(b).into(), q)
            ))),
        (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()).prop_map(|(a, b, p, q)| Some((
            SocketAddr::new(Ipv6Addr::from(a).into(), p),
            SocketAddr::new(Ipv6Addr::from(b).into(), q)
        ))),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), v2 in any::<bool>()) {
        let mut buf = if v2 { V2_SIGNATURE.to_vec() } else { Vec::new() };
        buf.extend_from_slice(&bytes);
        for mode in [ProxyProtocol::V1, ProxyProtocol::V2, ANY, ProxyProtocol::Off] {
            if let Parse::Done { consumed, .. } = parse(&buf, mode) {
                prop_assert!(consumed <= buf.len() && consumed <= MAX_HEADER_BYTES);
            }
        }
        let _ = parse(&[b"PROXY ".as_slice(), &bytes].concat(), ANY);
    }

    #[test]
    fn a_verdict_on_a_prefix_stands(bytes in prop::collection::vec(any::<u8>(), 0..64), v in 0..3u8) {
        // Start from a real header's first bytes, so the random tail reaches deep.
        let start: Vec<u8> = match v {
            0 => b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2".to_vec(),
            1 => v2_tcp4()[..14].to_vec(),
            _ => Vec::new(),
        };
        let data = [start, bytes].concat();
        let whole = parse(&data, ANY);
        for end in 0..data.len() {
            let early = parse(&data[..end], ANY);
            if early != Parse::NeedMore {
                prop_assert_eq!(early, whole, "the verdict on {} bytes changed with more", end);
                break;
            }
        }
    }

    #[test]
    fn rendered_headers_parse_back(a in addresses(), tlvs in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)), 0..4), tail in prop::collection::vec(any::<u8>(), 0..8)) {
        let v1 = render_v1(a);
        let mut buf = v1.clone().into_bytes();
        buf.extend_from_slice(&tail);
        prop_assert_eq!(parse(&buf, ProxyProtocol::V1), Parse::Done { consumed: v1.len(), addresses: a });
        let tlvs: Vec<(u8, &[u8])> = tlvs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
        let v2 = render_v2(a, &tlvs);
        let mut buf = v2.clone();
        buf.extend_from_slice(&tail);
        prop_assert_eq!(parse(&buf, ProxyProtocol::V2), Parse::Done { consumed: v2.len(), addresses: a });
        for k in 0..v2.len() {
            prop_assert_eq!(parse(&v2[..k], ANY), Parse::NeedMore);
        }
    }
}
