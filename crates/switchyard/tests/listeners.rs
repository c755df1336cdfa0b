//! `[listener NAME]` ports beyond TLS: ACME HTTP-01 challenges answered on the port that also
//! serves TLS (bad tokens refused without touching files outside the directory), the raw TCP
//! fallback for bytes that are no accepted protocol (HTTP still served on the same port), and
//! protocols a listener does not accept closed.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::raw::{End, Raw};
use support::tls::Pki;
use support::{proxy, server, wait_for, DEADLINE};
use switchyard_config::{Fallback, Protocols};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// Sends a raw request line for `path` and returns the response's status code and body.
async fn get_raw(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut c = Raw::connect(addr).await;
    c.write(
        format!("GET {path} HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert_eq!(end, End::Closed);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tokens_are_served_and_bad_ones_refused() {
    let pki = Pki::new("acme");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let acme = pki.dir().join("acme");
    std::fs::create_dir_all(&acme).unwrap();
    let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    let authz = format!("{token}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
    std::fs::write(acme.join(token), &authz).unwrap();
    // Files a traversal would reach: the parent directory and a symlink out of the directory.
    std::fs::write(pki.dir().join("secret"), "top secret").unwrap();
    std::os::unix::fs::symlink(pki.dir().join("secret"), acme.join("linked")).unwrap();
    std::fs::write(acme.join("big"), vec![b'x'; 64 * 1024]).unwrap();
    let backend = server::fixed("routed").await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = Protocols {
                http1: true,
                h2c: true,
                tls: true,
            };
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
            l.acme_challenge_dir = Some(acme.clone());
        })
        .start();
    let addr = proxy.listener_addr("edge");
    let (status, body) = get_raw(addr, &format!("/.well-known/acme-challenge/{token}")).await;
    assert_eq!((status, body.as_str()), (200, authz.as_str()));
    // Not there: 404, and not routed.
    let (status, _) = get_raw(addr, "/.well-known/acme-challenge/unknownToken").await;
    assert_eq!(status, 404);
    for bad in [
        "/.well-known/acme-challenge/../../etc/passwd",
        "/.well-known/acme-challenge/..%2fsecret",
        "/.well-known/acme-challenge/%2e%2e",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/a.b",
        "/.well-known/acme-challenge/a/b",
        &format!("/.well-known/acme-challenge/{}", "a".repeat(300)),
    ] {
        let (status, body) = get_raw(addr, bad).await;
        assert!(status == 400 || status == 404, "{bad}: {status}");
        assert!(!body.contains("secret"), "{bad}: {body}");
    }
    // Not regular files of a bounded size: 404.
    for path in ["linked", "big"] {
        let (status, body) = get_raw(addr, &format!("/.well-known/acme-challenge/{path}")).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("secret"));
    }
    // Everything else is routed as usual.
    let (status, body) = get_raw(addr, "/v1/models").await;
    assert_eq!((status, body.as_str()), (200, "routed"));
    assert_eq!(backend.requests(), 1);
    // The same port terminates TLS.
    let c = pki.client(&[], &[], true);
    support::tls::connect(&c, addr, "api.example.com")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_http_bytes_fall_back_to_a_tcp_group_and_http_still_works() {
    let echo = server::tcp_echo().await;
    let web = server::fixed("web").await;
    let proxy = proxy::new()
        .backend("echo", echo)
        .backend("web", web.addr())
        .route("default", "/", &["web"], "round_robin")
        .l4("echo", &["echo"], "round_robin")
        .listener("mixed", |l| {
            l.fallback = Some(Fallback::Tcp("echo".into()));
        })
        .start();
    let addr = proxy.listener_addr("mixed");
    // 1 MiB each way, starting with bytes no protocol begins with, then a half-close.
    let data: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut got))
        .await
        .expect("EOF in time")
        .unwrap();
    drop(writer.await.unwrap());
    assert!(got == data, "echoed {} of {} bytes", got.len(), data.len());
    // HTTP on the same port goes to the route.
    let a = support::client::get(addr, "/").await;
    assert_eq!((a.status.as_u16(), a.text().as_str()), (200, "web"));
    wait_for(DEADLINE, "connections counted closed", || async {
        proxy.stats().await["listeners"][0]["active"] == 0
    })
    .await;
    let s = proxy.stats().await;
    let l = &s["listeners"][0];
    assert_eq!(l["tunneled"], 1, "{l:#}");
    assert_eq!(l["http1"], 1);
    assert_eq!(l["fallback"], "tcp:echo");
    // The tunnel is counted with its group.
    assert_eq!(s["l4"][0]["connections"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_a_listener_does_not_accept_are_closed() {
    let web = server::fixed("web").await;
    let proxy = proxy::new()
        .to(web.addr())
        .listener("h2only", |l| {
            l.protocols = Protocols {
                http1: false,
                h2c: true,
                tls: false,
            };
            l.sniff_timeout = Some(Duration::from_millis(300));
        })
        .start();
    let addr = proxy.listener_addr("h2only");
    let mut c = Raw::connect(addr).await;
    c.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty() && end == End::Closed);
    let mut c = Raw::connect(addr).await;
    c.write(b"\x16\x03\x01\x00\x05hello").await;
    let (bytes, end) = c.read_to_close(DEADLINE).await;
    assert!(bytes.is_empty() && end == End::Closed);
    wait_for(DEADLINE, "refusals counted", || async {
        proxy.stats().await["listeners"][0]["refused"] == 2
    })
    .await;
    assert_eq!(web.accepted(), 0);
    // The default `[server] listen` still serves HTTP/1.1.
    let a = support::client::get(proxy.addr(), "/").await;
    assert_eq!(a.status, 200);
}
