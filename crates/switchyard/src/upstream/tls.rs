//! TLS to backends (`tls = true`): a rustls client configuration per backend, built once at
//! start, and the stream type every upstream connection uses, plain or TLS.
//!
//! The backend's certificate is verified against `tls_ca` (a PEM bundle) or, without it, the
//! system's trusted roots; the name checked (and sent in SNI) is `tls_server_name`, or the
//! host of the backend's `address`. TLS 1.2 and 1.3 only. ALPN offers `h2` to
//! `protocol = h2c` backends and `http/1.1` to the others.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use switchyard_config::{BackendConfig, BackendProtocol};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a backend's TLS settings could not be used.
#[derive(Debug)]
pub enum TlsConfigError {
    /// `tls_ca` could not be read or holds no certificate.
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Neither `tls_ca` nor the system has any trusted root.
    NoRoots,
    /// The name to verify is not a valid DNS name or IP address.
    ServerName(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::Ca { path, reason } => write!(f, "tls_ca `{path}`: {reason}"),
            TlsConfigError::NoRoots => write!(
                f,
                "no trusted root certificates on this system; set tls_ca to the backend's CA"
            ),
            TlsConfigError::ServerName(name) => write!(
                f,
                "`{name}` is not a DNS name or IP address to verify; set tls_server_name"
            ),
        }
    }
}

impl std::error::Error for TlsConfigError {}

/// How to open TLS connections to one backend.
pub struct UpstreamTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// The TLS settings of `backend`, `None` without `tls = true`.
    pub fn for_backend(backend: &BackendConfig) -> Result<Option<Arc<Self>>, TlsConfigError> {
        let Some(tls) = &backend.tls else {
            return Ok(None);
        };
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca {
            Some(path) => {
                let ca_err = |reason: String| TlsConfigError::Ca {
                    path: path.clone(),
                    reason,
                };
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ca_err(e.to_string()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| ca_err(e.to_string()))?;
                if certs.is_empty() {
                    return Err(ca_err("no PEM certificate in the file".to_string()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsConfigError::NoRoots);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsConfigError::Ca {
                path: String::new(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = match backend.protocol {
            BackendProtocol::H2c => vec![b"h2".to_vec()],
            BackendProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let host = tls
            .server_name
            .clone()
            .unwrap_or_else(|| backend.address.host.clone());
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = match host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(host.clone())
                .map_err(|_| TlsConfigError::ServerName(host.clone()))?,
        };
        Ok(Some(Arc::new(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })))
    }

    /// Runs the TLS handshake on `tcp`.
    pub async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// A connection to a backend: plain TCP or TLS over it.
#[derive(Debug)]
pub enum UpStream {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS (boxed: its state is a few kilobytes).
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpStream {
    /// Opens TLS on `tcp` when `tls` is set.
    pub async fn open(tcp: TcpStream, tls: Option<&UpstreamTls>) -> io::Result<Self> {
        match tls {
            None => Ok(UpStream::Plain(tcp)),
            Some(t) => Ok(UpStream::Tls(Box::new(t.handshake(tcp).await?))),
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpStream::Plain(s) => s,
            UpStream::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for UpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpStream::Plain(s) => s.is_write_vectored(),
            UpStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
