//! Certificates from PEM files: loading a listener's set (default plus `tls_sni`), with errors
//! that name the listener, the key and the file; and reloading it when the files change.
//!
//! Reload polls the files' modification times and sizes every `tls_reload_interval` on one
//! thread for the whole server. A change loads the whole set again; only a set that loads
//! completely (every chain parses, every key parses and matches its certificate) replaces the
//! one in force, so a half-written or broken file keeps the old certificates serving, and the
//! failure is logged and counted. The next change to the files is tried again.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use switchyard_config::ListenerConfig;
use tokio::sync::watch;

use super::tls::{CertSet, Resolver};

/// The largest certificate chain or key file read (a chain of a few certificates is a few KiB).
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// A certificate or key that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError {
    /// The `[listener NAME]` it belongs to.
    pub listener: String,
    /// The config key that names it (`tls_certificate`, `tls_key`, or `tls_sni` for HOST).
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[listener {}] {}: {}: {}",
            self.listener,
            self.key,
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for CertError {}

/// Reads `path` whole, refusing a file larger than [`MAX_PEM_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut out = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read: {e}"))?;
    if out.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than {MAX_PEM_BYTES} bytes"));
    }
    Ok(out)
}

/// Parses a PEM certificate chain (leaf first).
fn parse_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".to_string());
    }
    Ok(chain)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))
}

/// Loads one certificate chain and its key; `key` names the config key for errors.
pub fn load_pair(
    listener: &str,
    key: &str,
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, CertError> {
    let err = |path: &Path, reason: String| CertError {
        listener: listener.to_string(),
        key: key.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let chain = read_bounded(cert_path)
        .and_then(|pem| parse_chain(&pem))
        .map_err(|r| err(cert_path, r))?;
    let private = read_bounded(key_path)
        .and_then(|pem| parse_key(&pem))
        .map_err(|r| err(key_path, r))?;
    CertifiedKey::from_der(chain, private, provider).map_err(|e| {
        err(
            key_path,
            format!("unusable with the certificate {}: {e}", cert_path.display()),
        )
    })
}

/// Loads every certificate of `listener`: the default (`tls_certificate`, `tls_key`) and
/// each `tls_sni` entry.
pub fn load_set(
    listener: &ListenerConfig,
    provider: &CryptoProvider,
) -> Result<CertSet, CertError> {
    let (Some(cert), Some(key)) = (&listener.tls_certificate, &listener.tls_key) else {
        return Err(CertError {
            listener: listener.name.clone(),
            key: "tls_certificate".to_string(),
            path: PathBuf::new(),
            reason: "no default certificate configured".to_string(),
        });
    };
    let default = load_pair(&listener.name, "tls_certificate", cert, key, provider)?;
    let mut set = CertSet::new(Arc::new(default));
    for sni in &listener.tls_sni {
        let what = format!("tls_sni {}", sni.host);
        let pair = load_pair(&listener.name, &what, &sni.certificate, &sni.key, provider)?;
        set.insert(&sni.host, Arc::new(pair));
    }
    Ok(set)
}

/// What a file looked like when last checked: modification time and size (`None`: missing).
type Stamp = Option<(SystemTime, u64)>;

fn stamps(listener: &ListenerConfig) -> Vec<Stamp> {
    listener
        .tls_files()
        .into_iter()
        .flat_map(|(_, c, k)| [c, k])
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// How reloads of one listener's certificates went (written by the reload thread only).
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// New certificate sets put in force.
    pub reloads: AtomicU64,
    /// Changes that did not load (the old set stayed in force).
    pub errors: AtomicU64,
}

/// One listener's certificates, as the reload thread watches them.
#[derive(Debug)]
pub struct Watched {
    config: ListenerConfig,
    resolver: Arc<Resolver>,
    stats: Arc<ReloadStats>,
    last: Vec<Stamp>,
    next: Instant,
}

impl Watched {
    /// Watches `config`'s files (as they are now) for `resolver`.
    pub fn new(config: ListenerConfig, resolver: Arc<Resolver>, stats: Arc<ReloadStats>) -> Self {
        let last = stamps(&config);
        Watched {
            next: Instant::now() + config.tls_reload_interval,
            config,
            resolver,
            stats,
            last,
        }
    }

    /// The certificates it reloads.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// Reloads if the files changed since the last look. `None`: no change.
    pub fn poll(&mut self, provider: &CryptoProvider) -> Option<Result<(), CertError>> {
        let now = stamps(&self.config);
        if now == self.last {
            return None;
        }
        self.last = now;
        let result = load_set(&self.config, provider);
        match &result {
            Ok(_) => {
                self.stats.reloads.fetch_add(1, Relaxed);
                tracing::info!(listener = %self.config.name, "tls: certificates reloaded");
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "tls: certificate reload failed; the previous certificates stay in force");
            }
        }
        Some(result.map(|set| self.resolver.swap(set)))
    }
}

/// The longest the reload thread sleeps before looking at shutdown again.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);

/// Polls every watched listener at its interval until shutdown (runs on its own thread: file
/// metadata calls block).
pub fn run(watched: Arc<Mutex<Vec<Watched>>>, shutdown: watch::Receiver<bool>) {
    let provider = super::tls::provider();
    while !*shutdown.borrow() {
        let now = Instant::now();
        let next = {
            // A reload replaces the list (see `ports`): taken for one round at a time.
            let mut watched = watched.lock().unwrap_or_else(|e| e.into_inner());
            for w in watched.iter_mut() {
                if w.config.tls_reload_interval.is_zero() {
                    continue;
                }
                if now >= w.next {
                    let _ = w.poll(&provider);
                    w.next = now + w.config.tls_reload_interval;
                }
            }
            (watched.iter())
                .filter(|w| !w.config.tls_reload_interval.is_zero())
                .map(|w| w.next)
                .min()
        };
        let pause = next.map_or(SHUTDOWN_CHECK, |n| {
            n.saturating_duration_since(Instant::now())
        });
        std::thread::sleep(pause.min(SHUTDOWN_CHECK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d =
            std::env::temp_dir().join(format!("switchyard-certs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Writes a self-signed certificate for `name` (and its key) to `dir`; returns its DER.
    fn write_cert(dir: &Path, name: &str, key: &rcgen::KeyPair) -> Vec<u8> {
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(key)
            .unwrap();
        std::fs::write(dir.join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    fn listener(dir: &Path) -> ListenerConfig {
        let text = format!(
            "[backend a]\naddress = h:1\n[route r]\nbackends = a\n[listener l]\n\
             listen = 127.0.0.1:0\nprotocols = tls\ntls_certificate = {0}/c.pem\n\
             tls_key = {0}/k.pem\n",
            dir.display()
        );
        switchyard_config::parse(&text, "t").unwrap().listeners[0].clone()
    }

    #[test]
    fn a_change_reloads_and_a_broken_file_keeps_the_old_set() {
        let d = dir("reload");
        let provider = super::super::tls::provider();
        let key = rcgen::KeyPair::generate().unwrap();
        let first = write_cert(&d.0, "a.test", &key);
        let config = listener(&d.0);
        let resolver = Arc::new(Resolver::new(load_set(&config, &provider).unwrap()));
        let stats = Arc::new(ReloadStats::default());
        let mut w = Watched::new(config, Arc::clone(&resolver), Arc::clone(&stats));
        assert!(w.poll(&provider).is_none(), "no change, no reload");
        // A longer name makes a longer file: the size changes even within one mtime tick.
        let second = write_cert(&d.0, "renewed.a.test", &key);
        assert_eq!(w.poll(&provider), Some(Ok(())));
        assert_eq!(resolver.certificate_for(None).cert[0].as_ref(), &second[..]);
        assert_ne!(first, second);
        std::fs::write(d.0.join("c.pem"), "not pem").unwrap();
        let e = w.poll(&provider).unwrap().unwrap_err();
        assert!(
            e.path.ends_with("c.pem") && e.key == "tls_certificate",
            "{e}"
        );
        assert_eq!(resolver.certificate_for(None).cert[0].as_ref(), &second[..]);
        assert_eq!(stats.reloads.load(Relaxed), 1);
        assert_eq!(stats.errors.load(Relaxed), 1);
    }

    #[test]
    fn mismatched_and_oversized_files_are_refused() {
        let d = dir("refused");
        let provider = super::super::tls::provider();
        write_cert(&d.0, "a.test", &rcgen::KeyPair::generate().unwrap());
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(d.0.join("k.pem"), other.serialize_pem()).unwrap();
        let e = load_set(&listener(&d.0), &provider).unwrap_err();
        assert!(
            e.to_string().contains("unusable with the certificate"),
            "{e}"
        );
        std::fs::write(d.0.join("c.pem"), vec![b'a'; MAX_PEM_BYTES as usize + 1]).unwrap();
        let e = load_set(&listener(&d.0), &provider).unwrap_err();
        assert!(e.reason.contains("larger than"), "{e}");
    }
}
