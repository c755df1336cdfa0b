//! `[acl NAME]`: CIDR rules (IPv4 and IPv6), first match wins: a denied request gets 403
//! before any backend is touched, a denied L4 connection is closed; both counted.

mod support;

use std::net::SocketAddr;

use http::Method;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use support::body::empty;
use support::client::{self, request, Answer};
use support::{proxy, server, DEADLINE};

/// `method /path` from a connection whose source address is `from` (127.0.0.2, ::1, ...).
async fn send_from(from: &str, to: SocketAddr, method: Method, path: &str) -> Answer {
    let from: std::net::IpAddr = from.parse().unwrap();
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|e| panic!("bind {from}: {e}"));
    let stream = socket.connect(to).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(request(method, path).body(empty()).unwrap())
        .await
        .unwrap();
    client::read(resp).await
}

async fn get_from(from: &str, to: SocketAddr) -> Answer {
    send_from(from, to, Method::GET, "/").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv4_allowed_and_denied_on_a_route() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .acl("local", "deny 127.0.0.3, allow 127.0.0.0/24", |a| {
            a.routes = vec!["default".into()]
        })
        .start();
    assert_eq!(get_from("127.0.0.1", proxy.addr()).await.status, 200);
    assert_eq!(get_from("127.0.0.2", proxy.addr()).await.status, 200);
    // The first matching rule wins: 127.0.0.3 is denied before the /24 allows it.
    let denied = get_from("127.0.0.3", proxy.addr()).await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert_eq!(denied.proxy_error(), Some("acl_denied"));
    assert_eq!(
        backend.requests(),
        2,
        "denied before any backend is touched"
    );
    proxy.expect_errors("acl_denied", 1).await;
    let stats = proxy.stats().await;
    assert_eq!(stats["acls"][0]["name"], "local");
    assert_eq!(stats["acls"][0]["denied"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_allowed_and_ipv4_denied_by_default() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.listen.push("[::1]:0".parse().unwrap()))
        .to(backend.addr())
        .acl("v6-only", "allow ::1", |a| {
            a.routes = vec!["default".into()]
        })
        .start();
    let v6 = proxy.handle().listen_addrs()[1];
    assert!(v6.is_ipv6());
    assert_eq!(get_from("::1", v6).await.status, 200);
    assert_eq!(get_from("127.0.0.1", proxy.addr()).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_path_prefix_and_header_narrow_what_is_checked() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .acl("writes", "allow 10.0.0.0/8", |a| {
            a.routes = vec!["default".into()];
            a.methods = vec!["POST".into()];
            a.path_prefix = Some("/v1/".into());
        })
        .acl("debug", "allow 10.0.0.0/8", |a| {
            a.routes = vec!["default".into()];
            a.header = Some("x-debug".into());
        })
        .start();
    let addr = proxy.addr();
    let debug = request(Method::GET, "/")
        .header("x-debug", "1")
        .body(empty())
        .unwrap();
    let mut c = client::Client::connect(addr).await;
    assert_eq!(
        c.request(debug).await.status,
        403,
        "header present: checked"
    );
    assert_eq!(
        send_from("127.0.0.1", addr, Method::GET, "/v1/x")
            .await
            .status,
        200
    );
    assert_eq!(
        send_from("127.0.0.1", addr, Method::POST, "/other")
            .await
            .status,
        200
    );
    assert_eq!(
        send_from("127.0.0.1", addr, Method::POST, "/v1/x")
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l4_deny_closes_the_connection() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .backend("e", backend.addr())
        .route("default", "/", &["e"], "round_robin")
        .l4("tcp", &["e"], "round_robin")
        .l4("open", &["e"], "round_robin")
        .acl("nobody-local", "deny 127.0.0.0/8", |a| {
            a.default = switchyard_config::AclAction::Allow;
            a.l4 = vec!["tcp".into()];
        })
        .start();
    let mut s = TcpStream::connect(proxy.l4_addr(0)).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert_eq!(backend.accepted(), 0, "no backend connection was opened");
    proxy.expect_errors("acl_denied", 1).await;
    // A listener the ACL does not guard still tunnels.
    let mut s = TcpStream::connect(proxy.l4_addr(1)).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    assert!(n > 0);
}

/// `GET /` from `from` with `X-Forwarded-For: xff`.
async fn get_forwarded(from: &str, to: SocketAddr, xff: &str) -> Answer {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream = socket.connect(to).await.unwrap();
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = request(Method::GET, "/")
        .header("x-forwarded-for", xff)
        .body(empty())
        .unwrap();
    client::read(sender.send_request(req).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.trusted_proxies = vec!["127.0.0.2".parse().unwrap()])
        .to(backend.addr())
        .acl("customers", "allow 203.0.113.0/24", |a| {
            a.routes = vec!["default".into()]
        })
        .start();
    // Through the trusted proxy at 127.0.0.2: the client is the right-most untrusted hop.
    let a = get_forwarded("127.0.0.2", proxy.addr(), "198.51.100.1, 203.0.113.9").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        server::echoed_headers(&a.json(), "x-forwarded-for"),
        ["198.51.100.1, 203.0.113.9, 127.0.0.2"]
    );
    // The same header from an untrusted peer is a spoof: the peer is the client.
    let spoofed = get_forwarded("127.0.0.1", proxy.addr(), "203.0.113.9").await;
    assert_eq!(spoofed.status, 403);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_is_replaced_upstream_and_not_a_rate_limit_key() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .server(|s| s.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()])
        .to(backend.addr())
        .limit("per-ip", "client_ip", "1/m", 1, |_| {})
        .start();
    let a = get_forwarded("127.0.0.1", proxy.addr(), "203.0.113.1").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        server::echoed_headers(&a.json(), "x-forwarded-for"),
        ["127.0.0.1"]
    );
    // A new fake address each time does not earn a new bucket.
    let b = get_forwarded("127.0.0.1", proxy.addr(), "203.0.113.2").await;
    assert_eq!(b.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_deny_closes_before_a_byte_is_read() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .listener("public", |_| {})
        .acl("only-two", "allow 127.0.0.2", |a| {
            a.listeners = vec!["public".into()]
        })
        .start();
    let addr = proxy.listener_addr("public");
    assert_eq!(get_from("127.0.0.2", addr).await.status, 200);
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert_eq!(backend.requests(), 1);
    proxy.expect_errors("acl_denied", 1).await;
}
