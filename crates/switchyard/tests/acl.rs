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
async fn methods_and_path_prefix_narrow_what_is_checked() {
    let backend = server::echo().await;
    let proxy = proxy::new()
        .to(backend.addr())
        .acl("writes", "allow 10.0.0.0/8", |a| {
            a.routes = vec!["default".into()];
            a.methods = vec!["POST".into()];
            a.path_prefix = Some("/v1/".into());
        })
        .start();
    let addr = proxy.addr();
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
