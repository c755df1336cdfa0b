//! Raw TCP (L4) listeners: byte streams forwarded both ways with half-close, balanced over the
//! same backends as routes, dead backends skipped, idle tunnels closed, bytes in `/stats`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{proxy, server, wait_for, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MIB: usize = 1024 * 1024;

/// A backend that, per connection, first writes `tag` (if any), then echoes every byte; on
/// EOF it shuts down its write half.
async fn echo(tag: Option<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Some(t) = tag {
                    if s.write_all(&[t]).await.is_err() {
                        return;
                    }
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A backend that reads its whole input to EOF, then sends it back reversed and closes: it
/// answers only after the client's half-close.
async fn reply_after_eof() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if s.read_to_end(&mut all).await.is_err() {
                    return;
                }
                all.reverse();
                let _ = s.write_all(&all).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Sends `data`, shuts down the write half, and reads everything until EOF (concurrently, so
/// neither side's buffers fill up).
async fn exchange(addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut got))
        .await
        .expect("EOF in time")
        .unwrap();
    drop(writer.await.unwrap());
    got
}

/// The first byte a new tunnel through `addr` receives (a tagged echo backend's tag).
async fn first_byte(addr: SocketAddr) -> u8 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut b))
        .await
        .expect("tag in time")
        .unwrap();
    b[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_both_ways_through_an_echo_backend_with_half_close() {
    let backend = echo(None).await;
    let proxy = proxy::new()
        .backend("e", backend)
        .route("default", "/", &["e"], "round_robin")
        .l4("echo", &["e"], "round_robin")
        .start();
    let data = pattern(MIB);
    let got = exchange(proxy.l4_addr(0), data.clone()).await;
    assert_eq!(got.len(), MIB);
    assert!(got == data, "echoed bytes differ");

    wait_for(DEADLINE, "tcp bytes counted", || async {
        let b = proxy.backend_stats(0).await;
        b["tcp_bytes_in"] == MIB as u64 && b["tcp_bytes_out"] == MIB as u64
    })
    .await;
    let stats = proxy.stats().await;
    let l4 = &stats["l4"][0];
    assert_eq!(l4["name"], "echo");
    assert_eq!(l4["protocol"], "tcp");
    assert_eq!(l4["listen"], proxy.l4_addr(0).to_string());
    assert_eq!(l4["connections"], 1);
    assert_eq!(l4["connect_failures"], 0);
    wait_for(DEADLINE, "tunnel closed", || async {
        proxy.stats().await["l4"][0]["active"] == 0
    })
    .await;
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_answers_after_the_clients_half_close() {
    let backend = reply_after_eof().await;
    let proxy = proxy::new()
        .backend("r", backend)
        .route("default", "/", &["r"], "round_robin")
        .l4("rev", &["r"], "round_robin")
        .start();
    let data = pattern(MIB);
    let got = exchange(proxy.l4_addr(0), data.clone()).await;
    let mut expected = data;
    expected.reverse();
    assert_eq!(got.len(), MIB);
    assert!(got == expected, "reply differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_connections_over_two_backends() {
    let a = echo(Some(b'a')).await;
    let b = echo(Some(b'b')).await;
    let proxy = proxy::new()
        .backend("a", a)
        .backend("b", b)
        .route("default", "/", &["a", "b"], "round_robin")
        .l4("rr", &["a", "b"], "round_robin")
        .start();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(first_byte(proxy.l4_addr(0)).await);
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "{:?}", String::from_utf8_lossy(&seen));
    }
    assert_eq!(seen.iter().filter(|&&t| t == b'a').count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_skipped() {
    let live = echo(Some(b'l')).await;
    let proxy = proxy::new()
        .backend("dead", server::dead_addr())
        .backend("live", live)
        .route("default", "/", &["live"], "round_robin")
        .l4("db", &["dead", "live"], "round_robin")
        .l4_connect_timeout(Duration::from_secs(2))
        .start();
    for _ in 0..4 {
        assert_eq!(first_byte(proxy.l4_addr(0)).await, b'l');
    }
    let stats = proxy.stats().await;
    assert_eq!(stats["l4"][0]["connections"], 4);
    let failures = stats["l4"][0]["connect_failures"].as_u64().unwrap();
    assert!((1..=4).contains(&failures), "{failures}");
    assert_eq!(stats["backends"][0]["errors"], failures);
    assert_eq!(stats["l4"][0]["no_backend"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_backend_dead_the_client_is_closed() {
    let proxy = proxy::new()
        .backend("d1", server::dead_addr())
        .backend("d2", server::dead_addr())
        .route("default", "/", &["d1"], "round_robin")
        .l4("db", &["d1", "d2"], "least_conn")
        .start();
    let mut s = TcpStream::connect(proxy.l4_addr(0)).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    wait_for(DEADLINE, "no_backend counted", || async {
        proxy.stats().await["l4"][0]["no_backend"] == 1
    })
    .await;
    assert_eq!(proxy.stats().await["l4"][0]["connect_failures"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_after_idle_timeout() {
    let backend = echo(None).await;
    let proxy = proxy::new()
        .backend("e", backend)
        .route("default", "/", &["e"], "round_robin")
        .l4("echo", &["e"], "round_robin")
        .l4_idle_timeout(Duration::from_millis(300))
        .start();
    let mut s = TcpStream::connect(proxy.l4_addr(0)).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    let idle_since = Instant::now();
    let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0, "the tunnel should close, not send");
    let waited = idle_since.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    wait_for(DEADLINE, "idle timeout counted", || async {
        proxy.stats().await["l4"][0]["idle_timeouts"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_client_ip_on_one_backend() {
    let a = echo(Some(b'a')).await;
    let b = echo(Some(b'b')).await;
    let proxy = proxy::new()
        .backend("a", a)
        .backend("b", b)
        .route("default", "/", &["a", "b"], "round_robin")
        .l4("sticky", &["a", "b"], "consistent_hash")
        .start();
    // Each tunnel is let end before the next: the balancer bounds a backend's load, so
    // tunnels still closing (slow under a loaded machine) could rightly move the key.
    let idle = || async {
        wait_for(DEADLINE, "the tunnel closed", || async {
            proxy.stats().await["l4"][0]["active"] == 0
        })
        .await
    };
    let first = first_byte(proxy.l4_addr(0)).await;
    for _ in 0..5 {
        idle().await;
        assert_eq!(first_byte(proxy.l4_addr(0)).await, first);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_lets_open_tunnels_finish() {
    let backend = reply_after_eof().await;
    let proxy = proxy::new()
        .backend("r", backend)
        .route("default", "/", &["r"], "round_robin")
        .l4("rev", &["r"], "round_robin")
        .start();
    let addr = proxy.l4_addr(0);
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"abc").await.unwrap();
    wait_for(DEADLINE, "tunnel open", || async {
        proxy.stats().await["l4"][0]["active"] == 1
    })
    .await;
    proxy.shutdown();
    wait_for(DEADLINE, "listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    open.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(DEADLINE, open.read_to_end(&mut got))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(got, b"cba");
    proxy.join().await;
}
