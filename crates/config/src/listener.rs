//! `[listener NAME]`: a client-facing port whose accepted protocols are configured
//! (`protocols = http1, h2c, tls`), with TLS certificates chosen by SNI, an ACME HTTP-01
//! challenge directory, and a raw TCP fallback (`fallback = tcp:GROUP`) for bytes that are no
//! protocol served here.
//!
//! The crate does no I/O: certificate and directory paths are checked for shape here and
//! opened by the server when it starts (which reports a missing file with its path).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::address::normalize_host_pattern;
use crate::error::ErrorKind;
use crate::reader::SectionReader;
use crate::suggest::suggest;
use crate::value::{format_duration, format_list, parse_duration, parse_list, parse_socket_addr};

/// The keys of `[listener NAME]`, in the order they are rendered.
pub(crate) const LISTENER_KEYS: &[&str] = &[
    "listen",
    "protocols",
    "fallback",
    "sniff_timeout",
    "tls_certificate",
    "tls_key",
    "tls_sni",
    "tls_handshake_timeout",
    "tls_reload_interval",
    "acme_challenge_dir",
    "proxy_protocol",
    "proxy_protocol_timeout",
];

/// The default `tls_handshake_timeout`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `tls_reload_interval`.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// The longest `sniff_timeout` / `tls_handshake_timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// The most `tls_sni` entries on one listener.
pub const MAX_SNI_CERTIFICATES: usize = 1024;

/// The protocols a listener accepts, told apart by the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocols {
    /// `http1`: an HTTP/1.x request line (WebSocket and `Upgrade: h2c` included).
    pub http1: bool,
    /// `h2c`: HTTP/2 with prior knowledge (the connection preface), in cleartext.
    pub h2c: bool,
    /// `tls`: a TLS handshake; ALPN then picks `h2` or `http/1.1`.
    pub tls: bool,
}

impl Default for Protocols {
    /// `http1, h2c`: what `[server] listen` serves.
    fn default() -> Self {
        Protocols {
            http1: true,
            h2c: true,
            tls: false,
        }
    }
}

/// The protocol names, in canonical order.
const PROTOCOL_NAMES: [&str; 3] = ["http1", "h2c", "tls"];

impl fmt::Display for Protocols {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [self.http1, self.h2c, self.tls];
        let names: Vec<&str> = PROTOCOL_NAMES
            .iter()
            .zip(on)
            .filter_map(|(n, on)| on.then_some(*n))
            .collect();
        write!(f, "{}", names.join(", "))
    }
}

impl std::str::FromStr for Protocols {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = Protocols {
            http1: false,
            h2c: false,
            tls: false,
        };
        for entry in parse_list(s)? {
            let slot = match entry {
                "http1" => &mut p.http1,
                "h2c" => &mut p.h2c,
                "tls" => &mut p.tls,
                _ => {
                    let hint = suggest(entry, PROTOCOL_NAMES)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(format!(
                        "unknown protocol `{entry}`{hint}; expected a list of http1, h2c, tls \
                         (raw TCP is `fallback = tcp:GROUP`)"
                    ));
                }
            };
            if *slot {
                return Err(format!("protocol `{entry}` is listed twice"));
            }
            *slot = true;
        }
        Ok(p)
    }
}

/// What a listener does with a connection whose first bytes are no protocol it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// `tcp:GROUP`: tunnel it, bytes unchanged, to a backend of the `[l4 GROUP]` section's
    /// group (its `backends`, `balancer`, `idle_timeout` and `connect_timeout`).
    Tcp(String),
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Tcp(group) => write!(f, "tcp:{group}"),
        }
    }
}

impl std::str::FromStr for Fallback {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let group = s.strip_prefix("tcp:").ok_or_else(|| {
            "expected tcp:GROUP, GROUP being the name of an [l4 GROUP] section".to_string()
        })?;
        if !crate::ini::is_valid_name(group) {
            return Err(format!(
                "`{group}` is not a section name (A-Z a-z 0-9 _ . - only)"
            ));
        }
        Ok(Fallback::Tcp(group.to_string()))
    }
}

/// One `tls_sni` entry: the certificate served to clients asking for `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCertificate {
    /// A lowercase host name, or `*.domain` for any one-label subdomain.
    pub host: String,
    /// The PEM certificate chain (leaf first).
    pub certificate: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl fmt::Display for SniCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.host,
            self.certificate.display(),
            self.key.display()
        )
    }
}

/// A `[listener NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The section's name (it names the listener's counters in `/stats`).
    pub name: String,
    /// `listen`: the addresses accepting connections; at least one, no duplicates.
    pub listen: Vec<SocketAddr>,
    /// `protocols`: what the first bytes may be (default `http1, h2c`).
    pub protocols: Protocols,
    /// `fallback`: what to do with anything else (`None`: close it).
    pub fallback: Option<Fallback>,
    /// `sniff_timeout`: how long the first bytes may take to tell the protocol; `None` means
    /// `[server] client_header_timeout`.
    pub sniff_timeout: Option<Duration>,
    /// `tls_certificate`: the default certificate chain (PEM); required with `tls`.
    pub tls_certificate: Option<PathBuf>,
    /// `tls_key`: the default certificate's private key (PEM); required with `tls`.
    pub tls_key: Option<PathBuf>,
    /// `tls_sni`: more certificates, each served to clients asking for its host name.
    pub tls_sni: Vec<SniCertificate>,
    /// `tls_handshake_timeout`: a TLS handshake not done within this is closed.
    pub tls_handshake_timeout: Duration,
    /// `tls_reload_interval`: how often certificate files are checked for changes (their
    /// modification times); zero never reloads.
    pub tls_reload_interval: Duration,
    /// `acme_challenge_dir`: where ACME HTTP-01 tokens are served from, for plain-HTTP
    /// requests to `/.well-known/acme-challenge/TOKEN`.
    pub acme_challenge_dir: Option<PathBuf>,
    /// `proxy_protocol`: the PROXY protocol header required from trusted peers.
    pub proxy_protocol: crate::ProxyProtocol,
    /// `proxy_protocol_timeout`: how long the header may take; `None` means `[server]
    /// proxy_protocol_timeout`.
    pub proxy_protocol_timeout: Option<Duration>,
}

impl ListenerConfig {
    /// The sniff timeout in effect: this listener's own, else `client_header_timeout`.
    pub fn effective_sniff_timeout(&self, server: &crate::ServerConfig) -> Duration {
        self.sniff_timeout.unwrap_or(server.client_header_timeout)
    }

    /// The PROXY protocol timeout in effect: this listener's own, else `[server]`'s.
    pub fn effective_proxy_protocol_timeout(&self, server: &crate::ServerConfig) -> Duration {
        self.proxy_protocol_timeout
            .unwrap_or(server.proxy_protocol_timeout)
    }

    /// Every certificate and key file this listener reads, default first.
    pub fn tls_files(&self) -> Vec<(Option<&str>, &PathBuf, &PathBuf)> {
        let mut out = Vec::with_capacity(1 + self.tls_sni.len());
        if let (Some(c), Some(k)) = (&self.tls_certificate, &self.tls_key) {
            out.push((None, c, k));
        }
        for s in &self.tls_sni {
            out.push((Some(s.host.as_str()), &s.certificate, &s.key));
        }
        out
    }
}

fn path(s: &str) -> Result<PathBuf, String> {
    if s.contains(char::is_whitespace) || s.contains(',') {
        return Err("a path here may not contain whitespace or commas".to_string());
    }
    Ok(PathBuf::from(s))
}

fn timeout(allow_zero: bool) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| {
        let d = parse_duration(s)?;
        if d.is_zero() && !allow_zero {
            Err("must be greater than 0".to_string())
        } else if d > MAX_TIMEOUT {
            Err(format!("must be at most {}", format_duration(MAX_TIMEOUT)))
        } else {
            Ok(d)
        }
    }
}

fn reload_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !d.is_zero() && d < Duration::from_millis(100) {
        return Err("must be 0 (never reload) or at least 100ms".to_string());
    }
    if d > Duration::from_secs(24 * 3600) {
        return Err("must be at most 24h".to_string());
    }
    Ok(d)
}

fn sni_list(s: &str) -> Result<Vec<SniCertificate>, String> {
    let entries = parse_list(s)?;
    if entries.len() > MAX_SNI_CERTIFICATES {
        return Err(format!("at most {MAX_SNI_CERTIFICATES} entries"));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parts: Vec<&str> = entry.split_whitespace().collect();
        let [host, certificate, key] = parts[..] else {
            return Err(format!(
                "`{entry}`: expected HOST CERTIFICATE KEY, e.g. \
                 api.example.com /etc/switchyard/api.crt /etc/switchyard/api.key"
            ));
        };
        let host = normalize_host_pattern(host).map_err(|r| format!("`{host}`: {r}"))?;
        if !seen.insert(host.clone()) {
            return Err(format!("host `{host}` is listed twice"));
        }
        out.push(SniCertificate {
            host,
            certificate: path(certificate)?,
            key: path(key)?,
        });
    }
    Ok(out)
}

fn listen_list(s: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for entry in parse_list(s)? {
        let addr = parse_socket_addr(entry).map_err(|r| format!("`{entry}`: {r}"))?;
        if out.contains(&addr) {
            return Err(format!("{addr} is listed twice"));
        }
        out.push(addr);
    }
    Ok(out)
}

/// A listener as read, before the cross-checks that need the whole file.
pub(crate) struct ListenerRead {
    /// The listener; `None` if a required key is missing or invalid.
    pub config: Option<ListenerConfig>,
    /// The line of `listen` (the header's if absent).
    pub listen_line: usize,
    /// The line of `fallback` (the header's if absent).
    pub fallback_line: usize,
    /// The line of `proxy_protocol` (the header's if absent).
    pub proxy_protocol_line: usize,
}

/// Reports `key` (if given) as needing `needed` for `reason`.
fn needs(r: &mut SectionReader<'_>, key: &str, needed: &str, reason: &str) {
    let kind = ErrorKind::NeedsKey {
        needed: needed.to_string(),
        reason: reason.to_string(),
    };
    r.error(r.line_of(key), Some(key), kind);
}

/// Reads `[listener NAME]`.
pub(crate) fn read_listener(r: &mut SectionReader<'_>, name: &str) -> ListenerRead {
    let listen = r.required("listen", listen_list);
    let protocols = r.value("protocols", Protocols::default(), |s| s.parse());
    let fallback = r.value("fallback", None, |s| s.parse().map(Some));
    let sniff_timeout = r.value("sniff_timeout", None, |s| timeout(false)(s).map(Some));
    let tls_certificate = r.value("tls_certificate", None, |s| path(s).map(Some));
    let tls_key = r.value("tls_key", None, |s| path(s).map(Some));
    let tls_sni = r.value("tls_sni", Vec::new(), sni_list);
    let tls_handshake_timeout = r.value(
        "tls_handshake_timeout",
        DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        timeout(false),
    );
    let tls_reload_interval = r.value(
        "tls_reload_interval",
        DEFAULT_TLS_RELOAD_INTERVAL,
        reload_interval,
    );
    let acme_challenge_dir = r.value("acme_challenge_dir", None, |s| path(s).map(Some));
    let (proxy_protocol, proxy_protocol_timeout) = crate::proxy_protocol::read_port_keys(r, true);

    if !r.failed("protocols") {
        check_combinations(r, &protocols);
    }
    let config = listen.map(|listen| ListenerConfig {
        name: name.to_string(),
        listen,
        protocols,
        fallback,
        sniff_timeout,
        tls_certificate,
        tls_key,
        tls_sni,
        tls_handshake_timeout,
        tls_reload_interval,
        acme_challenge_dir,
        proxy_protocol,
        proxy_protocol_timeout,
    });
    ListenerRead {
        config,
        listen_line: r.line_of("listen"),
        fallback_line: r.line_of("fallback"),
        proxy_protocol_line: r.line_of("proxy_protocol"),
    }
}

/// Keys that only make sense together: `tls` needs a certificate and key, TLS keys need
/// `tls`, the ACME directory needs plain HTTP/1.
fn check_combinations(r: &mut SectionReader<'_>, protocols: &Protocols) {
    let given = |r: &SectionReader<'_>, k: &str| r.get(k).is_some();
    if protocols.tls {
        for key in ["tls_certificate", "tls_key"] {
            if !given(r, key) {
                needs(
                    r,
                    "protocols",
                    key,
                    "`protocols` includes tls, which needs a default certificate and its key",
                );
            }
        }
    } else {
        for key in [
            "tls_certificate",
            "tls_key",
            "tls_sni",
            "tls_handshake_timeout",
            "tls_reload_interval",
        ] {
            if given(r, key) {
                needs(
                    r,
                    key,
                    "protocols",
                    "TLS settings take effect only when `protocols` includes tls",
                );
            }
        }
    }
    if !protocols.http1 && given(r, "acme_challenge_dir") {
        needs(
            r,
            "acme_challenge_dir",
            "protocols",
            "ACME HTTP-01 challenges come as plain HTTP/1.1 requests: `protocols` must include \
             http1",
        );
    }
}

/// Every `[listener NAME]` key with its value as INI text, in canonical order (empty: unset).
pub(crate) fn listener_values(l: &ListenerConfig) -> Vec<(&'static str, String)> {
    let listen: Vec<String> = l.listen.iter().map(ToString::to_string).collect();
    let p = |v: &Option<PathBuf>| {
        v.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let tls = l.protocols.tls;
    let mut values = vec![
        ("listen", format_list(&listen)),
        ("protocols", l.protocols.to_string()),
        (
            "fallback",
            l.fallback
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (
            "sniff_timeout",
            l.sniff_timeout.map(format_duration).unwrap_or_default(),
        ),
        ("tls_certificate", p(&l.tls_certificate)),
        ("tls_key", p(&l.tls_key)),
        (
            "tls_sni",
            l.tls_sni
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        // TLS timings are written only where TLS is on (they are refused elsewhere).
        (
            "tls_handshake_timeout",
            if tls {
                format_duration(l.tls_handshake_timeout)
            } else {
                String::new()
            },
        ),
        (
            "tls_reload_interval",
            if tls {
                format_duration(l.tls_reload_interval)
            } else {
                String::new()
            },
        ),
        ("acme_challenge_dir", p(&l.acme_challenge_dir)),
    ];
    values.extend(crate::proxy_protocol::port_values(
        l.proxy_protocol,
        l.proxy_protocol_timeout,
    ));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_and_render() {
        let p: Protocols = "tls, http1".parse().unwrap();
        assert_eq!(p.to_string(), "http1, tls");
        assert!("http1, http1".parse::<Protocols>().is_err());
        let e = "http2".parse::<Protocols>().unwrap_err();
        assert!(e.contains("unknown protocol `http2`"), "{e}");
        assert!("".parse::<Protocols>().is_err());
    }

    #[test]
    fn fallbacks_parse() {
        assert_eq!("tcp:db".parse(), Ok(Fallback::Tcp("db".into())));
        assert!("udp:db".parse::<Fallback>().is_err());
        assert!("tcp:".parse::<Fallback>().is_err());
        assert!("tcp:a/b".parse::<Fallback>().is_err());
    }

    #[test]
    fn sni_lists_parse() {
        let l = sni_list("API.example.com /c/a.crt /c/a.key, *.m.example.com m.crt m.key").unwrap();
        assert_eq!(l[0].host, "api.example.com");
        assert_eq!(l[1].certificate, PathBuf::from("m.crt"));
        assert!(sni_list("a.example.com /c/a.crt").is_err());
        assert!(sni_list("a.com x y, A.com z w").is_err());
        assert!(sni_list("a.com:443 x y").is_err());
    }
}
