//! The PROXY protocol (v1 and v2) through the real proxy: from a trusted peer the header is
//! required and its source is the client (X-Forwarded-For, ACLs); from an untrusted peer a
//! header is refused and other bytes are served as from the peer; a late header times out;
//! TCP `[l4]` tunnels and TLS listeners work after the header. Real sockets on 127.0.0.1.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use switchyard::net::proxy_protocol::{render_v2, V2_SIGNATURE};
use switchyard_config::{AclAction, Protocols, ProxyProtocol};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use support::body::empty;
use support::client::{self, request, Answer};
use support::raw::{End, Raw};
use support::server::echoed_headers;
use support::tls::Pki;
use support::{proxy, server, DEADLINE};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A v2 `PROXY` header announcing `src` (to a made-up destination of the same family).
fn v2(src: &str) -> Vec<u8> {
    let src = sa(src);
    let dst = if src.is_ipv4() {
        sa("10.0.0.1:443")
    } else {
        sa("[2001:db8::1]:443")
    };
    render_v2(Some((src, dst)), &[(0x04, b"")])
}

/// `GET /` with a forged `X-Forwarded-For`, over `io` (after whatever was written to it).
async fn get_over<I>(io: I) -> Answer
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(conn);
    let req = request(Method::GET, "/")
        .header("x-forwarded-for", "6.6.6.6")
        .body(empty())
        .unwrap();
    client::read(sender.send_request(req).await.unwrap()).await
}

/// Connects to `addr`, writes `header`, then sends `GET /`.
async fn get_after(addr: SocketAddr, header: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    get_over(s).await
}

/// Connects to `addr`, writes `bytes`, and waits for the proxy to close: what it answered.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = Raw::connect(addr).await;
    c.write(bytes).await;
    let (answer, end) = c.read_to_close(DEADLINE).await;
    assert_eq!(end, End::Closed, "{:?}", String::from_utf8_lossy(bytes));
    answer
}

fn xff(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.text());
    echoed_headers(&answer.json(), "x-forwarded-for")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peers_header_names_the_client_for_forwarding_and_acls() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.proxy_protocol = ProxyProtocol::Any;
        })
        .to(backend.addr())
        // The real peer (127.0.0.1) is allowed: only the announced address can be denied.
        .acl(
            "no-doc-net",
            "deny 203.0.113.0/24, allow 0.0.0.0/0, allow ::/0",
            |a| a.routes = vec!["default".into()],
        )
        .start();
    let addr = proxy.addr();
    // v1: the announced source is the client; the forged X-Forwarded-For is dropped (the
    // announced client is no trusted proxy).
    let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 54321 8080\r\n";
    assert_eq!(xff(&get_after(addr, v1).await), ["198.51.100.7"]);
    // v2 with an IPv6 source.
    assert_eq!(
        xff(&get_after(addr, &v2("[2001:db8::7]:40000")).await),
        ["2001:db8::7"]
    );
    // v2 LOCAL (the balancer's own health check) and v1 UNKNOWN: the peer is the client
    // (a trusted proxy, so its own X-Forwarded-For stands before it).
    for header in [render_v2(None, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
        let chain = xff(&get_after(addr, &header).await).join(", ");
        assert!(chain.ends_with("127.0.0.1"), "{chain}");
    }
    // The ACL sees the announced address, in both versions.
    let denied = get_after(addr, b"PROXY TCP4 203.0.113.9 10.0.0.1 1 2\r\n").await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.proxy_error(), Some("acl_denied"));
    assert_eq!(get_after(addr, &v2("203.0.113.10:1")).await.status, 403);
    assert_eq!(
        backend.requests(),
        4,
        "denied before any backend is touched"
    );
    let stats = proxy.stats().await;
    let pp = &stats["listen"]["proxy_protocol"];
    assert_eq!(pp["mode"], "any");
    assert_eq!(pp["accepted"], 6, "{pp}");
    assert_eq!(pp["rejected"], 0);
    assert_eq!(stats["acls"][0]["denied"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_peer_without_a_valid_header_is_closed() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()])
        .to(backend.addr())
        .listener("edge", |l| l.proxy_protocol = ProxyProtocol::V1)
        .start();
    let addr = proxy.listener_addr("edge");
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 198.51.100.7 10.0.0.1 54321 65536\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 198.51.100.7  10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        b"PROXY TCP6 198.51.100.7 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n",
        &v2("198.51.100.7:1"), // v2 on a v1 port
    ] {
        let answer = closed_after(addr, bad).await;
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(backend.requests(), 0);
    // A good one still works on the same port.
    let ok = get_after(addr, b"PROXY TCP4 198.51.100.7 10.0.0.1 1 2\r\n").await;
    assert_eq!(xff(&ok), ["198.51.100.7"]);
    let stats = proxy.stats().await;
    let pp = &stats["listeners"][0]["proxy_protocol"];
    assert_eq!(
        (pp["mode"].as_str(), pp["rejected"].as_u64()),
        (Some("v1"), Some(5)),
        "{pp}"
    );
    assert_eq!(pp["accepted"], 1);
    assert!(
        stats["listen"].get("proxy_protocol").is_none(),
        "off on listen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_announce_an_address_but_is_served() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        // 127.0.0.1 is not in it: this test's connections are untrusted.
        .server(|s| {
            s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
            s.proxy_protocol = ProxyProtocol::Any;
        })
        .to(backend.addr())
        .start();
    let addr = proxy.addr();
    let spoof_v1 = b"PROXY TCP4 10.1.2.3 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(closed_after(addr, spoof_v1).await.is_empty());
    let mut spoof_v2 = v2("10.1.2.3:1");
    spoof_v2.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_after(addr, &spoof_v2).await.is_empty());
    // Only the signature's bytes decide: a bare v2 signature is refused too.
    assert!(closed_after(addr, &V2_SIGNATURE).await.is_empty());
    assert_eq!(backend.requests(), 0);
    // Plain HTTP is served as from the peer (its forged X-Forwarded-For dropped).
    let s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(xff(&get_over(s).await), ["127.0.0.1"]);
    let stats = proxy.stats().await;
    let pp = &stats["listen"]["proxy_protocol"];
    assert_eq!(pp["untrusted_signature"], 3, "{pp}");
    assert_eq!(
        (pp["accepted"].as_u64(), pp["rejected"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_or_missing_header_times_out() {
    let backend = server::echo().await;
    let wait = Duration::from_millis(300);
    let proxy = proxy::new()
        .server(|s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.proxy_protocol = ProxyProtocol::V2;
            s.proxy_protocol_timeout = wait;
        })
        .to(backend.addr())
        .start();
    // Half a header, then nothing; and nothing at all.
    let header = v2("198.51.100.7:1");
    for sent in [&header[..10], &header[..20], &[][..]] {
        let start = Instant::now();
        assert!(closed_after(proxy.addr(), sent).await.is_empty());
        let took = start.elapsed();
        assert!(took >= wait - Duration::from_millis(50), "{took:?}");
        assert!(took < DEADLINE, "{took:?}");
    }
    let stats = proxy.stats().await;
    assert_eq!(stats["listen"]["proxy_protocol"]["timeouts"], 3);
    assert_eq!(backend.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l4_tunnel_takes_its_client_from_a_v2_header() {
    let echo = server::tcp_echo().await;
    let proxy = proxy::new()
        .server(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
        .backend("e", echo)
        .route("default", "/", &["e"], "round_robin")
        .l4("tcp", &["e"], "round_robin")
        .l4_set(|l| l.proxy_protocol = ProxyProtocol::V2)
        .acl("no-doc-net", "deny 203.0.113.0/24", |a| {
            a.default = AclAction::Allow;
            a.l4 = vec!["tcp".into()];
        })
        .start();
    let addr = proxy.l4_addr(0);
    // Allowed: only the bytes after the header reach the backend.
    for src in ["192.0.2.1:5000", "[2001:db8::9]:5000"] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut bytes = v2(src);
        bytes.extend_from_slice(b"hello");
        s.write_all(&bytes).await.unwrap();
        let mut got = [0u8; 5];
        tokio::time::timeout(DEADLINE, s.read_exact(&mut got))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(&got, b"hello");
    }
    // Denied by the announced address, though the peer (127.0.0.1) is allowed.
    let mut denied = v2("203.0.113.5:5000");
    denied.extend_from_slice(b"hello");
    assert!(closed_after(addr, &denied).await.is_empty());
    // A v1 header on this v2 port.
    assert!(
        closed_after(addr, b"PROXY TCP4 192.0.2.1 10.0.0.1 1 2\r\nhello")
            .await
            .is_empty()
    );
    proxy.expect_errors("acl_denied", 1).await;
    let stats = proxy.stats().await;
    let pp = &stats["l4"][0]["proxy_protocol"];
    assert_eq!(
        (pp["accepted"].as_u64(), pp["rejected"].as_u64()),
        (Some(3), Some(1)),
        "{pp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_after_the_header() {
    let pki = Pki::new("proxy-protocol");
    let leaf = pki.leaf("default", &["api.example.com"], None);
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
        .to(backend.addr())
        .listener("edge", |l| {
            l.protocols = Protocols {
                http1: true,
                h2c: false,
                tls: true,
            };
            l.tls_certificate = Some(leaf.cert.clone());
            l.tls_key = Some(leaf.key.clone());
            l.proxy_protocol = ProxyProtocol::Any;
        })
        .start();
    let addr = proxy.listener_addr("edge");
    let connector = pki.client(&[], &[b"http/1.1"], true);
    for header in [
        v2("[2001:db8::42]:443"),
        b"PROXY TCP6 2001:db8::42 2001:db8::1 443 443\r\n".to_vec(),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&header).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("api.example.com").unwrap();
        let tls = tokio::time::timeout(DEADLINE, connector.connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake after the header");
        let answer = get_over(tls).await;
        assert_eq!(xff(&answer), ["2001:db8::42"]);
        assert_eq!(
            echoed_headers(&answer.json(), "x-forwarded-proto"),
            ["https"]
        );
    }
    let stats = proxy.stats().await;
    let l = &stats["listeners"][0];
    assert_eq!(l["handshakes_ok"], 2);
    assert_eq!(l["proxy_protocol"]["accepted"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_the_audit_log_see_the_announced_client() {
    let audit = proxy::temp_path("audit.log");
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            s.proxy_protocol = ProxyProtocol::V1;
            s.audit.log = Some(audit.clone());
        })
        .to(backend.addr())
        .limit("per-client", "client_ip", "1/m", 1, |_| {})
        .start();
    let addr = proxy.addr();
    let from = |ip: &str| format!("PROXY TCP4 {ip} 10.0.0.1 1000 8080\r\n").into_bytes();
    // One request a minute per client: the balancer's own address is not the key.
    assert_eq!(get_after(addr, &from("198.51.100.1")).await.status, 200);
    assert_eq!(get_after(addr, &from("198.51.100.2")).await.status, 200);
    assert_eq!(get_after(addr, &from("198.51.100.1")).await.status, 429);
    let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    support::wait_for(DEADLINE, "3 audit lines", || async {
        lines(&audit).len() >= 3
    })
    .await;
    let clients: Vec<String> = lines(&audit)
        .iter()
        .map(|l| l["client"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(clients, ["198.51.100.1", "198.51.100.2", "198.51.100.1"]);
}
