//! TLS termination on a `[listener NAME]`: certificates chosen by SNI with a default, TLS 1.2
//! and 1.3 (older refused), ALPN h2 and http/1.1 (WebSocket included) served by the usual HTTP
//! paths, certificates reloaded from disk, stalled or broken handshakes closed in time, and
//! certificate files that cannot be used reported at start with their path.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::version::{TLS12, TLS13};
use support::raw::{End, Raw};
use support::tls::{connect, served, write_replacing, Pki};
use support::{proxy, server, wait_for, DEADLINE};
use switchyard_config::{Protocols, SniCertificate};

const TLS_ONLY: Protocols = Protocols {
    http1: false,
    h2c: false,
    tls: true,
};
const ALL: Protocols = Protocols {
    http1: true,
    h2c: true,
    tls: true,
};

fn request(method: Method, path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, "api.example.com")
        .body(Full::new(body.into()))
        .unwrap()
}

/// `listeners[0]` from `/stats`.
async fn listener_stats(proxy: &proxy::Proxy) -> serde_json::Value {
    proxy.stats().await["listeners"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_and_others_get_the_default() {
    let pki = Pki::new("sni");
    let default = pki.leaf("default", &["default.test", "unknown.test"], None);
    let api = pki.leaf("api", &["api.example.com"], None);
    let models = pki.leaf("models", &["*.models.example.com"], None);
    let backend = server::fixed("hello").await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = TLS_ONLY;
            l.tls_certificate = Some(default.cert.clone());
            l.tls_key = Some(default.key.clone());
            l.tls_sni = vec![
                SniCertificate {
                    host: "api.example.com".into(),
                    certificate: api.cert.clone(),
                    key: api.key.clone(),
                },
                SniCertificate {
                    host: "*.models.example.com".into(),
                    certificate: models.cert.clone(),
                    key: models.key.clone(),
                },
            ];
        })
        .start();
    let addr = proxy.listener_addr("edge");
    let with_sni = pki.client(&[], &[], true);
    let s = connect(&with_sni, addr, "api.example.com").await.unwrap();
    assert_eq!(served(&s), api.der);
    let s = connect(&with_sni, addr, "llama.models.example.com")
        .await
        .unwrap();
    assert_eq!(served(&s), models.der);
    // An unknown name gets the default.
    let s = connect(&with_sni, addr, "unknown.test").await.unwrap();
    assert_eq!(served(&s), default.der);
    // So does a client that sends no SNI at all.
    let without_sni = pki.client(&[], &[], false);
    let s = connect(&without_sni, addr, "default.test").await.unwrap();
    assert_eq!(served(&s), default.der);
    // The server finishes a TLS 1.3 handshake on the client's Finished, just after the client.
    wait_for(DEADLINE, "four handshakes counted", || async {
        listener_stats(&proxy).await["handshakes_ok"] == 4
    })
    .await;
    let st = listener_stats(&proxy).await;
    assert_eq!(st["name"], "edge");
    assert_eq!(st["handshakes_failed"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_negotiate_and_1_1_is_refused() {
    let pki = Pki::new("versions");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let backend = server::fixed("hello").await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = TLS_ONLY;
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
        })
        .start();
    let addr = proxy.listener_addr("edge");
    for (version, expected) in [
        (&TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let c = pki.client(&[version], &[], true);
        let s = connect(&c, addr, "api.example.com").await.unwrap();
        assert_eq!(s.get_ref().1.protocol_version(), Some(expected));
    }
    // A ClientHello offering at most TLS 1.1 (legacy_version 0x0302, no supported_versions).
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[7u8; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // two TLS 1.1 suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, hello.len() as u8];
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend_from_slice(&handshake);
    let mut c = Raw::connect(addr).await;
    c.write(&record).await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert_eq!(end, End::Closed);
    // At most an alert record (content type 21), never a ServerHello.
    assert!(bytes.is_empty() || bytes[0] == 21, "{bytes:?}");
    wait_for(
        DEADLINE,
        "two handshakes and one refusal counted",
        || async {
            let st = listener_stats(&proxy).await;
            st["handshakes_failed"] == 1 && st["handshakes_ok"] == 2
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_serves_many_streams_and_large_bodies_over_tls() {
    let pki = Pki::new("h2");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = ALL;
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
        })
        .start();
    let addr = proxy.listener_addr("edge");
    let c = pki.client(&[], &[b"h2", b"http/1.1"], true);
    let tls = connect(&c, addr, "api.example.com").await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .expect("h2 handshake over TLS");
    tokio::spawn(conn);
    let streams: Vec<_> = (0..100)
        .map(|i| {
            let mut s = sender.clone();
            tokio::spawn(async move {
                let uri = format!("https://api.example.com/stream/{i}");
                let resp = s
                    .send_request(request(Method::GET, &uri, ""))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.version(), http::Version::HTTP_2);
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(doc["uri"], format!("/stream/{i}"));
            })
        })
        .collect();
    for s in streams {
        s.await.unwrap();
    }
    // A 1 MiB body both ways on the same connection.
    let body: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let mut s = sender.clone();
    let resp = s
        .send_request(request(
            Method::POST,
            "https://api.example.com/upload",
            body.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = resp.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert!(doc["body"].as_str().unwrap() == body);
    assert_eq!(backend.requests(), 101);
    let st = listener_stats(&proxy).await;
    assert_eq!(st["handshakes_ok"], 1);
    assert_eq!(st["alpn_h2"], 1);
    assert_eq!(st["connections"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_http1_and_no_alpn_serve_http_1_1_over_tls() {
    let pki = Pki::new("h1");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = ALL;
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
        })
        .start();
    let addr = proxy.listener_addr("edge");
    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let c = pki.client(&[], alpn, true);
        let tls = connect(&c, addr, "api.example.com").await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        for i in 0..3 {
            sender.ready().await.unwrap();
            let resp = sender
                .send_request(request(Method::POST, &format!("/h1/{i}"), "payload"))
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.version(), http::Version::HTTP_11);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(doc["body"], "payload");
            assert_eq!(server::echoed_headers(&doc, "x-forwarded-proto"), ["https"]);
            assert_eq!(doc["uri"], format!("/h1/{i}"));
        }
    }
    // Plain HTTP/1.1 on the same port still works.
    let a = support::client::get(addr, "/plain").await;
    assert_eq!(a.status, 200);
    let st = listener_stats(&proxy).await;
    assert_eq!(st["handshakes_ok"], 2);
    assert_eq!(st["alpn_h2"], 0);
    assert_eq!(st["http1"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_to_the_next_handshake() {
    let pki = Pki::new("reload");
    let key = rcgen::KeyPair::generate().unwrap();
    let first = pki.leaf("default", &["api.example.com"], Some(&key));
    let backend = server::fixed("hello").await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = TLS_ONLY;
            l.tls_certificate = Some(first.cert.clone());
            l.tls_key = Some(first.key.clone());
            l.tls_reload_interval = Duration::from_millis(100);
        })
        .start();
    let addr = proxy.listener_addr("edge");
    let c = pki.client(&[], &[], true);
    let s = connect(&c, addr, "api.example.com").await.unwrap();
    assert_eq!(served(&s), first.der);
    // Renewed: same files, a new certificate (same key, as a renewal may keep it).
    let second = pki.leaf("default", &["api.example.com"], Some(&key));
    assert_ne!(second.der, first.der);
    wait_for(DEADLINE, "the renewed certificate served", || async {
        let s = connect(&c, addr, "api.example.com").await.unwrap();
        served(&s) == second.der
    })
    .await;
    // A broken file: the renewed certificate stays in force, the failure is counted.
    write_replacing(&second.cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n");
    wait_for(DEADLINE, "the failed reload counted", || async {
        listener_stats(&proxy).await["certificate_reload_errors"] == 1
    })
    .await;
    let s = connect(&c, addr, "api.example.com").await.unwrap();
    assert_eq!(served(&s), second.der);
    assert_eq!(listener_stats(&proxy).await["certificate_reloads"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_and_broken_first_bytes_are_closed_in_time_with_nothing_forwarded() {
    let pki = Pki::new("stalled");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let backend = server::fixed("never").await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = ALL;
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
            l.sniff_timeout = Some(Duration::from_millis(300));
            l.tls_handshake_timeout = Duration::from_millis(300);
        })
        .start();
    let addr = proxy.listener_addr("edge");
    // Garbage: closed at once.
    let mut c = Raw::connect(addr).await;
    c.write(b"\x00\x01\x02garbage\r\n\r\n").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty() && end == End::Closed);
    // A TLS record header and part of a ClientHello, then nothing: closed at the handshake
    // timeout.
    let started = tokio::time::Instant::now();
    let mut c = Raw::connect(addr).await;
    c.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty() && end == End::Closed);
    assert!(started.elapsed() >= Duration::from_millis(250));
    // Half an HTTP/2 preface: closed at the sniff timeout.
    let started = tokio::time::Instant::now();
    let mut c = Raw::connect(addr).await;
    c.write(b"PRI * HTTP/2.0\r\n").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty() && end == End::Closed);
    assert!(started.elapsed() >= Duration::from_millis(250));
    wait_for(DEADLINE, "every connection counted closed", || async {
        listener_stats(&proxy).await["active"] == 0
    })
    .await;
    let st = listener_stats(&proxy).await;
    assert_eq!(st["refused"], 1, "{st:#}");
    assert_eq!(st["handshake_timeouts"], 1, "{st:#}");
    assert_eq!(st["sniff_timeouts"], 1, "{st:#}");
    assert_eq!(st["handshakes_ok"], 0);
    assert_eq!(backend.accepted(), 0);
}

#[test]
fn unusable_certificate_files_stop_the_start_naming_the_path() {
    let pki = Pki::new("missing");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let other = pki.leaf("other", &["other.example.com"], None);
    let missing = pki.dir().join("nope.crt");
    let base = "[backend a]\naddress = 127.0.0.1:9\n[route r]\nbackends = a\n\
                [server]\nlisten = 127.0.0.1:0\nadmin_listen = off\n";
    let start = |cert: &std::path::Path, key: &std::path::Path| {
        let text = format!(
            "{base}[listener edge]\nlisten = 127.0.0.1:0\nprotocols = tls\n\
             tls_certificate = {}\ntls_key = {}\n",
            cert.display(),
            key.display()
        );
        let config = switchyard_config::parse(&text, "t.ini").unwrap();
        match switchyard::server::start(config) {
            Ok(h) => {
                h.shutdown();
                h.join();
                panic!("started with {cert:?} and {key:?}");
            }
            Err(e) => e.to_string(),
        }
    };
    let e = start(&missing, &leaf.key);
    assert!(e.contains("[listener edge] tls_certificate"), "{e}");
    assert!(e.contains(&missing.display().to_string()), "{e}");
    assert!(e.contains("cannot open"), "{e}");
    // A key that does not belong to the certificate.
    let e = start(&leaf.cert, &other.key);
    assert!(e.contains(&other.key.display().to_string()), "{e}");
    // A certificate file with no certificate in it.
    let e = start(&leaf.key, &leaf.key);
    assert!(e.contains("CERTIFICATE"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // A WebSocket backend echoing data messages.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let pki = Pki::new("wss");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let proxy = proxy::new()
        .to(backend)
        .listener("edge", |l| {
            l.protocols = ALL;
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
        })
        .start();
    let c = pki.client(&[], &[b"http/1.1"], true);
    let tls = connect(&c, proxy.listener_addr("edge"), "api.example.com")
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://api.example.com/socket", tls)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(resp.status(), 101);
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(blob));
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over tls"));
    ws.close(None).await.unwrap();
}
