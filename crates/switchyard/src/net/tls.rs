//! TLS termination: which certificate a handshake gets (by SNI, with a default), the rustls
//! server configuration (TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, the `ring` provider),
//! and a handshake bounded in time.
//!
//! The certificates in force sit behind an [`ArcSwap`]: a handshake loads the current set
//! without a lock, and a reload ([`certs`](super::certs)) swaps in a whole new set at once, so
//! every handshake sees either the old set or the new one, never a mix.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Certificates chosen by the name a client asks for (SNI), with a default for clients that
/// ask for none or for a name no certificate is listed under.
#[derive(Debug, Clone)]
pub struct SniTable<T> {
    /// What clients without a match get.
    pub default: T,
    /// Lowercase host names.
    pub exact: HashMap<String, T>,
    /// `*.domain` entries, keyed by `domain` (lowercase).
    pub wildcard: HashMap<String, T>,
}

impl<T> SniTable<T> {
    /// A table with only a default.
    pub fn new(default: T) -> Self {
        SniTable {
            default,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        }
    }

    /// Adds `value` under `host`: a host name, or `*.domain` for any name one label below
    /// `domain` (as a wildcard certificate covers). `host` is lowercase (the config
    /// normalises it).
    pub fn insert(&mut self, host: &str, value: T) {
        match host.strip_prefix("*.") {
            Some(domain) => self.wildcard.insert(domain.to_string(), value),
            None => self.exact.insert(host.to_string(), value),
        };
    }

    /// What a client asking for `server_name` gets: an exact match, else a wildcard one label
    /// up, else the default. Case-insensitive; a trailing dot is ignored.
    pub fn select(&self, server_name: Option<&str>) -> &T {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        if let Some(v) = self.exact.get(name) {
            return v;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(v) = self.wildcard.get(parent) {
                return v;
            }
        }
        &self.default
    }
}

/// The certificate set of one listener, swapped whole on reload.
pub type CertSet = SniTable<Arc<CertifiedKey>>;

/// Picks a handshake's certificate from the set in force.
#[derive(Debug)]
pub struct Resolver {
    current: ArcSwap<CertSet>,
}

impl Resolver {
    /// A resolver serving `set`.
    pub fn new(set: CertSet) -> Self {
        Resolver {
            current: ArcSwap::from_pointee(set),
        }
    }

    /// Puts `set` in force for every handshake from now on.
    pub fn swap(&self, set: CertSet) {
        self.current.store(Arc::new(set));
    }

    /// The certificate a client asking for `server_name` gets now.
    pub fn certificate_for(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        Arc::clone(self.current.load().select(server_name))
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certificate_for(hello.server_name()))
    }
}

/// The `ring` crypto provider (no C toolchain beyond `cc`, no cmake).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for `resolver`: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
pub fn server_config(resolver: Arc<Resolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// Why a handshake did not complete.
#[derive(Debug)]
pub enum HandshakeError {
    /// Not done within the handshake timeout.
    Timeout,
    /// The client sent something that is not a valid handshake, or closed.
    Failed(io::Error),
}

/// Runs the server side of a TLS handshake on `stream`, for at most `timeout`.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, HandshakeError> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Err(_) => Err(HandshakeError::Timeout),
        Ok(Err(e)) => Err(HandshakeError::Failed(e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// Whether the client picked HTTP/2 by ALPN (no ALPN, or `http/1.1`, is HTTP/1.1).
pub fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SniTable<&'static str> {
        let mut t = SniTable::new("default");
        t.insert("api.example.com", "api");
        t.insert("*.models.example.com", "models");
        t.insert("models.example.com", "models-apex");
        t
    }

    #[test]
    fn exact_names_win_then_wildcards_then_the_default() {
        let t = table();
        assert_eq!(*t.select(Some("api.example.com")), "api");
        assert_eq!(*t.select(Some("API.Example.COM")), "api");
        assert_eq!(*t.select(Some("api.example.com.")), "api");
        assert_eq!(*t.select(Some("llama.models.example.com")), "models");
        assert_eq!(*t.select(Some("models.example.com")), "models-apex");
        assert_eq!(*t.select(None), "default");
        assert_eq!(*t.select(Some("other.example.com")), "default");
        assert_eq!(*t.select(Some("")), "default");
    }

    #[test]
    fn a_wildcard_covers_exactly_one_label() {
        let t = table();
        assert_eq!(*t.select(Some("a.b.models.example.com")), "default");
        assert_eq!(*t.select(Some("example.com")), "default");
        assert_eq!(*t.select(Some("com")), "default");
    }
}
