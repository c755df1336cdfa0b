//! Backend addresses (`host:port`) and host-name syntax.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The longest DNS name accepted, in characters.
const MAX_NAME_LEN: usize = 253;
/// The longest DNS label accepted, in characters.
const MAX_LABEL_LEN: usize = 63;

/// A backend's address: a host (IPv4 literal, IPv6 literal or DNS name) and a port.
///
/// Parses from `host:port`, `[ipv6]:port`; displays the same way (IPv6 hosts are bracketed).
/// IPv6 hosts are stored without brackets in their canonical form (`::1`).
///
/// ```
/// # use switchyard_config::Address;
/// let a: Address = "[::1]:8000".parse().unwrap();
/// assert_eq!(a.host, "::1");
/// assert_eq!(a.to_string(), "[::1]:8000");
/// assert!("10.0.0.1".parse::<Address>().is_err()); // no port
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// The host: an IPv4 literal, an IPv6 literal (without brackets) or a DNS name.
    pub host: String,
    /// The port, 1..=65535.
    pub port: u16,
}

impl Address {
    /// The host as an IP address, if it is an IP literal rather than a DNS name.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Address {
    /// A human-readable reason, including what was expected.
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((v6, port)) = rest.split_once("]:") else {
                return Err(
                    "expected [IPv6]:PORT, e.g. [::1]:8000 (missing `]:` and port)".to_string(),
                );
            };
            let ip: Ipv6Addr = v6
                .parse()
                .map_err(|_| format!("`{v6}` is not a valid IPv6 address"))?;
            (ip.to_string(), port)
        } else {
            let Some((host, port)) = s.rsplit_once(':') else {
                return Err("missing port; expected HOST:PORT, e.g. 10.0.0.1:8000".to_string());
            };
            if host.contains(':') {
                return Err("IPv6 addresses must be bracketed, e.g. [::1]:8000".to_string());
            }
            validate_host(host)?;
            (host.to_string(), port)
        };
        Ok(Address {
            host,
            port: parse_port(port)?,
        })
    }
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("missing port; expected HOST:PORT with a port in 1..=65535".to_string());
    }
    match crate::value::parse_u64(port) {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("port `{port}` is not in 1..=65535")),
    }
}

/// Whether `host` looks like an IPv4 literal (only digits and dots), in which case it must be
/// a valid one rather than a DNS name.
fn looks_like_ipv4(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Checks that `host` is a valid IPv4 literal or DNS name (not IPv6, not a wildcard).
pub(crate) fn validate_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host; expected an IP address or a DNS name".to_string());
    }
    if looks_like_ipv4(host) {
        return host
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| format!("`{host}` is not a valid IPv4 address"));
    }
    validate_dns_name(host)
}

/// Checks DNS-name syntax: labels of `A-Z a-z 0-9 -` separated by single dots, each label at
/// most 63 characters, at most 253 in all.
fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "host name is longer than {MAX_NAME_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "`{name}` contains `{c}`; a host name may only contain letters, digits, `-` and `.`"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!(
                "`{name}` has an empty label (leading, trailing or doubled `.`)"
            ));
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "`{name}` has a label longer than {MAX_LABEL_LEN} characters"
            ));
        }
    }
    Ok(())
}

/// Validates and lowercases a route host pattern: a host name or IPv4 literal, or
/// `*.` followed by a host name (any subdomain). No ports, no other wildcards.
pub(crate) fn normalize_host_pattern(pattern: &str) -> Result<String, String> {
    let lower = pattern.to_ascii_lowercase();
    if lower.contains(':') {
        return Err(
            "a route host cannot have a port (routes match the host name only)".to_string(),
        );
    }
    let rest = lower.strip_prefix("*.").unwrap_or(&lower);
    if rest.contains('*') {
        return Err("the only wildcard allowed is a leading `*.`, as in *.example.com".to_string());
    }
    if rest.len() != lower.len() && looks_like_ipv4(rest) {
        return Err("a wildcard must be followed by a DNS name, not an IP address".to_string());
    }
    validate_host(rest)?;
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> Address {
        Address {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn parses_the_three_host_forms() {
        assert_eq!("10.0.0.1:8000".parse(), Ok(addr("10.0.0.1", 8000)));
        assert_eq!("[::1]:80".parse(), Ok(addr("::1", 80)));
        assert_eq!(
            "[2001:DB8:0:0::1]:443".parse(),
            Ok(addr("2001:db8::1", 443))
        );
        assert_eq!(
            "llama-a.internal:8000".parse(),
            Ok(addr("llama-a.internal", 8000))
        );
        assert_eq!("localhost:65535".parse(), Ok(addr("localhost", 65535)));
        assert_eq!("host:1".parse(), Ok(addr("host", 1)));
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "10.0.0.1",
            "300.1.1.1:80",
            "1.2.3:80",
            "host:0",
            "host:99999",
            "host:-1",
            "host:",
            "a b:80",
            "::1:80",
            "[::1]",
            "[::1]80",
            "[nope]:80",
            "a..b:80",
            ".a:80",
            "a.:80",
            ":80",
            "under_score:80",
            "",
            "h\u{e9}:80",
        ] {
            assert!(
                bad.parse::<Address>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        let long = format!("{}:80", "a.".repeat(127) + "a");
        assert!(long.parse::<Address>().is_err());
        let long_label = format!("{}:80", "a".repeat(64));
        assert!(long_label.parse::<Address>().is_err());
    }

    #[test]
    fn displays_and_round_trips() {
        for s in ["10.0.0.1:8000", "[::1]:80", "[2001:db8::1]:443", "x.y:1"] {
            let a: Address = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.to_string().parse(), Ok(a));
        }
    }

    #[test]
    fn ip_literal() {
        assert_eq!(addr("10.0.0.1", 1).ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(addr("::1", 1).ip(), Some("::1".parse().unwrap()));
        assert_eq!(addr("example.com", 1).ip(), None);
    }

    #[test]
    fn host_patterns() {
        assert_eq!(
            normalize_host_pattern("API.Example.com"),
            Ok("api.example.com".to_string())
        );
        assert_eq!(
            normalize_host_pattern("*.Example.com"),
            Ok("*.example.com".to_string())
        );
        assert_eq!(
            normalize_host_pattern("10.0.0.1"),
            Ok("10.0.0.1".to_string())
        );
        for bad in [
            "*",
            "*.",
            "a.*.com",
            "*example.com",
            "**.a",
            "a:80",
            "*.1.2.3.4",
            "a b",
            "",
            "[::1]",
            "999.1.1.1",
        ] {
            assert!(normalize_host_pattern(bad).is_err(), "{bad:?}");
        }
    }
}
