//! TLS to backends (`tls = true`): requests reach an HTTPS backend whose certificate is
//! verified against `tls_ca` and `tls_server_name`, over pooled HTTP/1.1 connections or one
//! HTTP/2 connection (ALPN `h2`); a certificate from another CA, or for another name, is
//! refused (502, nothing sent); a CA file that cannot be read stops the start, naming it;
//! `/admin/diagnose` probes a TLS backend through the same connector.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use support::{client, proxy};
use switchyard_config::BackendTls;

/// A certificate for `name`, self-signed (so it is its own CA), as PEM and as rustls values.
struct Cert {
    pem: String,
    der: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn cert(name: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    Cert {
        pem: ck.cert.pem(),
        der: ck.cert.der().clone(),
        key: PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes()).unwrap(),
    }
}

/// Writes `pem` to a new file in the temporary directory; its path.
fn pem_file(pem: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "switchyard-upstream-tls-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, SeqCst)
    ));
    std::fs::write(&path, pem).unwrap();
    path.to_string_lossy().into_owned()
}

/// An HTTPS backend with `cert`, answering `<version> <method> <path> <body>`, speaking
/// HTTP/2 when ALPN agrees on it; it counts the TLS connections it accepts.
async fn https_backend(cert: &Cert) -> (SocketAddr, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, SeqCst);
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let version = format!("{:?}", req.version());
                    let line = format!("{} {}", req.method(), req.uri().path());
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let text = format!("{version} {line} {}", String::from_utf8_lossy(&body));
                    Ok::<_, Infallible>(support::server::respond(StatusCode::OK, text))
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    (addr, accepted)
}

/// Backend TLS that trusts `ca`'s certificate and expects `name`.
fn trusting(ca: &Cert, name: &str) -> BackendTls {
    BackendTls {
        ca: Some(pem_file(&ca.pem)),
        server_name: Some(name.into()),
    }
}

fn tls_proxy(addr: SocketAddr, protocol: &str, tls: BackendTls) -> proxy::Proxy {
    proxy::new()
        .backend("secure", addr)
        .protocol(protocol)
        .tls(tls)
        .route("default", "/", &["secure"], "round_robin")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_over_tls_with_a_verified_certificate_and_pooled_connections() {
    let c = cert("backend.test");
    let (addr, accepted) = https_backend(&c).await;
    let proxy = tls_proxy(addr, "http1", trusting(&c, "backend.test"));
    let mut client = client::Client::connect(proxy.addr()).await;
    for i in 0..5 {
        let a = client
            .post(&format!("/upload/{i}"), format!("body {i}"))
            .await;
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.text(), format!("HTTP/1.1 POST /upload/{i} body {i}"));
    }
    let a = client.get("/plain").await;
    assert_eq!(a.text(), "HTTP/1.1 GET /plain ");
    assert_eq!(accepted.load(SeqCst), 1, "one pooled TLS connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_is_negotiated_by_alpn() {
    let c = cert("grpc.test");
    let (addr, accepted) = https_backend(&c).await;
    let proxy = tls_proxy(addr, "h2c", trusting(&c, "grpc.test"));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                let a = client::Client::connect(addr)
                    .await
                    .post(&format!("/s/{i}"), "x")
                    .await;
                assert_eq!(a.text(), format!("HTTP/2.0 POST /s/{i} x"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(accepted.load(SeqCst), 1, "one multiplexed TLS connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_or_for_another_name_is_refused() {
    let c = cert("backend.test");
    let (addr, accepted) = https_backend(&c).await;
    let other = cert("backend.test");
    let wrong_ca = tls_proxy(addr, "http1", trusting(&other, "backend.test"));
    let a = client::get(wrong_ca.addr(), "/").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(a.proxy_error(), Some("connect_failed"));
    let wrong_name = tls_proxy(addr, "http1", trusting(&c, "elsewhere.test"));
    let a = client::get(wrong_name.addr(), "/").await;
    assert_eq!(a.status, 502, "{}", a.text());
    assert_eq!(accepted.load(SeqCst), 0, "no handshake completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_probes_a_tls_backend_through_the_upstream_connector() {
    let c = cert("backend.test");
    let (addr, _) = https_backend(&c).await;
    let good = tls_proxy(addr, "http1", trusting(&c, "backend.test"));
    let doc = support::diagnose::run(&good).await;
    let p = &support::diagnose::backend(&doc, "secure")["probe"];
    assert_eq!(p["connect"]["ok"], true, "{p:#}");
    assert_eq!(p["connect"]["tls"], true);
    assert!(p["connect"]["tls_ms"].as_f64().is_some());
    assert_eq!(p["http"]["status"], 200, "{p:#}");
    // It answers every path with text: not a model list.
    assert_eq!(p["models"]["cause"], "not_a_model_list", "{p:#}");

    let other = cert("backend.test");
    let wrong_ca = tls_proxy(addr, "http1", trusting(&other, "backend.test"));
    let doc = support::diagnose::run(&wrong_ca).await;
    let p = &support::diagnose::backend(&doc, "secure")["probe"];
    assert_eq!(p["connect"]["ok"], false, "{p:#}");
    assert_eq!(p["connect"]["cause"], "tls");
    assert!(p["connect"]["error"]
        .as_str()
        .unwrap()
        .contains("TLS handshake"));
}

#[test]
fn an_unreadable_ca_file_stops_the_start_naming_it() {
    let mut config = switchyard_config::parse(
        "[server]\nlisten = 127.0.0.1:0\nadmin_listen = off\n\
         [backend b]\naddress = 127.0.0.1:1\ntls = true\ntls_ca = /nonexistent/ca.pem\n\
         [route r]\nbackends = b\n",
        "t.ini",
    )
    .unwrap();
    config.server.threads = 1;
    let Err(err) = switchyard::server::start(config) else {
        panic!("the start should fail");
    };
    let text = err.to_string();
    assert!(
        text.contains("backend b") && text.contains("/nonexistent/ca.pem"),
        "{text}"
    );
    let empty = pem_file("not a certificate\n");
    let mut config = switchyard_config::parse(
        &format!(
            "[server]\nlisten = 127.0.0.1:0\nadmin_listen = off\n\
             [backend b]\naddress = 127.0.0.1:1\ntls = true\ntls_ca = {empty}\n\
             [route r]\nbackends = b\n"
        ),
        "t.ini",
    )
    .unwrap();
    config.server.threads = 1;
    let Err(err) = switchyard::server::start(config) else {
        panic!("the start should fail");
    };
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}
