//! `proxy_protocol` and `proxy_protocol_timeout`: accepting HAProxy's PROXY protocol header
//! (versions 1 and 2) from the peers in `[server] trusted_proxies`, on `[server] listen`,
//! `[listener NAME]` and TCP `[l4 NAME]` ports.
//!
//! The keys are read here; the checks that need the whole file (a port with the header on
//! needs `trusted_proxies`) are in [`parse`](crate::parse).

use std::fmt;
use std::time::Duration;

use crate::error::ErrorKind;
use crate::reader::SectionReader;
use crate::value::{format_duration, parse_duration};

/// The default `proxy_protocol_timeout`.
pub const DEFAULT_PROXY_PROTOCOL_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `proxy_protocol_timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Which PROXY protocol header a port requires from its trusted peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// `off`: no header is read (the default).
    #[default]
    Off,
    /// `v1`: the text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// `v2`: the binary header.
    V2,
    /// `any`: either version.
    Any,
}

impl ProxyProtocol {
    /// Whether a header is read at all.
    pub fn is_on(self) -> bool {
        self != ProxyProtocol::Off
    }

    /// Whether a version 1 header is accepted.
    pub fn accepts_v1(self) -> bool {
        matches!(self, ProxyProtocol::V1 | ProxyProtocol::Any)
    }

    /// Whether a version 2 header is accepted.
    pub fn accepts_v2(self) -> bool {
        matches!(self, ProxyProtocol::V2 | ProxyProtocol::Any)
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "any",
        })
    }
}

impl std::str::FromStr for ProxyProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(ProxyProtocol::Off),
            "v1" => Ok(ProxyProtocol::V1),
            "v2" => Ok(ProxyProtocol::V2),
            "any" => Ok(ProxyProtocol::Any),
            _ => Err("expected off, v1, v2 or any".to_string()),
        }
    }
}

/// A `proxy_protocol_timeout`: more than 0, at most 5m.
pub(crate) fn timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        Err("must be greater than 0".to_string())
    } else if d > MAX_TIMEOUT {
        Err(format!("must be at most {}", format_duration(MAX_TIMEOUT)))
    } else {
        Ok(d)
    }
}

/// Reads `proxy_protocol` and `proxy_protocol_timeout` of a `[listener NAME]` or `[l4 NAME]`
/// section; a timeout without the header on is an error (it would do nothing), reported
/// when `check` (a UDP `[l4]` reports both keys as not for its protocol instead).
pub(crate) fn read_port_keys(
    r: &mut SectionReader<'_>,
    check: bool,
) -> (ProxyProtocol, Option<Duration>) {
    let mode = r.value("proxy_protocol", ProxyProtocol::Off, |s| s.parse());
    let wait = r.value("proxy_protocol_timeout", None, |s| timeout(s).map(Some));
    if check && !mode.is_on() && !r.failed("proxy_protocol") {
        if let Some(entry) = r.get("proxy_protocol_timeout") {
            let kind = ErrorKind::NeedsKey {
                needed: "proxy_protocol".to_string(),
                reason: "the timeout bounds the wait for a PROXY protocol header, which is read \
                         only with `proxy_protocol` set to v1, v2 or any"
                    .to_string(),
            };
            r.error(entry.line, Some("proxy_protocol_timeout"), kind);
        }
    }
    (mode, wait)
}

/// The two keys of a `[listener NAME]` or `[l4 NAME]` as INI text (empty: unset).
pub(crate) fn port_values(
    mode: ProxyProtocol,
    wait: Option<Duration>,
) -> [(&'static str, String); 2] {
    [
        (
            "proxy_protocol",
            if mode.is_on() {
                mode.to_string()
            } else {
                String::new()
            },
        ),
        (
            "proxy_protocol_timeout",
            wait.map(format_duration).unwrap_or_default(),
        ),
    ]
}

/// The error for a port with the header on while `[server] trusted_proxies` is empty.
pub(crate) fn needs_trusted_proxies() -> ErrorKind {
    ErrorKind::NeedsServerKey {
        needed: "trusted_proxies".to_string(),
        reason: "the PROXY protocol header is read only from trusted peers (the proxies or \
                 load balancers in front); list their networks, e.g. \
                 `trusted_proxies = 10.0.0.0/8`"
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_render() {
        for m in ["off", "v1", "v2", "any"] {
            assert_eq!(m.parse::<ProxyProtocol>().unwrap().to_string(), m);
        }
        assert!("V2".parse::<ProxyProtocol>().is_err());
        assert!("on".parse::<ProxyProtocol>().is_err());
        assert!(ProxyProtocol::Any.accepts_v1() && ProxyProtocol::Any.accepts_v2());
        assert!(!ProxyProtocol::V1.accepts_v2() && !ProxyProtocol::V2.accepts_v1());
        assert!(!ProxyProtocol::Off.is_on());
        assert!(timeout("0").is_err() && timeout("6m").is_err() && timeout("100ms").is_ok());
    }
}
