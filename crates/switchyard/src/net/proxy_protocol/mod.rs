//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a proxy or load
//! balancer in front sends first on a connection to announce the client's address.
//!
//! [`parse`] is sans-io: it looks at the bytes seen so far and says [`Parse::NeedMore`],
//! [`Parse::Done`] (how many bytes the header is, and the announced addresses) or
//! [`Parse::Invalid`] (why). It never asks for more than [`MAX_HEADER_BYTES`], so a caller
//! can peek at the socket, parse, and then read exactly the header's bytes: what follows it
//! (a TLS ClientHello, an HTTP request) stays in the socket for protocol detection. The
//! socket side, and who is trusted to send a header, is [`gate`].
//!
//! Version 1 is a text line, at most [`V1_MAX_BYTES`] with its CRLF:
//! `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`. It is read
//! strictly: single spaces, addresses of the stated family, decimal ports up to 65535.
//!
//! Version 2 is binary: the 12-byte [`V2_SIGNATURE`], a version/command byte (`0x2_`,
//! command `LOCAL` 0 or `PROXY` 1), a family/transport byte, a big-endian length, then the
//! addresses and TLVs (type-length-value extensions, checked for shape and skipped).
//! `AF_INET` and `AF_INET6` over `STREAM` are understood; `LOCAL` (a health check from the
//! proxy itself) and `UNSPEC` keep the connection's own peer address.

pub mod gate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use switchyard_config::ProxyProtocol;

/// The version 2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// What a version 1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, CRLF included (the specification's bound).
pub const V1_MAX_BYTES: usize = 107;
/// The longest version 2 header accepted, its 16 fixed bytes included: the largest address
/// block (216 bytes, `AF_UNIX`) and TLVs (such as a cloud load balancer's endpoint id) fit
/// with room to spare.
pub const MAX_HEADER_BYTES: usize = 4096;
/// The fixed part of a version 2 header.
const V2_FIXED: usize = 16;

/// What the bytes seen so far are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A valid beginning of a header: more bytes are needed.
    NeedMore,
    /// A whole header.
    Done {
        /// Its length in bytes: what to consume before the application's bytes.
        consumed: usize,
        /// The source and destination it announces; `None` for `UNKNOWN` (v1), `LOCAL` or
        /// `UNSPEC` (v2): the connection's own peer is the client.
        addresses: Option<(SocketAddr, SocketAddr)>,
    },
    /// Not a header this port accepts.
    Invalid(HeaderError),
}

/// Why the bytes are no acceptable PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// They start with neither the v1 nor the v2 signature (the proxy sent no header).
    Missing,
    /// A header of a version the port is not configured for (`proxy_protocol = v1` got v2,
    /// or the other way round).
    WrongVersion {
        /// The version received.
        got: u8,
    },
    /// v1: no CRLF within [`V1_MAX_BYTES`].
    V1TooLong,
    /// v1: not `PROXY PROTO SRC DST SPORT DPORT\r\n` with single spaces and printable text.
    V1Malformed(&'static str),
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1Protocol,
    /// v1: an address that is no address of the stated family.
    V1Address,
    /// v1: a port that is not a decimal number from 0 to 65535.
    V1Port,
    /// v2: the version nibble is not 2.
    V2Version(u8),
    /// v2: the command is neither `LOCAL` (0) nor `PROXY` (1).
    V2Command(u8),
    /// v2: a `PROXY` header whose family/transport byte is not `UNSPEC`, `TCP over IPv4`
    /// (0x11) or `TCP over IPv6` (0x21).
    V2Family(u8),
    /// v2: the stated length is shorter than the family's addresses.
    V2AddressLength {
        /// The family/transport byte.
        family: u8,
        /// The stated length.
        len: u16,
    },
    /// v2: the header would be longer than [`MAX_HEADER_BYTES`].
    V2TooLong(usize),
    /// v2: a TLV runs past the header's stated length.
    V2Tlv,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Missing => write!(f, "no PROXY protocol header"),
            HeaderError::WrongVersion { got } => {
                write!(f, "a version {got} header, which this port does not accept")
            }
            HeaderError::V1TooLong => write!(f, "v1: no CRLF within {V1_MAX_BYTES} bytes"),
            HeaderError::V1Malformed(why) => write!(f, "v1: {why}"),
            HeaderError::V1Protocol => write!(f, "v1: protocol is not TCP4, TCP6 or UNKNOWN"),
            HeaderError::V1Address => write!(f, "v1: an address is not of the stated family"),
            HeaderError::V1Port => write!(f, "v1: a port is not a number from 0 to 65535"),
            HeaderError::V2Version(v) => write!(f, "v2: version {v}, expected 2"),
            HeaderError::V2Command(c) => write!(f, "v2: command {c} is neither LOCAL nor PROXY"),
            HeaderError::V2Family(b) => {
                write!(
                    f,
                    "v2: family/transport {b:#04x} is not TCP over IPv4 or IPv6"
                )
            }
            HeaderError::V2AddressLength { family, len } => {
                write!(f, "v2: length {len} is too short for family {family:#04x}")
            }
            HeaderError::V2TooLong(n) => {
                write!(f, "v2: a {n}-byte header is over {MAX_HEADER_BYTES} bytes")
            }
            HeaderError::V2Tlv => write!(f, "v2: a TLV runs past the header"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Whether the first bytes of a connection begin a PROXY protocol header (either version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// They do.
    Yes,
    /// They do not.
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// Whether `first` starts with a v1 or v2 signature.
pub fn signature(first: &[u8]) -> Signature {
    let v1 = prefix_state(first, V1_PREFIX);
    let v2 = prefix_state(first, &V2_SIGNATURE);
    match (v1, v2) {
        (Signature::Yes, _) | (_, Signature::Yes) => Signature::Yes,
        (Signature::No, Signature::No) => Signature::No,
        _ => Signature::NeedMore,
    }
}

fn prefix_state(first: &[u8], sig: &[u8]) -> Signature {
    let n = first.len().min(sig.len());
    if first[..n] != sig[..n] {
        Signature::No
    } else if n == sig.len() {
        Signature::Yes
    } else {
        Signature::NeedMore
    }
}

/// Parses the header at the start of `buf`, accepting the versions `mode` allows (`Off`
/// accepts none).
pub fn parse(buf: &[u8], mode: ProxyProtocol) -> Parse {
    match signature(buf) {
        Signature::NeedMore => Parse::NeedMore,
        Signature::No => Parse::Invalid(HeaderError::Missing),
        Signature::Yes if buf.starts_with(V1_PREFIX) => {
            if mode.accepts_v1() {
                parse_v1(buf)
            } else {
                Parse::Invalid(HeaderError::WrongVersion { got: 1 })
            }
        }
        Signature::Yes => {
            if mode.accepts_v2() {
                parse_v2(buf)
            } else {
                Parse::Invalid(HeaderError::WrongVersion { got: 2 })
            }
        }
    }
}

fn parse_v1(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    let mut end = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Parse::Invalid(HeaderError::V1Malformed("CR without LF")),
                None if i + 1 == V1_MAX_BYTES => return Parse::Invalid(HeaderError::V1TooLong),
                None => return Parse::NeedMore,
            },
            b' '..=b'~' => {}
            _ => return Parse::Invalid(HeaderError::V1Malformed("a byte that is not text")),
        }
    }
    let Some(end) = end else {
        return if window.len() == V1_MAX_BYTES {
            Parse::Invalid(HeaderError::V1TooLong)
        } else {
            Parse::NeedMore
        };
    };
    // Printable ASCII only, checked above.
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).unwrap_or("");
    match v1_addresses(line) {
        Ok(addresses) => Parse::Done {
            consumed: end + 2,
            addresses,
        },
        Err(e) => Parse::Invalid(e),
    }
}

/// Why a v1 line with an empty field is refused.
const EXTRA_SPACE: &str = "an extra space (fields are separated by exactly one)";

/// The part of a v1 line after `PROXY `.
fn v1_addresses(line: &str) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    let v6 = match proto {
        // The rest of an UNKNOWN line is ignored, as the specification says.
        "UNKNOWN" => return Ok(None),
        "TCP4" => false,
        "TCP6" => true,
        "" => return Err(HeaderError::V1Malformed(EXTRA_SPACE)),
        _ => return Err(HeaderError::V1Protocol),
    };
    let fields: Vec<&str> = parts.collect();
    if fields.iter().any(|f| f.is_empty()) {
        return Err(HeaderError::V1Malformed(EXTRA_SPACE));
    }
    let [src, dst, sport, dport] = fields[..] else {
        return Err(HeaderError::V1Malformed(
            "expected PROTO SRC DST SPORT DPORT",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, HeaderError> {
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4)
        }
        .map_err(|_| HeaderError::V1Address)
    };
    let port = |s: &str| -> Result<u16, HeaderError> {
        if s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeaderError::V1Port);
        }
        s.parse().map_err(|_| HeaderError::V1Port)
    };
    Ok(Some((
        SocketAddr::new(ip(src)?, port(sport)?),
        SocketAddr::new(ip(dst)?, port(dport)?),
    )))
}

fn parse_v2(buf: &[u8]) -> Parse {
    if buf.len() < V2_FIXED {
        // The bytes after the signature are checked as soon as they arrive.
        if let Some(&vc) = buf.get(12) {
            if vc >> 4 != 2 {
                return Parse::Invalid(HeaderError::V2Version(vc >> 4));
            }
        }
        return Parse::NeedMore;
    }
    let (vc, fam) = (buf[12], buf[13]);
    let len = u16::from_be_bytes([buf[14], buf[15]]);
    if vc >> 4 != 2 {
        return Parse::Invalid(HeaderError::V2Version(vc >> 4));
    }
    let command = vc & 0x0f;
    if command > 1 {
        return Parse::Invalid(HeaderError::V2Command(command));
    }
    let total = V2_FIXED + usize::from(len);
    if total > MAX_HEADER_BYTES {
        return Parse::Invalid(HeaderError::V2TooLong(total));
    }
    let address_len = match (command, fam) {
        (0, _) | (1, 0x00) => 0,
        (1, 0x11) => 12,
        (1, 0x21) => 36,
        _ => return Parse::Invalid(HeaderError::V2Family(fam)),
    };
    if usize::from(len) < address_len {
        return Parse::Invalid(HeaderError::V2AddressLength { family: fam, len });
    }
    if buf.len() < total {
        return Parse::NeedMore;
    }
    let body = &buf[V2_FIXED..total];
    let addresses = match (command, fam) {
        (1, 0x11) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[at],
                    body[at + 1],
                    body[at + 2],
                    body[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (1, 0x21) => {
            let ip = |at: usize| {
                let mut o = [0u8; 16];
                o.copy_from_slice(&body[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(o))
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    };
    // A LOCAL or UNSPEC header's block is not addresses; only PROXY ones carry TLVs after them.
    if address_len > 0 && !tlvs_fit(&body[address_len..]) {
        return Parse::Invalid(HeaderError::V2Tlv);
    }
    Parse::Done {
        consumed: total,
        addresses,
    }
}

/// Whether `tlvs` is a sequence of whole type-length-value entries.
fn tlvs_fit(mut tlvs: &[u8]) -> bool {
    while !tlvs.is_empty() {
        if tlvs.len() < 3 {
            return false;
        }
        let n = 3 + usize::from(u16::from_be_bytes([tlvs[1], tlvs[2]]));
        if n > tlvs.len() {
            return false;
        }
        tlvs = &tlvs[n..];
    }
    true
}

/// A v1 header announcing `src` and `dst` (the same family), or `UNKNOWN` when `None`.
pub fn render_v1(addresses: Option<(SocketAddr, SocketAddr)>) -> String {
    match addresses {
        Some((s, d)) => {
            let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {proto} {} {} {} {}\r\n",
                s.ip(),
                d.ip(),
                s.port(),
                d.port()
            )
        }
        None => "PROXY UNKNOWN\r\n".to_string(),
    }
}

/// A v2 header: `PROXY` with `src` and `dst` (the same family) and `tlvs`, or `LOCAL` when
/// `None`.
pub fn render_v2(addresses: Option<(SocketAddr, SocketAddr)>, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    let (vc, fam) = match addresses {
        None => (0x20, 0x00),
        Some((s, d)) => {
            let fam = match (s.ip(), d.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    body.extend_from_slice(&a.octets());
                    body.extend_from_slice(&b.octets());
                    0x11
                }
                (a, b) => {
                    body.extend_from_slice(&v6(a).octets());
                    body.extend_from_slice(&v6(b).octets());
                    0x21
                }
            };
            body.extend_from_slice(&s.port().to_be_bytes());
            body.extend_from_slice(&d.port().to_be_bytes());
            (0x21, fam)
        }
    };
    for (t, v) in tlvs {
        body.push(*t);
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
    }
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[vc, fam]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}
