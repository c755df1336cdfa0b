//! Client-side timeouts: a slowloris head is cut off after `client_header_timeout`, an idle
//! keep-alive connection after `client_keepalive_timeout`, and the two are separate limits.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::client::Client;
use support::raw::{End, Raw};
use support::server;
use support::{proxy, DEADLINE};
use tokio::io::AsyncWriteExt;

/// Trickles a never-ending header one byte every 100 ms on `raw` (after `prefix`), and returns
/// how long after the start of the trickle the proxy cut the connection.
async fn trickle_until_cut(raw: Raw, prefix: &[u8], limit: Duration) -> Duration {
    let (mut rd, mut wr) = raw.stream.into_split();
    let start = Instant::now();
    wr.write_all(prefix).await.unwrap();
    let writer = tokio::spawn(async move {
        wr.write_all(b"X-Slow: ").await?;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wr.write_all(b"a").await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = [0u8; 1024];
    let outcome = tokio::time::timeout(limit, async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(outcome.is_ok(), "slow head still open after {limit:?}");
    start.elapsed()
}

fn proxy_with(backend: SocketAddr, header: Duration, keepalive: Duration) -> support::proxy::Proxy {
    proxy::new()
        .server(|s| {
            s.client_header_timeout = header;
            s.client_keepalive_timeout = keepalive;
        })
        .to(backend)
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_head_is_cut_off() {
    let backend = server::fixed("ok").await;
    let proxy = proxy_with(
        backend.addr(),
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    let raw = Raw::connect(proxy.addr()).await;
    let took = trickle_until_cut(raw, b"GET / HTTP/1.1\r\n", Duration::from_secs(5)).await;
    assert!(
        took >= Duration::from_millis(300),
        "cut after only {took:?}"
    );
    assert_eq!(backend.requests(), 0);
    proxy.expect_errors("client_header_timeout", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_that_sends_nothing_is_cut_off() {
    let backend = server::fixed("ok").await;
    let proxy = proxy_with(
        backend.addr(),
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    let mut raw = Raw::connect(proxy.addr()).await;
    let start = Instant::now();
    let (_, end) = raw.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(end, End::Closed);
    assert!(start.elapsed() >= Duration::from_millis(300));
}

/// Sends one request on a new client connection, then returns how long the idle connection
/// stayed open.
async fn idle_lifetime(addr: SocketAddr) -> Duration {
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/").await.status, 200);
    let idle = Instant::now();
    tokio::time::timeout(DEADLINE, c.closed())
        .await
        .expect("idle connection closed by the proxy");
    idle.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connection_is_closed() {
    let backend = server::fixed("ok").await;
    let keepalive = Duration::from_millis(500);
    let proxy = proxy_with(backend.addr(), keepalive, keepalive);
    let lived = idle_lifetime(proxy.addr()).await;
    assert!(
        lived >= Duration::from_millis(300),
        "closed after {lived:?}"
    );
    assert!(lived < Duration::from_secs(5), "closed after {lived:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_shorter_than_header_timeout_is_closed() {
    let backend = server::fixed("ok").await;
    let proxy = proxy_with(
        backend.addr(),
        Duration::from_secs(10),
        Duration::from_millis(500),
    );
    let lived = idle_lifetime(proxy.addr()).await;
    assert!(
        lived >= Duration::from_millis(300),
        "closed after {lived:?}"
    );
    assert!(lived < Duration::from_secs(5), "closed after {lived:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_keepalive_timeouts_are_separate() {
    let backend = server::fixed("ok").await;
    let proxy = proxy_with(
        backend.addr(),
        Duration::from_millis(500),
        Duration::from_secs(3),
    );
    let mut c = Client::connect(proxy.addr()).await;
    assert_eq!(c.get("/first").await.status, 200);
    // Idle three times the header timeout, well within the keep-alive timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!c.is_closed());
    assert_eq!(c.get("/second").await.status, 200);
    assert_eq!(backend.accepted(), 1);
    assert_eq!(proxy.errors("client_header_timeout").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_a_reused_connection_is_cut_after_the_header_timeout() {
    let backend = server::fixed("ok").await;
    let proxy = proxy_with(
        backend.addr(),
        Duration::from_millis(500),
        Duration::from_secs(10),
    );
    let mut raw = Raw::connect(proxy.addr()).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let first = raw.read_response(DEADLINE).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle past the header timeout (well within keep-alive), then start a slow second head.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took = trickle_until_cut(raw, b"GET / HTTP/1.1\r\n", Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
}
