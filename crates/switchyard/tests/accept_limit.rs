//! The accept limiter: a client IP over `max_connections_per_ip` has its next connection
//! closed at once while another IP connects; `max_connections` caps everyone; an IP that keeps
//! going over is banned for `ban_time`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::raw::{End, Raw};
use support::server;
use support::{client, proxy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// A connection to `addr` from source address `from` (any 127.0.0.0/8 address works).
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    Raw {
        stream: socket.connect(addr).await.unwrap(),
    }
}

/// Whether a request on `c` is answered (else the connection was closed unanswered).
async fn answered(c: &mut Raw) -> bool {
    if c.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let (bytes, _) = c.read_to_close(Duration::from_millis(500)).await;
    bytes.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_connection_from_a_full_ip_is_closed_while_another_ip_connects() {
    let backend = server::fixed("hi").await;
    let proxy = proxy::new()
        .server(|s| s.accept.max_connections_per_ip = 2)
        .to(backend.addr())
        .start();
    let _a = connect_from([127, 0, 0, 5], proxy.addr()).await;
    let _b = connect_from([127, 0, 0, 5], proxy.addr()).await;
    let mut third = connect_from([127, 0, 0, 5], proxy.addr()).await;
    let (bytes, end) = third.read_to_close(Duration::from_secs(5)).await;
    assert!(bytes.is_empty() && end == End::Closed, "{bytes:?} {end:?}");
    let mut other = connect_from([127, 0, 0, 6], proxy.addr()).await;
    assert!(answered(&mut other).await, "another IP is served");
    let s = proxy.stats().await;
    assert_eq!(s["accept"]["refused_per_ip"], 1, "{:#}", s["accept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_every_ip_together() {
    let backend = server::fixed("hi").await;
    let proxy = proxy::new()
        .server(|s| s.accept.max_connections = 2)
        .to(backend.addr())
        .start();
    let a = connect_from([127, 0, 0, 7], proxy.addr()).await;
    let _b = connect_from([127, 0, 0, 8], proxy.addr()).await;
    let mut c = connect_from([127, 0, 0, 9], proxy.addr()).await;
    assert!(!answered(&mut c).await, "the third connection is refused");
    drop(a);
    // Its place is given back once the proxy has seen it close.
    support::wait_for(support::DEADLINE, "a place after a close", || async {
        let mut d = connect_from([127, 0, 0, 9], proxy.addr()).await;
        answered(&mut d).await
    })
    .await;
    let s = proxy.stats().await;
    assert!(
        s["accept"]["refused_global"].as_u64().unwrap() >= 1,
        "{:#}",
        s["accept"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_that_keeps_going_over_is_banned() {
    let backend = server::fixed("hi").await;
    let proxy = proxy::new()
        .server(|s| {
            s.accept.max_connections_per_ip = 1;
            s.accept.ban_after = 2;
            s.accept.ban_time = Duration::from_secs(60);
        })
        .to(backend.addr())
        .start();
    let held = connect_from([127, 0, 0, 10], proxy.addr()).await;
    for _ in 0..2 {
        let mut over = connect_from([127, 0, 0, 10], proxy.addr()).await;
        assert!(!answered(&mut over).await);
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Nothing open now, but banned.
    let mut again = connect_from([127, 0, 0, 10], proxy.addr()).await;
    assert!(!answered(&mut again).await, "banned");
    let a = client::get(proxy.addr(), "/").await; // 127.0.0.1 is not banned
    assert_eq!(a.status, 200);
    let s = proxy.stats().await;
    assert_eq!(s["accept"]["bans"], 1, "{:#}", s["accept"]);
    assert!(s["accept"]["refused_banned"].as_u64().unwrap() >= 1);
}
