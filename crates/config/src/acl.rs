//! `[acl NAME]`: an access control list of CIDR rules (IPv4 and IPv6), first match wins, with a
//! default; applied to the requests of some routes (refused with 403) and to the connections
//! of some `[l4 NAME]` listeners (closed).

use std::fmt;
use std::net::IpAddr;

use crate::reader::SectionReader;
use crate::value::{format_list, parse_list};

/// The keys of `[acl NAME]`, in the order they are rendered.
pub(crate) const ACL_KEYS: &[&str] = &[
    "rules",
    "default",
    "routes",
    "l4",
    "listeners",
    "methods",
    "path_prefix",
    "header",
];

/// The most rules in one ACL.
pub const MAX_ACL_RULES: usize = 4096;

/// A network: an address and a prefix length (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1` = `/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address, host bits zero.
    pub addr: IpAddr,
    /// The prefix length: 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is
    /// matched as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix length `{p}`: expected 0..={max}")),
            },
        };
        let net = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if net != addr {
            return Err(format!(
                "`{s}` has host bits set; the network is {net}/{prefix}"
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// What a rule (or the default) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AclAction {
    /// `allow`.
    Allow,
    /// `deny` (the default `default`).
    #[default]
    Deny,
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclAction::Allow => "allow",
            AclAction::Deny => "deny",
        })
    }
}

impl std::str::FromStr for AclAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(AclAction::Allow),
            "deny" => Ok(AclAction::Deny),
            _ => Err("expected `allow` or `deny`".to_string()),
        }
    }
}

/// One rule: `allow CIDR` or `deny CIDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclRule {
    /// What a match does.
    pub action: AclAction,
    /// Who matches.
    pub network: Cidr,
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.network)
    }
}

/// A `[acl NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    /// The section's name (it names the ACL's counters in `/stats`).
    pub name: String,
    /// `rules`: checked in order; the first whose network holds the client decides.
    pub rules: Vec<AclRule>,
    /// `default`: what happens to a client no rule matches (default `deny`).
    pub default: AclAction,
    /// `routes`: the routes whose requests it checks (403 when denied).
    pub routes: Vec<String>,
    /// `l4`: the `[l4 NAME]` TCP listeners whose connections it checks (closed when denied).
    pub l4: Vec<String>,
    /// `listeners`: the `[listener NAME]` ports whose connections it checks (closed when
    /// denied, before the first byte is read).
    pub listeners: Vec<String>,
    /// `methods`: on routes, only requests with one of these methods are checked; empty: all.
    pub methods: Vec<String>,
    /// `path_prefix`: on routes, only request paths starting with this are checked.
    pub path_prefix: Option<String>,
    /// `header`: on routes, only requests carrying this header (lowercase name) are checked.
    pub header: Option<String>,
}

impl AclConfig {
    /// The ACL, given what it applies to, with `rules` and `default`.
    pub fn new(name: &str, rules: Vec<AclRule>, default: AclAction) -> Self {
        AclConfig {
            name: name.to_string(),
            rules,
            default,
            routes: Vec::new(),
            l4: Vec::new(),
            listeners: Vec::new(),
            methods: Vec::new(),
            path_prefix: None,
            header: None,
        }
    }

    /// What the ACL does with a client at `ip`: the first matching rule, else the default.
    pub fn decide(&self, ip: IpAddr) -> AclAction {
        self.rules
            .iter()
            .find(|r| r.network.contains(ip))
            .map_or(self.default, |r| r.action)
    }
}

fn rules(s: &str) -> Result<Vec<AclRule>, String> {
    let entries = parse_list(s)?;
    if entries.len() > MAX_ACL_RULES {
        return Err(format!("at most {MAX_ACL_RULES} rules"));
    }
    entries
        .into_iter()
        .map(|e| {
            let (action, net) = e.split_once(char::is_whitespace).ok_or_else(|| {
                format!("`{e}`: expected allow CIDR or deny CIDR, e.g. allow 10.0.0.0/8")
            })?;
            let action = action.parse().map_err(|r| format!("`{e}`: {r}"))?;
            let net = net.trim();
            let network = match net {
                "all" => return Err(format!("`{e}`: write 0.0.0.0/0 and ::/0, or `default`")),
                _ => net.parse().map_err(|r| format!("`{e}`: {r}"))?,
            };
            Ok(AclRule { action, network })
        })
        .collect()
}

/// The most `trusted_proxies` entries.
pub const MAX_TRUSTED_PROXIES: usize = 1024;

/// A list of networks (`trusted_proxies`).
pub(crate) fn cidr_list(s: &str) -> Result<Vec<Cidr>, String> {
    let entries = parse_list(s)?;
    if entries.len() > MAX_TRUSTED_PROXIES {
        return Err(format!("at most {MAX_TRUSTED_PROXIES} entries"));
    }
    entries
        .into_iter()
        .map(|e| e.parse().map_err(|r| format!("`{e}`: {r}")))
        .collect()
}

/// A list of networks as INI text (empty: unset).
pub(crate) fn format_cidrs(cidrs: &[Cidr]) -> String {
    let text: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    format_list(&text)
}

fn names(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for name in parse_list(s)? {
        if !crate::ini::is_valid_name(name) {
            return Err(format!(
                "`{name}` is not a section name (A-Z a-z 0-9 _ . - only)"
            ));
        }
        if out.iter().any(|n| n == name) {
            return Err(format!("`{name}` is listed twice"));
        }
        out.push(name.to_string());
    }
    Ok(out)
}

fn methods(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for m in parse_list(s)? {
        if !m.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "`{m}`: expected an upper-case method such as GET or POST"
            ));
        }
        if !out.iter().any(|n| n == m) {
            out.push(m.to_string());
        }
    }
    Ok(out)
}

fn path_prefix(s: &str) -> Result<Option<String>, String> {
    if !s.starts_with('/') || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("expected a path starting with `/`, without spaces".to_string());
    }
    Ok(Some(s.to_string()))
}

fn header_name(s: &str) -> Result<Option<String>, String> {
    let token = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err("expected a header name such as x-debug".to_string());
    }
    Ok(Some(s.to_ascii_lowercase()))
}

/// An ACL as read, before the cross-checks that need the whole file.
pub(crate) struct AclRead {
    /// The ACL; `None` if `rules` is missing or invalid.
    pub config: Option<AclConfig>,
    /// The line of `routes` (the header's if absent).
    pub routes_line: usize,
    /// The line of `l4` (the header's if absent).
    pub l4_line: usize,
    /// The line of `listeners` (the header's if absent).
    pub listeners_line: usize,
}

/// Reads `[acl NAME]`.
pub(crate) fn read_acl(r: &mut SectionReader<'_>, name: &str) -> AclRead {
    let rule_list = r.required("rules", rules);
    let default = r.value("default", AclAction::Deny, |s| s.parse());
    let routes = r.value("routes", Vec::new(), names);
    let l4 = r.value("l4", Vec::new(), names);
    let listeners = r.value("listeners", Vec::new(), names);
    let methods = r.value("methods", Vec::new(), methods);
    let path_prefix = r.value("path_prefix", None, path_prefix);
    let header = r.value("header", None, header_name);
    if ["routes", "l4", "listeners"]
        .iter()
        .all(|k| r.get(k).is_none())
    {
        let kind = crate::error::ErrorKind::NeedsKey {
            needed: "routes".to_string(),
            reason: "an ACL applies to the routes in `routes`, the L4 listeners in `l4` and \
                     the listeners in `listeners`; give at least one"
                .to_string(),
        };
        r.error(r.line_of("rules"), Some("rules"), kind);
    }
    let config = rule_list.map(|rules| AclConfig {
        routes,
        l4,
        listeners,
        methods,
        path_prefix,
        header,
        ..AclConfig::new(name, rules, default)
    });
    AclRead {
        config,
        routes_line: r.line_of("routes"),
        l4_line: r.line_of("l4"),
        listeners_line: r.line_of("listeners"),
    }
}

/// Every `[acl NAME]` key with its value as INI text, in canonical order (empty: unset).
pub(crate) fn acl_values(a: &AclConfig) -> Vec<(&'static str, String)> {
    let rules: Vec<String> = a.rules.iter().map(ToString::to_string).collect();
    vec![
        ("rules", format_list(&rules)),
        ("default", a.default.to_string()),
        ("routes", format_list(&a.routes)),
        ("l4", format_list(&a.l4)),
        ("listeners", format_list(&a.listeners)),
        ("methods", format_list(&a.methods)),
        ("path_prefix", a.path_prefix.clone().unwrap_or_default()),
        ("header", a.header.clone().unwrap_or_default()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_v4_v6_and_mapped() {
        let table: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("::/0", "::1", true),
            ("::1", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("10.0.0.0/8", "::ffff:10.9.9.9", true),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.0", false),
        ];
        for (net, addr, want) in table {
            let c: Cidr = net.parse().unwrap();
            assert_eq!(c.contains(ip(addr)), *want, "{net} {addr}");
        }
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "::/129",
            "x",
            "10.0.0.0/",
            "10/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn first_match_wins_then_the_default() {
        let acl = AclConfig::new(
            "a",
            rules("deny 10.0.0.66, allow 10.0.0.0/8, allow ::1").unwrap(),
            AclAction::Deny,
        );
        assert_eq!(acl.decide(ip("10.0.0.66")), AclAction::Deny);
        assert_eq!(acl.decide(ip("10.0.0.67")), AclAction::Allow);
        assert_eq!(acl.decide(ip("::1")), AclAction::Allow);
        assert_eq!(acl.decide(ip("192.0.2.1")), AclAction::Deny);
        assert!(rules("allow").is_err());
        assert!(rules("permit 10.0.0.0/8").is_err());
    }
}
