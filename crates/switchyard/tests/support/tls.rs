//! Test certificates made at test time (rcgen): a CA, leaf certificates signed by it written
//! as PEM files, and rustls clients that trust the CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A CA and a directory of certificate files.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A leaf certificate written to disk.
pub struct Leaf {
    /// The PEM chain file.
    pub cert: PathBuf,
    /// The PEM key file.
    pub key: PathBuf,
    /// The certificate, as a client sees it.
    pub der: CertificateDer<'static>,
}

impl Pki {
    /// A new CA and an empty directory named after `test`.
    pub fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{test}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "switchyard test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Pki { ca, dir }
    }

    /// The directory files are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `<file>.crt` and `<file>.key`: a certificate for `names` signed by the CA, with
    /// `key` (a new one if `None`).
    pub fn leaf(&self, file: &str, names: &[&str], key: Option<&KeyPair>) -> Leaf {
        let fresh;
        let key = match key {
            Some(k) => k,
            None => {
                fresh = KeyPair::generate().unwrap();
                &fresh
            }
        };
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(key, &self.ca).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
            der: cert.der().clone(),
        };
        write_replacing(&leaf.cert, cert.pem().as_bytes());
        write_replacing(&leaf.key, key.serialize_pem().as_bytes());
        leaf
    }

    /// A client trusting the CA, offering `alpn`, speaking only `versions` (both when empty),
    /// sending SNI or not.
    pub fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[&[u8]],
        sni: bool,
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let versions = if versions.is_empty() {
            &[&TLS13, &TLS12][..]
        } else {
            versions
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.enable_sni = sni;
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// Replaces `path` with `bytes` at once (write aside, then rename), as certificate tools do.
pub fn write_replacing(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Connects to `addr` and completes a handshake, asking for (and verifying) `name`.
pub async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    tokio::time::timeout(super::DEADLINE, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

/// The leaf certificate the server presented.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}
