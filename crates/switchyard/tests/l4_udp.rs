//! UDP (L4) listeners: datagrams relayed both ways in one session per client address,
//! balanced over the same backends as routes, idle sessions expired, sessions capped, dead
//! backends not holding up anyone else, datagrams and sessions in `/stats`.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{proxy, wait_for, DEADLINE};
use tokio::net::UdpSocket;

/// A UDP backend that answers each datagram with `tag` followed by the datagram, and records
/// the source address of every datagram it gets.
struct Echo {
    addr: SocketAddr,
    sources: Arc<Mutex<Vec<SocketAddr>>>,
}

impl Echo {
    async fn start(tag: u8) -> Echo {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let sources = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&sources);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf[1..]).await {
                seen.lock().unwrap().push(from);
                buf[0] = tag;
                let _ = socket.send_to(&buf[..n + 1], from).await;
            }
        });
        Echo { addr, sources }
    }

    /// The distinct source addresses seen so far.
    fn distinct_sources(&self) -> HashSet<SocketAddr> {
        self.sources.lock().unwrap().iter().copied().collect()
    }
}

/// A UDP backend that answers `flood` with `count` datagrams of 1400 bytes, and echoes
/// anything else.
async fn flooding_echo(count: usize) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf[1..]).await {
            buf[0] = b'f';
            if &buf[1..n + 1] == b"flood" {
                for _ in 0..count {
                    let _ = socket.send_to(&[b'f'; 1400], from).await;
                }
            } else {
                let _ = socket.send_to(&buf[..n + 1], from).await;
            }
        }
    });
    addr
}

/// A client socket connected to the proxy's UDP listener `to`.
async fn client(to: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(to).await.unwrap();
    s
}

/// Sends `msg` and returns the reply (its tag byte and the rest).
async fn ask(s: &UdpSocket, msg: &[u8]) -> (u8, Vec<u8>) {
    s.send(msg).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(DEADLINE, s.recv(&mut buf))
        .await
        .expect("a reply in time")
        .unwrap();
    (buf[0], buf[1..n].to_vec())
}

/// Sends `msg` until a reply comes (a datagram may be dropped while a session to a dead
/// backend ends), each try waiting `wait`.
async fn ask_until_answered(s: &UdpSocket, msg: &[u8], wait: Duration) -> (u8, Vec<u8>) {
    let mut buf = vec![0u8; 65_536];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        s.send(msg).await.unwrap();
        // No reply within `wait` (or an error): send again.
        if let Ok(Ok(n)) = tokio::time::timeout(wait, s.recv(&mut buf)).await {
            return (buf[0], buf[1..n].to_vec());
        }
        assert!(tokio::time::Instant::now() < deadline, "no reply in time");
    }
}

/// A UDP address nothing listens on (datagrams to it are refused with ICMP).
/// A UDP address nothing listens on. On 127.0.0.2, where no test binds: a port freed on
/// 127.0.0.1 could be taken at once by another test's echo server running in parallel.
fn dead_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    s.local_addr().unwrap()
}

async fn l4_stats(proxy: &proxy::Proxy) -> serde_json::Value {
    proxy.stats().await["l4"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_at_once_each_get_their_own_replies() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .start();
    let addr = proxy.l4_addr(0);
    let clients: Vec<_> = (0..8u8)
        .map(|c| {
            tokio::spawn(async move {
                let s = client(addr).await;
                for i in 0..20u32 {
                    // Different lengths too, up to a few KiB.
                    let msg: Vec<u8> = std::iter::repeat_n(c, 1 + (i as usize * 211) % 4000)
                        .chain(i.to_be_bytes())
                        .collect();
                    let (tag, body) = ask(&s, &msg).await;
                    assert_eq!(tag, b'e');
                    assert_eq!(body, msg, "client {c} datagram {i}");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let l4 = l4_stats(&proxy).await;
    assert_eq!(l4["protocol"], "udp");
    assert_eq!(l4["sessions"], 8, "{l4:#}");
    assert_eq!(l4["active"], 8, "{l4:#}");
    assert_eq!(l4["sessions_rejected"], 0);
    assert_eq!(l4["datagrams_dropped"], 0);
    assert_eq!(
        echo.distinct_sources().len(),
        8,
        "one upstream socket per session"
    );
    // Replies are counted just after they are sent.
    wait_for(DEADLINE, "every reply counted", || async {
        proxy.backend_stats(0).await["udp_datagrams_in"] == 160
    })
    .await;
    let b = proxy.backend_stats(0).await;
    assert_eq!(b["udp_datagrams_out"], 160, "{b:#}");
    assert_eq!(
        b["udp_bytes_in"],
        b["udp_bytes_out"].as_u64().unwrap() + 160
    );
    assert_eq!(b["in_flight"], 8, "each session holds the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_sessions_and_a_client_stays_on_its_backend() {
    let a = Echo::start(b'a').await;
    let b = Echo::start(b'b').await;
    let proxy = proxy::new()
        .backend("a", a.addr)
        .backend("b", b.addr)
        .route("default", "/", &["a", "b"], "round_robin")
        .l4_udp("rr", &["a", "b"], "round_robin")
        .start();
    let mut tags = HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..6 {
        let s = client(proxy.l4_addr(0)).await;
        let (first, _) = ask(&s, b"hello").await;
        tags.insert(first);
        clients.push((s, first));
    }
    assert_eq!(tags, HashSet::from([b'a', b'b']), "sessions spread");
    for (s, first) in &clients {
        for i in 0..5u8 {
            assert_eq!(ask(s, &[i]).await, (*first, vec![i]), "the session sticks");
        }
    }
    assert_eq!(a.distinct_sources().len() + b.distinct_sources().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_a_client_ip_on_one_backend() {
    let a = Echo::start(b'a').await;
    let b = Echo::start(b'b').await;
    let proxy = proxy::new()
        .backend("a", a.addr)
        .backend("b", b.addr)
        .route("default", "/", &["a", "b"], "round_robin")
        .l4_udp("sticky", &["a", "b"], "consistent_hash")
        .l4_idle_timeout(Duration::from_millis(100))
        .start();
    // Every client is 127.0.0.1, on its own port: each is a session of its own, on the
    // backend the address hashes to. One at a time, as the bounded load would move a client
    // off a backend that holds all the open sessions.
    let mut tags = HashSet::new();
    for n in 1..=5u64 {
        let s = client(proxy.l4_addr(0)).await;
        tags.insert(ask(&s, b"x").await.0);
        wait_for(DEADLINE, "the session to expire", || async {
            l4_stats(&proxy).await["sessions_expired"] == n
        })
        .await;
    }
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(l4_stats(&proxy).await["sessions"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires_and_the_next_datagram_opens_another() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .l4_idle_timeout(Duration::from_millis(200))
        .start();
    let s = client(proxy.l4_addr(0)).await;
    assert_eq!(ask(&s, b"one").await, (b'e', b"one".to_vec()));
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 1);
    wait_for(DEADLINE, "the session to expire", || async {
        l4_stats(&proxy).await["sessions_expired"] == 1
    })
    .await;
    let l4 = l4_stats(&proxy).await;
    assert_eq!(l4["active"], 0, "{l4:#}");
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 0);
    assert_eq!(ask(&s, b"two").await, (b'e', b"two".to_vec()));
    let l4 = l4_stats(&proxy).await;
    assert_eq!(
        (l4["sessions"].as_u64(), l4["active"].as_u64()),
        (Some(2), Some(1))
    );
    // The new session has a socket of its own: the backend sees a second source port.
    assert_eq!(echo.distinct_sources().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_keeps_a_session_alive_past_idle_timeout() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .l4_idle_timeout(Duration::from_secs(2))
        .start();
    let s = client(proxy.l4_addr(0)).await;
    // 12 exchanges 250 ms apart: 3 s in all, every gap far below the 2 s idle timeout.
    for i in 0..12u8 {
        assert_eq!(ask(&s, &[i]).await, (b'e', vec![i]));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(l4_stats(&proxy).await["sessions"], 1);
    assert_eq!(echo.distinct_sources().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_sessions_new_clients_are_dropped_and_open_sessions_go_on() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .l4_max_sessions(2)
        .start();
    let addr = proxy.l4_addr(0);
    let (a, b, c) = (client(addr).await, client(addr).await, client(addr).await);
    assert_eq!(ask(&a, b"a").await.1, b"a");
    assert_eq!(ask(&b, b"b").await.1, b"b");
    c.send(b"c").await.unwrap();
    wait_for(DEADLINE, "the third client's datagram dropped", || async {
        l4_stats(&proxy).await["sessions_rejected"] == 1
    })
    .await;
    assert_eq!(ask(&a, b"a2").await.1, b"a2");
    assert_eq!(ask(&b, b"b2").await.1, b"b2");
    let l4 = l4_stats(&proxy).await;
    assert_eq!(
        (l4["sessions"].as_u64(), l4["active"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(l4["max_sessions"], 2);
    assert_eq!(
        echo.distinct_sources().len(),
        2,
        "the third client never reached it"
    );
    // Nothing came back for the third client.
    let mut buf = [0u8; 16];
    assert!(c.try_recv(&mut buf).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_does_not_hold_up_other_clients() {
    let dead = dead_udp_addr();
    let live = Echo::start(b'l').await;
    let proxy = proxy::new()
        .backend("dead", dead)
        .backend("live", live.addr)
        .route("default", "/", &["dead", "live"], "round_robin")
        .l4_udp("mixed", &["dead", "live"], "round_robin")
        .start();
    let addr = proxy.l4_addr(0);
    let clients: Vec<_> = (0..6u8)
        .map(|c| {
            tokio::spawn(async move {
                let s = client(addr).await;
                // A session on the dead backend ends at its refusal; a retry opens another.
                let (tag, body) = ask_until_answered(&s, &[c], Duration::from_millis(200)).await;
                assert_eq!((tag, body), (b'l', vec![c]));
                // From then on, the session answers at once.
                assert_eq!(ask(&s, &[c, c]).await, (b'l', vec![c, c]));
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    wait_for(DEADLINE, "refusals counted", || async {
        proxy.backend_stats(0).await["errors"].as_u64().unwrap() >= 1
    })
    .await;
    wait_for(DEADLINE, "dead sessions closed", || async {
        l4_stats(&proxy).await["active"] == 6
    })
    .await;
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_up_another() {
    let backend = flooding_echo(5_000).await;
    let proxy = proxy::new()
        .backend("f", backend)
        .route("default", "/", &["f"], "round_robin")
        .l4_udp("flood", &["f"], "round_robin")
        .start();
    let addr = proxy.l4_addr(0);
    // Its replies (7 MB) overflow its receive buffer; the proxy must not wait on it.
    let silent = client(addr).await;
    silent.send(b"flood").await.unwrap();
    let busy = client(addr).await;
    for i in 0..50u8 {
        assert_eq!(ask(&busy, &[i]).await, (b'f', vec![i]));
    }
    // Some of the flood reached the proxy and was relayed (the kernel drops what overflows
    // the session socket's buffer, as UDP may), besides the busy client's 50 replies.
    wait_for(DEADLINE, "the flood relayed", || async {
        proxy.backend_stats(0).await["udp_datagrams_in"]
            .as_u64()
            .unwrap()
            > 50
    })
    .await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sees_open_sessions() {
    let a = Echo::start(b'a').await;
    let b = Echo::start(b'b').await;
    let proxy = proxy::new()
        .backend("a", a.addr)
        .backend("b", b.addr)
        .route("default", "/", &["a", "b"], "round_robin")
        .l4_udp("lc", &["a", "b"], "least_conn")
        .start();
    let mut clients = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..4 {
        let s = client(proxy.l4_addr(0)).await;
        tags.push(ask(&s, b"x").await.0);
        clients.push(s);
    }
    // Each open session is one in flight on its backend, so they alternate.
    tags.sort_unstable();
    assert_eq!(tags, [b'a', b'a', b'b', b'b']);
    assert_eq!(proxy.backend_stats(0).await["in_flight"], 2);
    assert_eq!(proxy.backend_stats(1).await["in_flight"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_datagrams_are_dropped_and_counted() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .l4_max_datagram(1024)
        .start();
    let s = client(proxy.l4_addr(0)).await;
    s.send(&[7u8; 1025]).await.unwrap();
    wait_for(DEADLINE, "the long datagram dropped", || async {
        l4_stats(&proxy).await["datagrams_dropped"] == 1
    })
    .await;
    // 1023 bytes reach the backend; its 1024-byte reply (tag + payload) comes back.
    assert_eq!(ask(&s, &[7u8; 1023]).await.1, vec![7u8; 1023]);
    // A reply of 1025 bytes is dropped too.
    s.send(&[8u8; 1024]).await.unwrap();
    wait_for(DEADLINE, "the long reply dropped", || async {
        l4_stats(&proxy).await["datagrams_dropped"] == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_session() {
    let echo = Echo::start(b'e').await;
    let proxy = proxy::new()
        .backend("e", echo.addr)
        .route("default", "/", &["e"], "round_robin")
        .l4_udp("echo", &["e"], "round_robin")
        .start();
    let s = client(proxy.l4_addr(0)).await;
    assert_eq!(ask(&s, b"x").await.1, b"x");
    let shared = std::sync::Arc::clone(proxy.handle().shared());
    proxy.shutdown();
    proxy.join().await;
    let port = Arc::clone(&shared.ports.current().l4[0]);
    let l4 = port.totals();
    assert_eq!((l4.sessions, l4.sessions_closed), (1, 1));
    assert_eq!(port.sessions.open(), 0);
}
