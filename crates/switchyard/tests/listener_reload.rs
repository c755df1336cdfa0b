//! Reloading ports and alerts: a `[listener NAME]` or `[l4 NAME]` added by a reload serves; a
//! moved listener serves on its new port while its old port refuses new connections, and the
//! connections it had (keep-alive, a streamed response) finish unharmed; an address in use
//! refuses the reload and changes nothing; an unchanged listener keeps its socket; `[alert
//! NAME]` sections come and go.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use support::body::channel;
use support::client::{self, Client};
use support::reload::{apply, edited, post, running};
use support::{proxy, server, wait_for, DEADLINE};
use switchyard_config::AlertComparison;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Holds a free port with SO_REUSEPORT (not listening, so it never takes a connection): the
/// proxy, whose sockets have SO_REUSEPORT too, can bind it while it is held, and nothing else
/// can take it in between. Drop it once the proxy has bound.
fn reserve_port() -> (socket2::Socket, SocketAddr) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_reuse_port(true).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s, addr)
}

/// Waits until connecting to `addr` is refused.
async fn wait_refused(addr: SocketAddr) {
    wait_for(
        DEADLINE,
        "the old port refuses connections",
        || async move { TcpStream::connect(addr).await.is_err() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_added_by_reload_serves_and_an_unchanged_one_keeps_its_socket() {
    let one = server::fixed("one").await;
    let p = proxy::new()
        .to(one.addr())
        .listener("steady", |_| {})
        .start();
    let steady = p.listener_addr("steady");
    let before = Arc::clone(
        p.handle()
            .shared()
            .ports
            .current()
            .listener("steady")
            .unwrap(),
    );
    let ini = edited(&p, |c| {
        let mut extra = c.listeners[0].clone();
        extra.name = "extra".into();
        c.listeners.push(extra);
    });
    let doc = apply(&p, ini).await;
    assert_eq!(doc["restart_required"], serde_json::json!([]), "{doc:#}");
    let extra = p.listener_addr("extra");
    assert_ne!(extra, steady);
    assert_eq!(client::get(extra, "/").await.text(), "one");
    let after = Arc::clone(
        p.handle()
            .shared()
            .ports
            .current()
            .listener("steady")
            .unwrap(),
    );
    assert!(Arc::ptr_eq(&before, &after), "unchanged: the same socket");
    assert_eq!(p.listener_addr("steady"), steady);
    assert_eq!(client::get(steady, "/").await.text(), "one");
    let listed = p.stats().await["listeners"].clone();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["steady", "extra"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_listener_serves_on_its_new_port_and_finishes_what_the_old_one_had() {
    let release = Arc::new(Notify::new());
    let backend = {
        let release = Arc::clone(&release);
        server::serve(move |req| {
            let release = Arc::clone(&release);
            async move {
                if req.uri().path() != "/stream" {
                    return server::respond(StatusCode::OK, "plain");
                }
                let (tx, body) = channel();
                tokio::spawn(async move {
                    tx.send(Bytes::from("data: first\n\n")).await.unwrap();
                    release.notified().await;
                    for n in 0..3 {
                        tx.send(Bytes::from(format!("data: {n}\n\n")))
                            .await
                            .unwrap();
                    }
                });
                http::Response::new(body)
            }
        })
        .await
    };
    let p = proxy::new()
        .to(backend.addr())
        .listener("edge", |_| {})
        .start();
    let old = p.listener_addr("edge");
    // A keep-alive connection that has had one answer, and one mid-stream.
    let mut idle = Client::connect(old).await;
    assert_eq!(idle.get("/").await.text(), "plain");
    let mut streaming = Client::connect(old).await;
    let (mut body, mut got) = client::stream_until(
        &mut streaming,
        "/stream",
        b"data: first

",
    )
    .await;

    let (held, new) = reserve_port();
    let ini = edited(&p, |c| c.listeners[0].listen = vec![new]);
    apply(&p, ini).await;
    drop(held);
    assert_eq!(p.listener_addr("edge"), new);
    assert_eq!(client::get(new, "/").await.text(), "plain");
    wait_refused(old).await;

    // What the old port had finishes unharmed.
    assert_eq!(idle.get("/").await.text(), "plain", "keep-alive goes on");
    release.notify_one();
    tokio::time::timeout(DEADLINE, client::read_rest(&mut body, &mut got))
        .await
        .expect("the rest of the stream");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        "data: first\n\ndata: 0\n\ndata: 1\n\ndata: 2\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_to_an_address_in_use_is_refused_and_changes_nothing() {
    let one = server::fixed("one").await;
    let p = proxy::new().to(one.addr()).listener("edge", |_| {}).start();
    let old = p.listener_addr("edge");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let before = running(&p);
    let ini = edited(&p, |c| {
        c.listeners[0].listen = vec![busy];
        c.routes[0].path_prefix = "/changed".into();
    });
    let (status, doc) = post(&p, "/admin/config?dry_run=1", ini.clone(), None).await;
    assert_eq!(status, 400, "a dry run binds too: {doc:#}");
    let (status, doc) = post(&p, "/admin/config", ini, None).await;
    assert_eq!(status, 400, "{doc:#}");
    let error = &doc["errors"][0];
    assert_eq!(error["section"], "listener edge", "{doc:#}");
    assert_eq!(error["key"], "listen", "{doc:#}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("[listener edge]") && message.contains(&busy.to_string()),
        "{message}"
    );
    assert_eq!(running(&p), before, "the running config stays");
    assert_eq!(p.listener_addr("edge"), old);
    assert_eq!(client::get(old, "/").await.text(), "one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l4_listener_added_by_reload_proxies() {
    let one = server::fixed("one").await;
    let echo = server::tcp_echo().await;
    let p = proxy::new().to(one.addr()).backend("echo", echo).start();
    assert!(p.handle().l4_addrs().is_empty());
    let ini = edited(&p, |c| {
        c.l4.push(switchyard_config::L4Config::new(
            "tcp",
            "127.0.0.1:0".parse().unwrap(),
            switchyard_config::L4Protocol::Tcp,
            vec!["echo".into()],
        ));
    });
    apply(&p, ini).await;
    let addr = p.l4_addr(0);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"through l4").await.unwrap();
    let mut got = [0u8; 10];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&got, b"through l4");
    assert_eq!(p.stats().await["l4"][0]["name"], "tcp");
}

fn rule_names(doc: &serde_json::Value) -> Vec<String> {
    doc["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

fn firing_names(doc: &serde_json::Value) -> Vec<String> {
    doc["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_added_and_removed_by_reload() {
    let one = server::fixed("one").await;
    let p = proxy::new()
        .to(one.addr())
        .server(|s| {
            s.observe.history_interval = Duration::from_millis(50);
            s.observe.default_alerts = false;
        })
        .alert(
            "always",
            "active_connections",
            AlertComparison::Below,
            1e9,
            |_| {},
        )
        .start();
    wait_for(DEADLINE, "the alert fires", || async {
        firing_names(&p.admin_get("/admin/alerts").await.json()) == ["always"]
    })
    .await;
    let ini = edited(&p, |c| {
        c.alerts.clear();
        c.alerts.push(switchyard_config::AlertConfig::new(
            "added",
            "requests_per_second",
            AlertComparison::Above,
            1e9,
        ));
    });
    let doc = apply(&p, ini).await;
    assert_eq!(doc["restart_required"], serde_json::json!([]), "{doc:#}");
    let alerts = p.admin_get("/admin/alerts").await.json();
    assert_eq!(rule_names(&alerts), ["added"]);
    assert!(firing_names(&alerts).is_empty(), "{alerts:#}");
}

/// A UDP backend that echoes every datagram.
async fn udp_echo() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_that_change_a_udp_port_take_none_of_its_datagrams() {
    let one = server::fixed("one").await;
    let echo = udp_echo().await;
    let p = proxy::new()
        .to(one.addr())
        .backend("echo", echo)
        .l4_udp("udp", &["echo"], "round_robin")
        .start();
    let addr = p.l4_addr(0);
    // The same address, another setting: a changed port, bound again beside the one in force
    // when the reload is real; a dry run must not bind it.
    let ini = edited(&p, |c| {
        c.l4[0].listen = addr;
        c.l4[0].idle_timeout = Duration::from_secs(77);
    });
    let client = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    client.connect(addr).await.unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (client, stop) = (Arc::clone(&client), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut sent, mut lost) = (0u32, 0u32);
            let mut buf = [0u8; 64];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                let ping = sent.to_be_bytes();
                client.send(&ping).await.unwrap();
                // Generous: a datagram not back in this long was dropped.
                match tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf)).await {
                    Ok(Ok(4)) if buf[..4] == ping => {}
                    _ => lost += 1,
                }
            }
            (sent, lost)
        })
    };
    for _ in 0..30 {
        let (status, doc) = post(&p, "/admin/config?dry_run=1", ini.clone(), None).await;
        assert_eq!(status, 200, "{doc:#}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, lost) = pinger.await.unwrap();
    assert!(sent > 0);
    assert_eq!(lost, 0, "{lost} of {sent} datagrams lost");
    // The real reload binds the changed port beside the old one and serves on it.
    apply(&p, ini).await;
    client.send(b"after").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, client.recv(&mut buf))
        .await
        .expect("an echo after the reload")
        .unwrap();
    assert_eq!(&buf[..n], b"after");
}
